"""Optimizers and schedules: the IWAE paper's learning rates, weight decay, KL warm-up."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from vae_jax import optimizers
from vae_jax.engine import steps


def _optimizer_config(**overrides):
  config = default.get_config().optimizer
  config.update(overrides)
  return config


def _learning_rate(config, num_train_steps: int):
  """The learning rate `create_optimizer` applies at each step: the config's rate times the
  schedule's multiplier, warm-up included."""
  multiplier = optimizers.with_warmup(
      optimizers.learning_rate_multiplier(config.schedule, num_train_steps), config.warmup_steps)
  return lambda count: config.learning_rate * multiplier(count)


def test_iwae_schedule_over_3280_epochs_is_the_papers():
  steps_per_epoch = 7
  schedule = _learning_rate(_optimizer_config(schedule='iwae'), 3280 * steps_per_epoch)
  stage_starts = np.cumsum([0] + [3**i for i in range(8)])[:-1]  # 0, 1, 4, 13, ... epochs
  for i, start_epoch in enumerate(stage_starts):
    for epoch in (start_epoch, start_epoch + 3**i - 1):  # the first and last epoch of stage i
      step = epoch * steps_per_epoch + 1  # optax scales from the step after a boundary
      np.testing.assert_allclose(schedule(step), 1e-3 * 10 ** (-i / 7), rtol=1e-5)


def test_compressed_iwae_schedule_keeps_the_stage_shares():
  boundaries = optimizers.iwae_stage_boundaries(32_800)
  np.testing.assert_array_equal(boundaries, 10 * np.cumsum([3**i for i in range(7)]))
  # Very short runs merge stages but still end at the final learning rate.
  schedule = _learning_rate(_optimizer_config(schedule='iwae'), 10)
  np.testing.assert_allclose(schedule(10), 1e-4, rtol=1e-5)


def _one_update(config, grads, params):
  optimizer = optimizers.create_optimizer(config, num_train_steps=10)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  return optax.apply_updates(params, updates)


def test_weight_decay_is_an_l2_gradient_for_adagrad_and_decoupled_for_adamw():
  params, zero_grads = {'w': jnp.array([2.0, -1.0])}, {'w': jnp.zeros(2)}
  # Adagrad with zero loss gradient: the update follows the decay term's gradient 0.1·w.
  adagrad = _one_update(_optimizer_config(name='adagrad', learning_rate=0.1, weight_decay=0.1,
                                          eps=1e-8), zero_grads, params)
  assert np.all(np.abs(adagrad['w']) < np.abs(params['w']))
  adamw = _one_update(_optimizer_config(name='adamw', learning_rate=0.1, weight_decay=0.5),
                      zero_grads, params)
  np.testing.assert_allclose(adamw['w'], params['w'] * (1 - 0.1 * 0.5), rtol=1e-6)
  no_decay = _one_update(_optimizer_config(name='adam'), zero_grads, params)
  np.testing.assert_allclose(no_decay['w'], params['w'])


def test_kl_warmup_rises_linearly_to_beta():
  config = default.get_config()
  config.objective.update(beta=0.8, kl_warmup_epochs=2)
  hyperparams = steps.LossHyperparams.from_config(config, steps_per_epoch=50)
  np.testing.assert_allclose([hyperparams.beta_at(jnp.asarray(s)) for s in (0, 25, 100, 1000)],
                             [0.0, 0.2, 0.8, 0.8], rtol=1e-6)
  config.objective.update(beta=0.5, kl_warmup_epochs=0)
  constant = steps.LossHyperparams.from_config(config, steps_per_epoch=50)
  np.testing.assert_allclose(constant.beta_at(jnp.asarray(7)), 0.5)


def test_temperature_anneals_to_its_minimum():
  config = default.get_config()
  config.objective.temperature.update(initial=1.0, minimum=0.5, anneal_rate=1e-3)
  hyperparams = steps.LossHyperparams.from_config(config, steps_per_epoch=10)
  np.testing.assert_allclose([hyperparams.temperature_at(jnp.asarray(s)) for s in (0, 100, 10_000)],
                             [1.0, np.exp(-0.1), 0.5], rtol=1e-6)


def test_the_parameter_average_follows_its_recursion_and_leaves_updates_alone():
  params = {'w': jnp.array([1.0, -2.0])}
  optimizer = optimizers.create_optimizer(_optimizer_config(name='adamax', ema_decay=0.5), 10)
  state = optimizer.init(params)
  expected = params['w']
  plain = optimizers.create_optimizer(_optimizer_config(name='adamax'), 10)
  plain_state = plain.init(params)
  for step in range(3):
    grads = {'w': jnp.array([0.3, -0.1]) * (step + 1)}
    updates, state = optimizer.update(grads, state, params)
    plain_updates, plain_state = plain.update(grads, plain_state, params)
    np.testing.assert_array_equal(updates['w'], plain_updates['w'])
    params = optax.apply_updates(params, updates)
    expected = 0.5 * expected + 0.5 * params['w']
  np.testing.assert_allclose(optimizers.evaluation_params(params, state)['w'], expected,
                             rtol=1e-6)
  assert optimizers.evaluation_params(params, plain_state) is params


def test_warmup_rises_linearly_then_follows_the_schedule():
  schedule = _learning_rate(_optimizer_config(warmup_steps=4), 100)
  np.testing.assert_allclose([schedule(step) for step in (0, 1, 3, 50)],
                             [0.25e-3, 0.5e-3, 1e-3, 1e-3], rtol=1e-6)


def test_gradient_normalisation_then_adam_matches_numpy():
  """AdamNormGrad (the VampPrior code): g / (||g||_2 + 1e-7) per tensor, then Adam with bias
  correction (Kingma & Ba's form; PyTorch adds eps to the uncorrected √v, a 1e-8-sized
  difference); two steps, so that the moments are exercised."""
  config = _optimizer_config(learning_rate=5e-4, b1=0.9, b2=0.999, eps=1e-8,
                             normalize_gradients=True)
  rng = np.random.default_rng(0)
  params = {'w': jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            'b': jnp.asarray(rng.normal(size=4), jnp.float32)}
  grads = [{'w': rng.normal(size=(3, 4)) * 100.0, 'b': rng.normal(size=4) * 1e-3}
           for _ in range(2)]
  optimizer = optimizers.create_optimizer(config, num_train_steps=10)
  state, new_params = optimizer.init(params), params
  for grad in grads:
    updates, state = optimizer.update(jax.tree.map(jnp.asarray, grad), state, new_params)
    new_params = optax.apply_updates(new_params, updates)

  for name in params:
    theta, m, v = np.asarray(params[name], np.float64), 0.0, 0.0
    for t, grad in enumerate(grads, start=1):
      g = grad[name] / (np.sqrt(np.sum(grad[name]**2)) + 1e-7)
      m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
      m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
      theta = theta - 5e-4 * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(new_params[name], theta, rtol=1e-6, atol=1e-7)
  # The same gradients unnormalised give other parameters (so the option is not a no-op).
  plain = optimizers.create_optimizer(_optimizer_config(learning_rate=5e-4, eps=1e-8), 10)
  plain_state, plain_params = plain.init(params), params
  for grad in grads:
    updates, plain_state = plain.update(jax.tree.map(jnp.asarray, grad), plain_state,
                                        plain_params)
    plain_params = optax.apply_updates(plain_params, updates)
  assert not np.allclose(plain_params['w'], new_params['w'], rtol=1e-6, atol=1e-7)


def test_the_cosine_schedule_falls_as_half_a_cosine_from_one_to_zero():
  multiplier = optimizers.learning_rate_multiplier('cosine', 100)
  for step in (0, 25, 50, 75, 100):
    np.testing.assert_allclose(float(multiplier(step)), 0.5 * (1 + np.cos(np.pi * step / 100)),
                               atol=1e-6)


def test_a_flattened_optimizer_makes_the_trees_updates_and_average():
  # optimizer.flatten: one vector for every parameter, with the global-norm clipping, AdamW's
  # decoupled weight decay, the warm-up and the moving average of the top-down configs; a
  # stacked (vectorised) run's average comes back in its parameters' shapes too.
  rng = np.random.default_rng(0)
  params = {'a': {'kernel': jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32)},
            'b': jnp.asarray(rng.normal(size=(5,)), jnp.float32)}
  settings = dict(name='adamw', weight_decay=0.01, grad_clip_norm=1.0, warmup_steps=2,
                  ema_decay=0.9)
  tree = optimizers.create_optimizer(_optimizer_config(**settings), 10)
  flat = optimizers.create_optimizer(_optimizer_config(flatten=True, **settings), 10)
  tree_state, flat_state = tree.init(params), flat.init(params)
  tree_params = flat_params = params
  for step in range(4):
    grads = jax.tree.map(lambda p, s=step: jnp.sin(p * (s + 1)) * 3.0, params)
    tree_updates, tree_state = tree.update(grads, tree_state, tree_params)
    flat_updates, flat_state = flat.update(grads, flat_state, flat_params)
    assert jax.tree.structure(flat_updates) == jax.tree.structure(tree_updates)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
                 flat_updates, tree_updates)
    tree_params = optax.apply_updates(tree_params, tree_updates)
    flat_params = optax.apply_updates(flat_params, flat_updates)
  assert jax.tree.leaves(flat_state)[-1].ndim == 1  # the average is one vector
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
               optimizers.evaluation_params(flat_params, flat_state),
               optimizers.evaluation_params(tree_params, tree_state))
  # The vector is the tree's tensors in leaf order (`flattened`), which `unflattened_like` undoes.
  np.testing.assert_allclose(
      jax.tree.leaves(flat_state)[-1],
      optimizers.flattened(optimizers.evaluation_params(tree_params, tree_state)),
      rtol=1e-5, atol=1e-7)
  jax.tree.map(np.testing.assert_array_equal,
               optimizers.unflattened_like(params, optimizers.flattened(params)), params)
  stacked = jax.tree.map(lambda p: jnp.stack([p, 2 * p]), params)
  average = optimizers.unflattened_like(
      stacked, jnp.stack([optimizers.flattened(params) * k for k in (1, 2)]))
  jax.tree.map(np.testing.assert_array_equal, average, stacked)


def test_flatten_is_refused_beside_per_tensor_transformations():
  from vae_jax.engine import config_checks  # pylint: disable=import-outside-toplevel
  config = default.get_config()
  config.optimizer.update(flatten=True, normalize_gradients=True)
  with pytest.raises(config_checks.ConfigError, match='optimizer.flatten=True updates the '
                     'parameters as one vector, but optimizer.normalize_gradients=True'):
    config_checks.validate_config(config)
