"""Every log-likelihood evaluator computes its matrix products at float32 precision on every
backend: GPUs default to TF32 products (10-bit mantissas) and TPUs to bfloat16 passes, whatever
model.matmul_precision says. A CPU computes float32 either way, so the check is on the lowered
program: every dot_general asks for HIGHEST on both operands."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mnist_discrete, quickstart
from vae_jax import models
from vae_jax.evaluators import ais, bdmc, elbo, exact, importance_sampling, quadrature

SHAPE = (8, 8, 1)


def _model(config_module, variant=''):
  model = models.build_model(config_module.get_config(variant).model, SHAPE)
  x = jnp.zeros((2, *SHAPE))
  return model, model.init(jax.random.key(0), x), x


def _lowered_programs():
  model, params, x = _model(quickstart)
  ids, key = np.arange(2), jax.random.key(1)
  settings = dict(num_steps=2, num_chains=2, leapfrog_steps=1, step_size=0.1, pilot_chains=1,
                  initial='mixture')
  yield 'ais', ais.make_ais_fn(model, **settings).lower(params, x, ids, key)
  yield 'bdmc', bdmc.make_bdmc_fn(model, **settings).lower(params, key, ids)
  yield 'importance_sampled', importance_sampling.make_importance_sampling_fn(
      model, num_samples=4, chunk_size=2).lower(params, x, ids, key)
  yield 'elbo', elbo.make_elbo_fn(model, num_samples=1, analytic_kl=True).lower(
      params, x, ids, key)
  cells, log_volume, on_edge = quadrature.grid_cells(np.array([[-1.0, 1.0]] * 8), 1)
  yield 'quadrature', quadrature.make_level_fn(model, len(cells)).lower(
      params, x, cells, on_edge, log_volume)
  discrete, discrete_params, x = _model(mnist_discrete, 'binary_d10')
  yield 'exact', exact.make_exact_fn(discrete).lower(discrete_params, x, ids, key)


@pytest.mark.parametrize('name,lowered', list(_lowered_programs()), ids=lambda v: str(v)[:20])
def test_every_matrix_product_of_an_evaluator_runs_at_float32_precision(name, lowered):
  text = lowered.as_text()
  products = text.count('stablehlo.dot_general')
  assert products >= 2, name
  assert text.count('precision = [HIGHEST, HIGHEST]') == products, name
