"""Model families by name: each family module registers the builder of its model, and the
gradient estimators it owns (beyond the reparameterised gradient every family has).

A family is chosen by `model.family` (its registered name), or, with `model.family='auto'`, from
the latent kind and layers (`family_name`). A new family is a module that calls `register` with
its options: under `vae_jax/models/` (imported in `models/__init__.py`), or anywhere else, named
in `config.imports` (docs/extending.md). Each family is also a component of kind 'family' in
`vae_jax.registries`, so its options join the default config and its checks run when chosen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

import flax.linen as nn
import ml_collections

from vae_jax import registries
from vae_jax.options import Option

@dataclasses.dataclass(frozen=True)
class EarlierLayout:
  """A parameter layout a family's older checkpoints are in, tried by every checkpoint restore
  that fails in today's layout (`vae_jax.engine.checkpoint_reads`): `applies(state)`, whether
  a state of today's layout could have been saved in it; `earlier(state)`, that state in the
  earlier layout (the target to restore); `converted(restored, state)`, a restored earlier
  state in `state`'s layout, bit for bit; `name`, what the log says the checkpoint holds."""
  name: str
  applies: Callable
  earlier: Callable
  converted: Callable


def register(name: str, *, options: Mapping[str, Option] | None = None,
             checks: Iterable[Callable] = (), **extras):
  """Decorator: `@register('vae')` over `build(model_config, data_shape) -> module`, with the
  family's own options (by convention under `model.<name>.`), config checks and extras:
  `data_mean_output_bias=True` (its decoder ends in the dense layer `decoder/net/output` that
  `with_data_mean_output_bias` sets); `images_only=True`; `shape_checks=(problems,)`, each
  `problems(model_config, data_shape) -> one-line messages`, run once the data's shape is
  known, before anything is built; `estimators={name: loss}`, the gradient estimators it owns
  for `objective.gradient_estimator=name` (beyond the reparameterised gradient every family
  has), each `loss(model, params, x, rng, *, objective, num_samples, beta, analytic_kl,
  temperature) -> (loss, per-example terms)`, as `objectives.training_loss` returns them;
  `earlier_layouts=(layout,)`, parameter layouts its older checkpoints are in, converted on
  restore (`EarlierLayout`)."""
  owned = estimators()
  for estimator in extras.get('estimators', {}):
    if estimator in owned:
      raise ValueError(f'Gradient estimator {estimator!r} is registered twice.')

  def decorate(build):
    registries.add(registries.Component('family', name, build, dict(options or {}),
                                        tuple(checks), extras))
    return build

  return decorate


registries.register_kind('family', 'the model: its latents and how they are inferred',
                         lambda config: (family_name(config.model),))


def config_problems(model_config: ml_collections.ConfigDict, data_shape) -> list[str]:
  """What the chosen family's shape checks find wrong with its config for data of
  `data_shape` (nothing for a family without them, or a name no family registers)."""
  family = registries.COMPONENTS.get('family', {}).get(family_name(model_config))
  checks = family.extras.get('shape_checks', ()) if family else ()
  return [problem for check in checks for problem in check(model_config, tuple(data_shape))]


def estimators() -> dict[str, Callable]:
  """{name: loss} of the gradient estimators the registered families own."""
  return {name: loss for family in registries.COMPONENTS.get('family', {}).values()
          for name, loss in family.extras.get('estimators', {}).items()}


def earlier_layouts() -> list:
  """The earlier parameter layouts the registered families convert their checkpoints from."""
  return [layout for family in registries.COMPONENTS.get('family', {}).values()
          for layout in family.extras.get('earlier_layouts', ())]


def family_name(model_config: ml_collections.ConfigDict) -> str:
  """`model.family` when it names one; for 'auto', 'discrete' for categorical latents, and for
  Gaussian ones 'hierarchical' when `upper_layers.latent_dims` lists upper layers, else 'vae'."""
  if model_config.family != 'auto':
    return model_config.family
  if model_config.latent_kind == 'categorical':
    return 'discrete'
  upper_layers = model_config.get('upper_layers', {})  # absent from a one-layer run's config
  return 'hierarchical' if upper_layers.get('latent_dims') else 'vae'


def build_model(model_config: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> nn.Module:
  """The model `model_config` describes, for data of shape `data_shape` (e.g. (28, 28, 1))."""
  name = family_name(model_config)
  return registries.build('family', name, model_config, tuple(data_shape))
