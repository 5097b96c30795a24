"""Importance-sampling diagnostics: the Pareto k̂ of the weights' upper tail and the effective
sample size, for one example's S log-weights `log w_s = log p(x, z_s) − log q(z_s | x)`.

k̂ is the shape of a generalised Pareto distribution fitted to the M largest weights (Vehtari,
Simpson, Gelman, Yao & Gabry 2024, "Pareto smoothed importance sampling", JMLR 25(72)). The
weights' distribution has finite moments of order below 1/k: for k̂ > 0.5 their variance is
infinite and for k̂ > 1 their mean too, so the importance-sampled estimate of p(x) cannot be
trusted beyond `RELIABLE_PARETO_K`. The fit is the empirical-Bayes estimator of Zhang &
Stephens (2009, "A new and efficient estimation method for the generalized Pareto distribution",
Technometrics 51(3)) with the weakly-informative prior of Vehtari et al., the estimator of
ArviZ's `_gpdfit` and the R package loo's `gpdfit`. The sign convention is theirs (the negative
of Zhang & Stephens' k): a heavier tail gives a larger k̂, and k̂ = 0 is an exponential tail.

Pure jax.numpy on static shapes: jittable and vmappable, and float32-safe, since weights are
only exponentiated after subtracting the largest log-weight.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

# Vehtari et al. (2024): above k̂ = 0.7 the importance-sampling estimate (and k̂ itself) is
# unreliable. Their sample-size-dependent threshold min(1 − 1/log10 S, 0.7) equals 0.7 for every
# S ≥ 2155 (= 10^(10/3), rounded up; 0.697 at S = 2000) and is lower only for fewer samples.
RELIABLE_PARETO_K = 0.7

MIN_TAIL_LENGTH = 5  # fewer tail weights than this and no fit is attempted (as in ArviZ)
_PRIOR_BS = 3.0  # scale of the Zhang & Stephens prior on b, relative to the tail's first quartile
_PRIOR_K = 10.0  # weight, in pseudo-observations, of the prior k = 0.5 (Vehtari et al.)


def tail_length(num_samples: int) -> int:
  """M, the number of largest weights the generalised Pareto is fitted to (Vehtari et al.):
  `min(⌊0.2 S⌋, ⌊3 √S⌋)`; 212 for S = 5000."""
  return min(int(0.2 * num_samples), int(3 * math.sqrt(num_samples)))


def _exceedances(largest_log_weights: jax.Array, threshold_log_weight: jax.Array) -> jax.Array:
  """`w_i − u` for the tail weights, ascending, all divided by the largest weight (which does not
  change k̂): `exp(lw_i − lmax) · (1 − exp(lu − lw_i))`, both factors in [0, 1], the second
  by `expm1` so that exceedances just above the threshold keep their precision."""
  log_weights = jnp.sort(largest_log_weights)
  return jnp.exp(log_weights - log_weights[-1]) * -jnp.expm1(threshold_log_weight - log_weights)


def pareto_k(largest_log_weights: jax.Array, threshold_log_weight: jax.Array) -> jax.Array:
  """k̂ of the generalised Pareto fitted to the exceedances over the threshold weight u of the
  M largest weights: `largest_log_weights` `[M]` (any order; M ≥ 5, static), the log of the
  (M+1)-th largest weight `threshold_log_weight` `[]`. NaN when the tail cannot be fitted: no
  exceedance, or none in the tail's first quartile (tied weights)."""
  n = largest_log_weights.shape[-1]
  if largest_log_weights.ndim != 1 or n < MIN_TAIL_LENGTH:
    raise ValueError(f'pareto_k needs one example\'s tail of at least {MIN_TAIL_LENGTH} '
                     f'log-weights, shape [M]; got shape {largest_log_weights.shape}.')
  y = _exceedances(largest_log_weights, threshold_log_weight)
  dtype = y.dtype
  y_max, y_quartile = y[-1], y[int(n / 4 + 0.5) - 1]
  fittable = y_quartile > 0  # y_max ≥ y_quartile
  y_max, y_quartile = (jnp.where(fittable, v, 1.0) for v in (y_max, y_quartile))
  # Zhang & Stephens' grid of b (= −k/σ), with the prior on b scaled by the first quartile.
  num_grid = 30 + int(math.sqrt(n))
  grid = 1.0 - np.sqrt(num_grid / (np.arange(1, num_grid + 1, dtype=np.float64) - 0.5))  # < 0
  b = jnp.asarray(grid, dtype) / (_PRIOR_BS * y_quartile) + 1.0 / y_max
  k = jnp.mean(jnp.log1p(-b[:, None] * y), axis=1)  # the profile estimate of k at each b
  profile_log_likelihood = n * (jnp.log(-b / k) - k - 1.0)
  weights = jax.nn.softmax(profile_log_likelihood)  # = 1 / Σ_j exp(L_j − L_i), stably
  b_posterior = jnp.sum(b * weights)
  k_posterior = jnp.mean(jnp.log1p(-b_posterior * y))
  k_shrunk = (n * k_posterior + _PRIOR_K * 0.5) / (n + _PRIOR_K)  # the prior k ~ 0.5
  return jnp.where(fittable, k_shrunk, jnp.nan).astype(dtype)


def diagnostics_from_top(top_log_weights: jax.Array, log_sum_w: jax.Array,
                         log_sum_w2: jax.Array) -> dict[str, jax.Array]:
  """The diagnostics of one example from its `M + 1` largest log-weights `[M + 1]` (any order;
  `M = tail_length(S)`) and the running `log Σ_s w_s`, `log Σ_s w_s²` over all S weights, as a
  chunked importance sampler keeps them:

    'pareto_k': k̂ of the M largest weights over the (M+1)-th (NaN when M < 5);
    'effective_sample_size': `(Σ w)² / Σ w²`, between 1 and S.

  Neither changes when every log-weight is shifted by one constant, and the sums are best kept
  relative to the largest log-weight (as `diagnostics` does): in float32 a `log Σ w` near −500 is
  rounded by ~3e-5, which puts ~1e-4 of relative error on the ESS.
  """
  ascending = jnp.sort(top_log_weights)
  if ascending.shape[-1] - 1 >= MIN_TAIL_LENGTH:
    k = pareto_k(ascending[1:], ascending[0])
  else:
    k = jnp.full((), jnp.nan, ascending.dtype)
  effective_sample_size = jnp.exp(2.0 * log_sum_w - log_sum_w2)
  return {'pareto_k': k, 'effective_sample_size': effective_sample_size}


def diagnostics(log_weights: jax.Array) -> dict[str, jax.Array]:
  """The diagnostics of `diagnostics_from_top` for one example's S log-weights `[S]`."""
  num_tail = tail_length(log_weights.shape[-1])
  top, _ = jax.lax.top_k(log_weights, num_tail + 1)
  shift = top[0]  # the largest log-weight: sums relative to it keep their float32 digits
  return diagnostics_from_top(top - shift, jax.scipy.special.logsumexp(log_weights - shift),
                              jax.scipy.special.logsumexp(2.0 * (log_weights - shift)))
