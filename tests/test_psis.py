"""vae_jax/psis.py: k̂ recovers the shape of generalised Pareto weights and agrees with a float64
NumPy Zhang–Stephens fit; the effective sample size matches NumPy in float64 even where the
weights themselves underflow float32; the chunked entry point and jit/vmap give the same."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_jax import psis

NUM_SAMPLES = 20000
TAIL = psis.tail_length(NUM_SAMPLES)  # 424
NUM_REPLICATES = 8
_diagnose = jax.jit(psis.diagnostics)
_diagnose_batch = jax.jit(jax.vmap(psis.diagnostics))


def _numpy_pareto_k(log_weights: np.ndarray, tail: int) -> float:
  """Zhang & Stephens (2009) with the prior of Vehtari et al. (2024), in float64, written out
  from the papers' description independently of the module."""
  ordered = np.sort(np.asarray(log_weights, np.float64))
  y = np.exp(ordered[-tail:]) - np.exp(ordered[-tail - 1])  # sorted ascending
  n = len(y)
  m = 30 + int(np.sqrt(n))
  b = 1 / y[-1] + (1 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))) / (3 * y[int(n / 4 + 0.5) - 1])
  k = np.array([np.mean(np.log1p(-b_j * y)) for b_j in b])
  log_likelihood = n * (np.log(-b / k) - k - 1)
  weights = np.array([1 / np.sum(np.exp(log_likelihood - l_j)) for l_j in log_likelihood])
  b_mean = np.sum(b * weights) / np.sum(weights)
  k_mean = np.mean(np.log1p(-b_mean * y))
  return (n * k_mean + 10 * 0.5) / (n + 10)


def _numpy_ess(log_weights: np.ndarray) -> float:
  w = np.exp(np.asarray(log_weights, np.float64) - np.max(log_weights))
  return np.sum(w) ** 2 / np.sum(w ** 2)


def test_tail_length_is_min_of_a_fifth_and_three_root_s():
  assert psis.tail_length(5000) == 212  # 3 √5000 = 212.1 < 1000
  assert psis.tail_length(NUM_SAMPLES) == 424
  assert psis.tail_length(100) == 20  # 0.2 S = 20 < 30
  assert isinstance(psis.tail_length(5000), int)


@pytest.mark.parametrize('shape', [0.2, 0.5, 0.8, 1.1])
def test_pareto_k_recovers_the_shape_of_generalised_pareto_weights(shape):
  """The tail of a generalised Pareto above any threshold is generalised Pareto with the same
  shape, so k̂ estimates `shape` itself. Its standard error with M tail points is about
  (1 + k)/√M (the MLE's asymptotic variance (1 + k)²/M): 0.058 (k = 0.2) to 0.10 (k = 1.1) for
  M = 424. The mean of 8 independent replicates must lie within 3 standard errors of the mean,
  3 (1 + k)/√(8 M), 0.06 to 0.10 (this includes the prior's pull of k̂ towards 0.5, at most
  10 |0.5 − k|/(M + 10) = 0.014); every replicate within 4 of its own standard errors."""
  rng = np.random.default_rng([2024, int(10 * shape)])
  weights = stats.genpareto(c=shape).rvs(size=(NUM_REPLICATES, NUM_SAMPLES), random_state=rng)
  k_hat = np.asarray(_diagnose_batch(jnp.asarray(np.log(weights), jnp.float32))['pareto_k'])
  standard_error = (1 + shape) / np.sqrt(TAIL)
  assert abs(np.mean(k_hat) - shape) < 3 * standard_error / np.sqrt(NUM_REPLICATES), k_hat
  assert np.all(np.abs(k_hat - shape) < 4 * standard_error), k_hat


@pytest.mark.parametrize('shape', [-0.3, 0.0, 0.3, 0.7, 1.5])
def test_pareto_k_agrees_with_a_float64_numpy_zhang_stephens_fit(shape):
  """Same data, float32 in JAX against float64 in NumPy; log-weights offset by −300 (float32
  cannot hold exp(−300)) and shuffled."""
  rng = np.random.default_rng([7, int(10 * shape) + 10])
  log_weights = np.log(stats.genpareto(c=shape).rvs(size=NUM_SAMPLES, random_state=rng)) - 300
  log_weights = log_weights.astype(np.float32).astype(np.float64)  # the same values for both
  k_hat = float(_diagnose(jnp.asarray(log_weights, jnp.float32))['pareto_k'])
  np.testing.assert_allclose(k_hat, _numpy_pareto_k(log_weights, TAIL), atol=1e-3)
  # the sign convention: a heavier tail gives a larger k̂ (negative for bounded weights)
  assert np.sign(k_hat) == np.sign(shape) or abs(shape) < 0.1


def test_light_tailed_weights_have_small_k_and_nearly_full_effective_sample_size():
  """log w ~ N(0, 0.1²): the weights are nearly equal, so ESS/S = exp(−σ²) ≈ 0.990."""
  log_weights = np.random.default_rng(3).normal(0.0, 0.1, NUM_SAMPLES)
  result = _diagnose(jnp.asarray(log_weights, jnp.float32))
  assert float(result['pareto_k']) < 0.2
  np.testing.assert_allclose(float(result['effective_sample_size']), NUM_SAMPLES, rtol=0.02)


def test_equal_weights_have_full_effective_sample_size_and_no_pareto_fit():
  """With no exceedance over the threshold there is nothing to fit: k̂ is NaN, ESS exactly S."""
  result = _diagnose(jnp.full((NUM_SAMPLES,), -123.4, jnp.float32))
  assert np.isnan(float(result['pareto_k']))
  np.testing.assert_allclose(float(result['effective_sample_size']), NUM_SAMPLES, rtol=1e-5)


def test_effective_sample_size_matches_numpy_float64_where_weights_underflow_float32():
  log_weights = -500.0 + np.random.default_rng(5).normal(0.0, 2.0, (3, NUM_SAMPLES))
  log_weights = log_weights.astype(np.float32)
  assert np.all(np.exp(log_weights) == 0)  # the naive float32 weights are all zero
  ess = np.asarray(_diagnose_batch(jnp.asarray(log_weights))['effective_sample_size'])
  expected = [_numpy_ess(row) for row in log_weights]
  np.testing.assert_allclose(ess, expected, rtol=1e-5)
  assert np.all((ess >= 1) & (ess <= NUM_SAMPLES))


def test_diagnostics_from_top_and_running_sums_equals_diagnostics_on_all_weights():
  """As a chunked sampler would call it: the top M + 1 log-weights in no particular order, and
  log Σw, log Σw² accumulated chunk by chunk."""
  num_samples, chunk = NUM_SAMPLES, 5000
  rng = np.random.default_rng(11)
  log_weights = np.log(stats.genpareto(c=0.6).rvs(size=num_samples, random_state=rng)) - 50
  log_weights = jnp.asarray(log_weights, jnp.float32)
  log_sum_w = log_sum_w2 = -jnp.inf
  for start in range(0, num_samples, chunk):
    part = log_weights[start:start + chunk]
    log_sum_w = jnp.logaddexp(log_sum_w, jax.scipy.special.logsumexp(part))
    log_sum_w2 = jnp.logaddexp(log_sum_w2, jax.scipy.special.logsumexp(2 * part))
  top, _ = jax.lax.top_k(log_weights, psis.tail_length(num_samples) + 1)
  top = top[rng.permutation(top.shape[0])]
  from_top = jax.jit(psis.diagnostics_from_top)(top, log_sum_w, log_sum_w2)
  full = _diagnose(log_weights)
  assert set(from_top) == set(full) == {'pareto_k', 'effective_sample_size'}
  np.testing.assert_allclose(float(from_top['pareto_k']), float(full['pareto_k']), atol=1e-6)
  np.testing.assert_allclose(float(from_top['effective_sample_size']),
                             float(full['effective_sample_size']), rtol=1e-4)


def test_jit_vmap_over_a_batch_matches_each_example_alone():
  rng = np.random.default_rng(13)
  rows = [np.log(stats.genpareto(c=c).rvs(size=NUM_SAMPLES, random_state=rng)) + offset
          for c, offset in [(0.1, 0.0), (0.9, -200.0), (-0.2, 40.0)]]
  batch = jnp.asarray(np.stack(rows), jnp.float32)
  result = _diagnose_batch(batch)
  assert result['pareto_k'].shape == result['effective_sample_size'].shape == (3,)
  for i, row in enumerate(batch):
    alone = _diagnose(row)
    np.testing.assert_allclose(float(result['pareto_k'][i]), float(alone['pareto_k']),
                               atol=1e-5)
    np.testing.assert_allclose(float(result['effective_sample_size'][i]),
                               float(alone['effective_sample_size']), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(result['effective_sample_size']),
                             [_numpy_ess(r) for r in np.asarray(batch, np.float64)], rtol=1e-5)


def test_too_few_samples_give_nan_k_but_an_effective_sample_size():
  log_weights = jnp.asarray(np.random.default_rng(17).normal(size=20), jnp.float32)  # M = 4
  result = psis.diagnostics(log_weights)
  assert np.isnan(float(result['pareto_k']))
  np.testing.assert_allclose(float(result['effective_sample_size']),
                             _numpy_ess(np.asarray(log_weights)), rtol=1e-4)
  with pytest.raises(ValueError, match='at least 5'):
    psis.pareto_k(log_weights[:4], log_weights[4])


def test_reliable_pareto_k_is_the_sample_size_threshold_for_large_samples():
  for num_samples in (2155, 5000, 100000):
    assert min(1 - 1 / np.log10(num_samples), 0.7) == psis.RELIABLE_PARETO_K
  assert 1 - 1 / np.log10(2154) < psis.RELIABLE_PARETO_K


@pytest.mark.parametrize('gap', [30.0, 90.0, 200.0])
def test_one_dominant_weight_gives_a_large_finite_k_that_agrees_with_float64(gap):
  """One weight `gap` nats above 4999 others: in float32 the others' exceedances relative to it
  (e^−90) underflow, which made k̂ NaN from about 88 nats on (and NaN passed as reliable); in
  logs it is fitted (k̂ 0.98, 1.61, 2.44), and agrees with the float64 fit."""
  log_weights = np.random.default_rng(19).normal(0.0, 1.0, 5000)
  log_weights[7] = log_weights.max() + gap
  log_weights = log_weights.astype(np.float32)
  k_hat = float(_diagnose(jnp.asarray(log_weights))['pareto_k'])
  assert np.isfinite(k_hat) and k_hat > psis.RELIABLE_PARETO_K
  with np.errstate(over='ignore'):  # the reference's softmax by hand: exp(large) = inf, 1/inf = 0
    expected = _numpy_pareto_k(log_weights.astype(np.float64) - log_weights.max(),
                               psis.tail_length(5000))
  np.testing.assert_allclose(k_hat, expected, rtol=1e-4)
  assert psis.unreliable(np.float32(k_hat))


def test_nan_k_counts_as_unreliable_and_only_small_k_as_reliable():
  k_hat = np.array([0.2, 0.7, 0.71, 3.0, np.nan, -0.5])
  np.testing.assert_array_equal(psis.unreliable(k_hat), [False, False, True, True, True, False])
  np.testing.assert_array_equal(psis.unreliable(jnp.asarray(k_hat), 0.5),
                                [False, True, True, True, True, False])
