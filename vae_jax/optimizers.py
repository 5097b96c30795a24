"""The optax optimizer and learning-rate schedule a config describes.

Numeric hyperparameters (learning rate, b1, b2, eps, weight decay) are injected into the
optimizer state (`optax.inject_hyperparams`): runs that differ only in them share one compiled
update, and a vectorised sweep trains them together with `vmap` over stacked states.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vae_jax import options, registries
from vae_jax.options import SHAPES_STATE, SWEEPABLE, Option

IWAE_NUM_STAGES = 8  # stages i = 0..7 of 3^i epochs: 3,280 epochs in all
_INJECTED_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)

registries.register_kind('optimizer', 'the optax optimizer (optimizer.name)',
                         lambda config: (config.optimizer.name,))
registries.register_kind('schedule', "the learning rate's shape over training "
                         '(optimizer.schedule)', lambda config: (config.optimizer.schedule,))
registries.register_kind('gradient_transform', 'gradient transformations applied before the '
                         'optimizer, in order (optimizer.transforms)',
                         lambda config: tuple(config.optimizer.transforms))

OPTIONS = {
    **options.at(
        'optimizer', traits=(SHAPES_STATE,),
        name=Option('adam', 'a registered optimizer: adam, adamw, adamax, adagrad',
                    registries.registered('optimizer')),
        grad_clip_norm=Option(0.0, '0 disables clipping', options.non_negative),
        normalize_gradients=Option(False, "divide each gradient tensor by its L2 norm before the "
                                   "optimizer (VampPrior's AdamNormGrad)"),
        ema_decay=Option(0.0, 'evaluate and sample with an exponential moving average of the '
                         'parameters, kept in the optimizer state (VDVAE: 0.9999); 0: the '
                         'parameters themselves'),
        transforms=Option((), 'registered gradient transformations applied, in order, before the '
                          "optimizer (their options under optimizer.<name>)",
                          registries.all_registered('gradient_transform')),
        flatten=Option(False, 'update every parameter as one vector (optax.flatten): a handful '
                       'of fused operations instead of several per tensor, the same update; the '
                       "top-down step compiles 9-25 % faster. Not with per-tensor "
                       'normalize_gradients or transforms')),
    # These live in the optimizer state as arrays: runs differing only in them share one
    # compiled update (a vectorised sweep).
    **options.at(
        'optimizer', traits=(SWEEPABLE,),
        learning_rate=Option(1e-3, 'the peak learning rate, scaled by the schedule',
                             options.positive),
        b1=Option(0.9, 'adam, adamw, adamax: first-moment decay'),
        b2=Option(0.999, 'adam, adamw, adamax: second-moment decay'),
        eps=Option(1e-4, 'as in the IWAE paper', options.positive),
        weight_decay=Option(0.0, 'adamw: decoupled; adam, adagrad: an L2 penalty on the gradient',
                            options.non_negative)),
    **options.at(
        'optimizer',
        schedule=Option('constant', "a registered schedule: 'constant' | 'iwae' (3^i epochs at "
                        "lr * 10^(-i/7), i = 0..7) | 'cosine' (half a cosine to 0)",
                        registries.registered('schedule')),
        warmup_steps=Option(0, 'the learning rate rises linearly from 0 over these steps (0: '
                            'none)', options.non_negative),
        skip_threshold=Option(0.0, 'skip (and count) every update whose gradient norm exceeds '
                              'this, as VDVAE does; 0: skip only non-finite ones',
                              options.non_negative)),
}


def _flatten_problems(config):
  optimizer = config.optimizer
  if optimizer.get('flatten') and (optimizer.normalize_gradients or optimizer.transforms):
    yield ('optimizer.flatten=True updates the parameters as one vector, but '
           f'optimizer.normalize_gradients={optimizer.normalize_gradients} and '
           f'optimizer.transforms={tuple(optimizer.transforms)} act on each tensor: turn '
           'flatten off, or those off.')


registries.add(registries.Component('run', 'optimizer', None, OPTIONS, (_flatten_problems,)))
# Optimizer keys that live in the optimizer state as arrays (sweepable without recompiling).
INJECTED_HYPERPARAMETERS = tuple(path.split('.', 1)[1] for path, option in OPTIONS.items()
                                 if option.has(SWEEPABLE))


def _after_l2_penalty(optimizer: optax.GradientTransformation,
                      weight_decay) -> optax.GradientTransformation:
  """`optimizer` on the gradient plus `weight_decay·θ` (an L2 penalty, not decoupled)."""
  return optax.chain(optax.add_decayed_weights(weight_decay), optimizer)


# Builders by `optimizer.name`: `build(schedule, *, b1, b2, eps, weight_decay)`.
registries.register('optimizer', 'adam')(
    lambda schedule, *, b1, b2, eps, weight_decay: _after_l2_penalty(
        optax.adam(schedule, b1=b1, b2=b2, eps=eps), weight_decay))
registries.register('optimizer', 'adamw')(
    lambda schedule, *, b1, b2, eps, weight_decay: optax.adamw(
        schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
registries.register('optimizer', 'adamax')(
    lambda schedule, *, b1, b2, eps, weight_decay: _after_l2_penalty(
        optax.adamax(schedule, b1=b1, b2=b2, eps=eps), weight_decay))
registries.register('optimizer', 'adagrad')(
    lambda schedule, *, b1, b2, eps, weight_decay: _after_l2_penalty(
        optax.adagrad(schedule, eps=eps), weight_decay))


def create_optimizer(config: ml_collections.ConfigDict,
                     num_train_steps: int) -> optax.GradientTransformation:
  """`config` is the `optimizer` block: name, learning_rate, schedule, warmup_steps, b1, b2,
  eps, weight_decay, grad_clip_norm (0 disables clipping), normalize_gradients (each tensor's
  gradient divided by its norm first), ema_decay (0: no average).

  `weight_decay` is decoupled for 'adamw'; for 'adam' and 'adagrad' it adds `weight_decay·θ` to
  the gradient, i.e. an L2 penalty — with weight_decay = 1/N_train, the per-example share of a
  N(0, I) prior on the weights (Kingma & Welling 2013).
  """
  base = registries.get('optimizer', config.name).build
  registries.checked('optimizer', config.name, base(  # built once more, lazily, below
      lambda count: 1.0, **{name: config[name] for name in ('b1', 'b2', 'eps', 'weight_decay')}))
  multiplier = with_warmup(learning_rate_multiplier(config.schedule, num_train_steps),
                           config.warmup_steps)

  def make_optimizer(learning_rate, b1, b2, eps, weight_decay):
    return base(lambda count: learning_rate * multiplier(count), b1=b1, b2=b2, eps=eps,
                weight_decay=weight_decay)

  optimizer = optax.inject_hyperparams(make_optimizer)(
      **{name: config[name] for name in INJECTED_HYPERPARAMETERS})
  if config.transforms:
    optimizer = optax.chain(*(registries.build('gradient_transform', name, config)
                              for name in config.transforms), optimizer)
  if config.normalize_gradients:
    optimizer = optax.chain(normalize_each_tensor(), optimizer)
  if config.grad_clip_norm:
    optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
  if config.ema_decay:
    optimizer = optax.chain(optimizer, parameter_average(config.ema_decay))
  if config.get('flatten'):
    optimizer = optax.flatten(optimizer)
  return optimizer


GRADIENT_NORM_EPS = 1e-7  # as the VampPrior code's AdamNormGrad (utils/optimizer.py)


def normalize_each_tensor(eps: float = GRADIENT_NORM_EPS) -> optax.GradientTransformation:
  """Divides each gradient tensor by its own L2 norm (plus `eps`) before the optimizer sees it,
  as Tomczak & Welling's AdamNormGrad does: every tensor takes steps of the same size whatever
  its gradient's scale."""
  return optax.stateless(
      lambda updates, params: jax.tree.map(lambda g: g / (jnp.linalg.norm(g) + eps), updates))


class ParameterAverageState(NamedTuple):
  """The exponential moving average of the parameters after each update."""
  average: optax.Params


def parameter_average(decay: float) -> optax.GradientTransformation:
  """Keeps `average ← decay · average + (1 − decay) · θ` after every update (θ: the updated
  parameters), starting from the initial parameters; it leaves the updates as they are. Chained
  last, it lives in the optimizer state: checkpointed and restored with it, untouched by a
  skipped update (VDVAE evaluates and samples with such an average, decay 0.9999)."""

  def init(params):  # a copy: the train step donates the parameters' buffers
    return ParameterAverageState(jax.tree.map(lambda p: jnp.array(p, copy=True), params))

  def update(updates, state, params):
    new_params = optax.apply_updates(params, updates)
    average = jax.tree.map(lambda a, p: decay * a + (1 - decay) * p, state.average, new_params)
    return updates, ParameterAverageState(average)

  return optax.GradientTransformation(init, update)


def evaluation_params(params, opt_state):
  """The parameters to evaluate and sample with: the moving average when the optimizer keeps
  one (`optimizer.ema_decay`; one vector under `optimizer.flatten`, put back in `params`'
  shapes), else `params`."""
  averages = [node.average for node in jax.tree.leaves(
      opt_state, is_leaf=lambda node: isinstance(node, ParameterAverageState))
              if isinstance(node, ParameterAverageState)]
  if not averages:
    return params
  if jax.tree.structure(averages[0]) == jax.tree.structure(params):
    return averages[0]
  return unflattened_like(params, averages[0])


def flattened(tree) -> jax.Array:
  """A tree's tensors raveled and concatenated in leaf order: the one vector `optax.flatten`
  keeps in place of a parameter-shaped tree (`optimizer.flatten`); `unflattened_like` undoes
  it."""
  return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def unflattened_like(params, flat: jax.Array):
  """`flat` (the tensors of a tree like `params`, raveled and concatenated in leaf order, as
  `optax.flatten` keeps them; a leading runs axis is kept) as a tree like `params`."""
  leaves, treedef = jax.tree.flatten(params)
  runs = flat.ndim - 1  # 1 for a vectorised group's stacked states
  sizes = [int(np.prod(leaf.shape[runs:])) for leaf in leaves]
  pieces = jnp.split(flat, np.cumsum(sizes)[:-1], axis=-1)
  return jax.tree.unflatten(treedef, [piece.reshape(leaf.shape) for piece, leaf in
                                      zip(pieces, leaves)])


def with_warmup(multiplier, warmup_steps: int):
  """`multiplier` times a linear warm-up from 1/warmup_steps to 1 over the first steps."""
  if not warmup_steps:
    return multiplier
  return lambda count: multiplier(count) * jnp.minimum(1.0, (count + 1) / warmup_steps)


def with_config_hyperparams(opt_state, config: ml_collections.ConfigDict):
  """`opt_state` with its injected hyperparameters set to the config's (`config`: the
  `optimizer` block). A restored state carries the values it was saved with; a resume that
  changes them (`--allow_config_change`) must train with the new ones, not the saved ones."""

  def reset(node):
    if not isinstance(node, _INJECTED_STATES):
      return node
    hyperparams = {name: jnp.asarray(config[name], dtype=jnp.asarray(value).dtype)
                   for name, value in node.hyperparams.items()}
    return node._replace(hyperparams=hyperparams)

  return jax.tree.map(reset, opt_state,
                      is_leaf=lambda node: isinstance(node, _INJECTED_STATES))


def learning_rate_multiplier(schedule: str, num_train_steps: int):
  """The learning rate's factor at each step, by the registered schedule `schedule`."""
  return registries.build('schedule', schedule, num_train_steps)


@registries.register('schedule', 'constant')
def constant_multiplier(num_train_steps: int):
  """1 throughout."""
  del num_train_steps
  return optax.constant_schedule(1.0)


@registries.register('schedule', 'iwae')
def iwae_multiplier(num_train_steps: int):
  """Burda et al.'s 8 stages, stage i lasting a 3^i/3280 share of training at `10^(−i/7)`. With
  3,280 epochs of training that is the paper's schedule exactly; with fewer, the same schedule
  compressed in proportion."""
  scales = {}
  for boundary in iwae_stage_boundaries(num_train_steps):  # very short runs merge stages
    scales[int(boundary)] = scales.get(int(boundary), 1.0) * 10 ** (-1 / 7)
  return optax.piecewise_constant_schedule(1.0, scales)


@registries.register('schedule', 'cosine')
def cosine_multiplier(num_train_steps: int):
  """Half a cosine from 1 at step 0 to 0 at the last step (Loshchilov & Hutter 2017, without
  restarts; Efficient-VDVAE's and NVAE's schedule), after `warmup_steps` if any."""
  return optax.cosine_decay_schedule(1.0, max(num_train_steps, 1))


def iwae_stage_boundaries(num_train_steps: int) -> np.ndarray:
  """The steps at which stages 1..7 of the IWAE schedule begin."""
  stage_lengths = 3.0 ** np.arange(IWAE_NUM_STAGES)
  starts = np.cumsum(stage_lengths)[:-1] / stage_lengths.sum()
  return np.round(starts * num_train_steps).astype(int)
