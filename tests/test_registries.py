"""vae_jax/registries.py and vae_jax/options.py: components with their options, the default
config and the checks derived from them."""

import dataclasses
import types

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import pytest

from configs import default, quickstart
from vae_jax import options, priors, registries
from vae_jax.engine import checkpointing, config_checks
from vae_jax.errors import UserError
from vae_jax.options import OPERATIONAL, SHAPES_STATE, SWEEPABLE, Option


@pytest.fixture
def scratch_registry(monkeypatch):
  """Registrations made by a test are undone after it."""
  monkeypatch.setattr(registries, 'COMPONENTS',
                      {kind: dict(table) for kind, table in registries.COMPONENTS.items()})
  monkeypatch.setattr(registries, 'KINDS', dict(registries.KINDS))


def test_checks_name_what_is_wrong():
  assert options.at_least(1)(0) == 'must be at least 1.'
  assert options.at_least(1)(1) is None
  assert options.positive(0.0) == 'must be positive.'
  assert options.non_negative(-1) == 'must be non-negative.'
  assert options.one_of('a', 'b')('c') == "is not one of ['a', 'b']."
  assert options.each_at_least(1)((3, 0)) == 'must hold sizes of at least 1 each.'
  assert options.problems(Option(1, 'doc', options.at_least(1)), 'x.y', 0) == [
      'x.y=0 must be at least 1.']
  with pytest.raises(ValueError, match='Unknown option traits'):
    Option(1, 'doc', traits=frozenset({'fast'}))


def test_at_prefixes_paths_and_adds_traits():
  block = options.at('model.prior.laplace', traits=(SHAPES_STATE,),
                     scale=Option(1.0, 'b', traits=frozenset({SWEEPABLE})))
  assert list(block) == ['model.prior.laplace.scale']
  assert block['model.prior.laplace.scale'].traits == {SHAPES_STATE, SWEEPABLE}


def test_the_default_config_is_the_union_of_the_registered_options():
  config = default.get_config()
  flat = options.flatten(config.to_dict())
  schema = registries.schema()
  assert set(flat) == set(schema)
  for path, option in schema.items():
    if not isinstance(option.default, ml_collections.FieldReference):
      assert flat[path] == option.default, path
  # One registered option per key: the likelihoods' own blocks, the engine's keys, evaluators'.
  assert registries.owners('model.likelihood.num_components')[0].name == \
      'discretized_logistic_mixture'
  assert {owner.name for owner in registries.owners('model.prior.num_components')} == {
      'mixture', 'vamp'}


def test_the_sweepable_keys_are_those_reaching_the_step_as_arrays():
  assert config_checks.sweepable_keys() == {
      'seed', 'optimizer.learning_rate', 'optimizer.b1', 'optimizer.b2', 'optimizer.eps',
      'optimizer.weight_decay', 'objective.beta', 'objective.kl_warmup_epochs',
      'objective.temperature.initial', 'objective.temperature.minimum',
      'objective.temperature.anneal_rate'}
  assert all(path.startswith('evals.') or path.startswith(('paper.', 'streaming.', 'data.'))
             or '.' not in path for path in registries.keys_with(OPERATIONAL))


def test_a_component_registered_later_joins_defaults_checks_and_choices(scratch_registry):
  def problems(config):
    if config.model.prior.toy.width > 3:
      yield 'model.prior.toy.width > 3 is too wide for a toy.'

  registries.register('prior', 'toy', checks=(problems,), options=options.at(
      'model.prior.toy', width=Option(2, 'a width', options.at_least(1))))(
          lambda config, latent_dim, data_shape: priors.StandardNormalPrior(latent_dim))
  config = default.get_config()
  assert config.model.prior.toy.width == 2
  config.model.prior.kind = 'toy'
  config_checks.validate_config(config)
  config.model.prior.toy.width = 0
  with pytest.raises(config_checks.ConfigError, match=r'model.prior.toy.width=0 must be at least 1'):
    config_checks.validate_config(config)
  config.model.prior.toy.width = 5
  with pytest.raises(config_checks.ConfigError, match='too wide for a toy'):
    config_checks.validate_config(config)
  config.model.prior.kind = 'standard_normal'  # not chosen: its check does not run
  config_checks.validate_config(config)


def test_a_config_without_an_option_is_completed_with_its_default(scratch_registry):
  config = quickstart.get_config()
  registries.register('gradient_transform', 'toy', options=options.at(
      'optimizer.toy', rate=Option(0.5, 'a rate')))(lambda config: None)
  assert 'toy' not in config.optimizer
  registries.complete(config)
  assert config.optimizer.toy.rate == 0.5
  assert config.seed == quickstart.get_config().seed  # what it had is kept


def test_registering_a_name_twice_or_a_key_with_another_default_is_refused(scratch_registry):
  registries.register('prior', 'once')(lambda *args: None)
  with pytest.raises(ValueError, match="prior 'once' is registered twice"):
    registries.register('prior', 'once')(lambda *args: None)
  with pytest.raises(ValueError, match='already declared with 500'):
    registries.register('prior', 'other', options=options.at(
        'model.prior', num_components=Option(7, 'components')))(lambda *args: None)


def test_the_components_a_config_uses():
  config = quickstart.get_config()
  chosen = {(component.kind, component.name) for component in registries.chosen(config)}
  assert {('family', 'vae'), ('likelihood', 'bernoulli'), ('prior', 'standard_normal'),
          ('optimizer', 'adam'), ('schedule', 'constant'), ('evaluator', 'elbo'),
          ('run', 'engine')} <= chosen
  assert ('family', 'top_down') not in chosen and ('categorical_prior', 'uniform') not in chosen


def test_a_run_saves_and_compares_only_the_options_of_its_components(tmp_path, caplog):
  saved = quickstart.get_config()
  checkpointing.save_config(saved, str(tmp_path))
  stored = checkpointing.load_config(str(tmp_path)).to_dict()
  assert 'top_down' not in stored['model'] and 'num_components' not in stored['model']['prior']
  assert stored['model']['encoder'] == saved.model.encoder.to_dict()
  assert checkpointing.load_config(str(tmp_path), defaults=default.get_config()).model.top_down
  assert 'predates' not in caplog.text  # what was left out by design is not "missing"
  config = quickstart.get_config()
  config.model.top_down.width = 64  # the top-down family's: a VAE run never reads it
  config.model.prior.num_components = 7  # the mixture and VampPrior's: unused with N(0, I)
  checkpointing.check_config(config, str(tmp_path), defaults=default.get_config())
  config.model.prior.kind = 'mixture'  # now the mixture reads it: its size shapes the state
  with pytest.raises(checkpointing.WorkdirConfigMismatchError,
                     match=r"(?s)model.prior.kind: 'standard_normal' \(saved\) -> 'mixture'.*"
                     r"model.prior.num_components: '<absent>' \(saved\) -> 7"):
    checkpointing.check_config(config, str(tmp_path), defaults=default.get_config())


def test_traits_decide_what_a_resume_may_change(tmp_path, monkeypatch):
  saved = quickstart.get_config()
  checkpointing.save_config(saved, str(tmp_path))

  def accepted(key, value, allow=False):
    config = quickstart.get_config()
    *parents, leaf = key.split('.')
    block = config
    for parent in parents:
      block = block[parent]
    block[leaf] = value
    try:
      checkpointing.check_config(config, str(tmp_path), defaults=default.get_config(),
                                 allow_changes=allow)
    except checkpointing.WorkdirConfigMismatchError:
      return False
    return True

  assert accepted('log_every_steps', 7)  # operational
  assert not accepted('num_epochs', 7) and accepted('num_epochs', 7, allow=True)
  assert not accepted('model.latent_dim', 3, allow=True)  # shapes the state
  engine = registries.get('run', 'engine')  # declared again, as a component that registers
  monkeypatch.setitem(registries.COMPONENTS['run'], 'engine', dataclasses.replace(
      engine, options={**engine.options, 'num_epochs': dataclasses.replace(
          engine.options['num_epochs'], traits=frozenset({OPERATIONAL}))}))
  assert accepted('num_epochs', 7)  # the declaration decides


class _LogDensityOnly(nn.Module):
  """A prior whose distribution has `log_prob` but not `sample`."""
  latent_dim: int

  def __call__(self, encoder=None):
    del encoder
    return types.SimpleNamespace(log_prob=lambda z: jnp.zeros(z.shape[:-1]))


def test_a_component_that_breaks_its_kinds_contract_is_refused_in_one_line(scratch_registry):
  registries.register('prior', 'no_sample')(
      lambda config, latent_dim, data_shape: _LogDensityOnly(latent_dim))
  registries.register('gradient_transform', 'plain')(lambda config: (lambda updates: updates))
  config = default.get_config()
  config.model.prior.kind = 'no_sample'
  with pytest.raises(UserError, match=r"^prior 'no_sample' \(module tests.test_registries\) "
                     r"returns a SimpleNamespace without sample\(rng, sample_shape\): a "
                     r"prior's distribution provides log_prob, sample"):
    config_checks.validate_config(config)
  config.model.prior.kind = 'standard_normal'
  config.optimizer.transforms = ('plain',)
  with pytest.raises(UserError, match=r"^gradient_transform 'plain' .* builds a function without "
                     r'init\(params\), update\(updates, state, params\)'):
    config_checks.validate_config(config)
  assert '\n' not in registries.contract_problem('evaluator', 'elbo', object())
  assert set(registries.CONTRACTS) >= set(registries.KINDS) - {'run'}


def test_the_schema_is_built_once_and_again_when_a_component_registers(scratch_registry):
  first = registries.schema()
  assert registries.schema() == first
  built = registries._SCHEMA[1]
  registries.schema()
  assert registries._SCHEMA[1] is built  # not rebuilt
  registries.register('gradient_transform', 'toy', options=options.at(
      'optimizer.toy', rate=Option(0.5, 'a rate')))(lambda config: None)
  assert 'optimizer.toy.rate' in registries.schema() and 'optimizer.toy.rate' not in first
