"""vae_jax/evaluators/registry.py: evaluators chosen by name from config.evals, skipped where
the model lacks what they need, and their results split into metrics and images."""

import jax
import numpy as np
import pytest

from configs import default
from tests import test_objectives as linear_gaussian
from tests.helpers import small_model_config
from vae_jax import data, evaluators, models
from vae_jax.engine import config_checks


def _config(**evals):
  config = default.get_config()
  config.eval_batch_size = 5
  config.evals.importance_sampled.update(num_samples=100, chunk_size=30)
  for name, options in evals.items():
    config.evals[name].update(options)
  return config


def _dataset(images, labels=None):
  split = data.Split(images, labels)
  return data.Dataset(name='test', train=split, validation=None, test=split)


def test_every_applicable_evaluator_reports_and_the_bounds_are_ordered():
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.3)  # pylint: disable=protected-access
  x = np.random.default_rng(2).normal(size=(12, 3)).astype(np.float32)
  chosen = evaluators.create(model, _config(images={'num_images': 0}), _dataset(x))
  # No exact sum over a Gaussian z, no images, no probe without labels.
  assert set(chosen) == {'elbo', 'active_units', 'importance_sampled'}
  result = {}
  for evaluator in chosen.values():
    result.update(evaluator(params, data.Split(x, None), jax.random.key(3)))
  sampled = result['importance_sampled']
  assert result['elbo'] < sampled['log_likelihood'] <= np.mean(
      linear_gaussian.exact_log_marginal(x)) + 3 * sampled['monte_carlo_error']
  assert sampled['num_samples'] == 100
  # The per-unit KLs add up to the KL term.
  np.testing.assert_allclose(sum(result['kl_per_dimension']), result['kl'], rtol=1e-5)
  assert result['active_units'] == {'z': 2}


def test_during_training_picks_the_evaluators_marked_for_it():
  model, _ = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = np.zeros((4, 3), np.float32)
  config = _config(images={'num_images': 0}, active_units={'during_training': False})
  assert set(evaluators.create(model, config, _dataset(x), during_training=True)) == {'elbo'}
  assert set(evaluators.create(model, config, _dataset(x), names=['active_units'])) == {
      'active_units'}


def test_exact_enumeration_and_clusters_apply_to_a_small_discrete_latent():
  config = small_model_config()
  config.update(latent_kind='categorical', latent_dim=1, num_categories=4)
  config.prior.kind = 'uniform'
  model = models.build_model(config, (6,))
  params = model.init(jax.random.key(0), np.zeros((1, 6), np.float32))
  x = (np.random.default_rng(0).uniform(size=(20, 6)) > 0.5).astype(np.float32)
  labels = np.arange(20) % 3
  run_config = _config(images={'num_images': 0}, importance_sampled={'num_samples': 0})
  chosen = evaluators.create(model, run_config, _dataset(x, labels), names=['exact'])
  result = chosen['exact'](params, data.Split(x, labels), jax.random.key(0))
  exact = result['exact']
  np.testing.assert_allclose(exact['log_likelihood'] - exact['elbo'], exact['kl_to_posterior'],
                             atol=1e-4)
  assert 0 < result['clusters']['accuracy'] <= result['clusters']['purity'] <= 1
  metrics = evaluators.scalars(result)
  assert metrics['exact/log_likelihood'] == exact['log_likelihood']
  assert 'clusters/accuracy' in metrics


def test_image_grids_are_images_not_metrics():
  config = small_model_config()
  model = models.build_model(config, (8, 8, 1))
  params = model.init(jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32))
  x = np.zeros((10, 8, 8, 1), np.float32)
  chosen = evaluators.create(model, _config(images={'num_images': 4}), _dataset(x),
                             names=['images'])
  result = chosen['images'](params, data.Split(x, None), jax.random.key(0))
  grids = evaluators.images_of(result)
  assert set(grids) == {'samples', 'reconstructions'}
  assert all(grid.dtype == np.uint8 and grid.ndim == 3 for grid in grids.values())
  assert not evaluators.scalars(result)


def test_config_naming_no_evaluator_is_refused():
  config = default.get_config()
  with config.unlocked():
    config.evals.perplexity = {'during_training': True}
  config.evals.images.splits = ('train',)
  with pytest.raises(config_checks.ConfigError, match=r"(?s)perplexity.*evals.images.splits"):
    config_checks.validate_config(config)


class _Stub:

  def __init__(self, computes_log_likelihood=None, work=None):
    if computes_log_likelihood:
      self.computes_log_likelihood = computes_log_likelihood
    if work:
      self.work = work


def test_estimates_of_log_px_are_redundant_only_beside_an_exact_value():
  exact, estimate, other = _Stub('exact'), _Stub('estimate'), _Stub()
  assert evaluators.registry.redundant_estimates(
      {'elbo': other, 'quadrature': exact, 'importance_sampled': estimate,
       'ais': _Stub('estimate')}) == ['importance_sampled', 'ais']
  assert evaluators.registry.redundant_estimates(
      {'elbo': other, 'importance_sampled': estimate}) == []


def test_work_is_the_declared_count_or_one_pass_per_example():
  assert evaluators.work(_Stub(work=lambda n: 7 * n), 3) == 21
  assert evaluators.work(_Stub(), 3) == 3


@pytest.mark.parametrize('name', ['elbo', 'active_units', 'importance_sampled', 'ais'])
def test_each_evaluator_compiles_with_the_runs_compiler_options(monkeypatch, name):
  # The run's options (config.cpu_optimization_level) reach each evaluator's program: a name
  # XLA does not know, put in their place, makes the program fail to compile.
  from vae_jax import compiler_options  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(compiler_options, 'for_run',
                      lambda config: {'xla_backend_optimisation_levle': 2})
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
  config = _config(ais={'num_steps': 2, 'num_chains': 2, 'pilot_chains': 2})
  evaluator = evaluators.create(model, config, _dataset(x), names=[name])[name]
  with pytest.raises(Exception, match='xla_backend_optimisation_levle'):
    evaluator(params, data.Split(x, None), jax.random.key(3))
