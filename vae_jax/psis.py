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

Pure jax.numpy on static shapes: jittable and vmappable, and float32-safe: the ESS's sums are
taken relative to the largest log-weight, and the k̂ fit works on log exceedances, so no weight
is exponentiated where it could underflow. A k̂ that cannot be fitted is NaN, and NaN counts as
unreliable (`unreliable`).
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


def _log_exceedances(largest_log_weights: jax.Array, threshold_log_weight: jax.Array) -> jax.Array:
  """`log(w_i − u)` for the tail weights, ascending, less that of the largest (which does not
  change k̂): `lw_i + log(1 − exp(lu − lw_i))`, the second term by `expm1` so that exceedances
  just above the threshold keep their precision. In logs, no exceedance underflows: one weight
  100 nats above the rest leaves the others' at −100, where `exp` gives float32 zero."""
  log_weights = jnp.sort(largest_log_weights)
  log_fraction = jnp.log(-jnp.expm1(threshold_log_weight - log_weights))  # log(1 − u/w_i)
  # Differences first: in float32 a log-weight near −500 carries only ~3e-5 of precision.
  return (log_weights - log_weights[-1]) + (log_fraction - log_fraction[-1])


def _log_abs_expm1(t: jax.Array) -> jax.Array:
  """`log |eᵗ − 1|` without overflow for large t."""
  return jnp.where(t > 0, t + jnp.log(-jnp.expm1(-jnp.abs(t))), jnp.log(-jnp.expm1(-jnp.abs(t))))


def pareto_k(largest_log_weights: jax.Array, threshold_log_weight: jax.Array) -> jax.Array:
  """k̂ of the generalised Pareto fitted to the exceedances over the threshold weight u of the
  M largest weights: `largest_log_weights` `[M]` (any order; M ≥ 5, static), the log of the
  (M+1)-th largest weight `threshold_log_weight` `[]`. NaN when the tail cannot be fitted: no
  exceedance, or none in the tail's first quartile (tied weights); callers count NaN as
  unreliable (`unreliable`).

  In the units y_max = 1 with y_q the tail's first quartile, Zhang & Stephens' grid is
  `b_j = 1 − c_j / y_q` (c_j > 0), so every `1 − b_j y_i = (1 − y_i) + c_j y_i / y_q` and
  `−b_j = c_j / y_q − 1` is computed from logs: the fit holds however far the largest weight
  stands above the rest (float32 exponentials would give 0/0 beyond ~88 nats)."""
  n = largest_log_weights.shape[-1]
  if largest_log_weights.ndim != 1 or n < MIN_TAIL_LENGTH:
    raise ValueError(f'pareto_k needs one example\'s tail of at least {MIN_TAIL_LENGTH} '
                     f'log-weights, shape [M]; got shape {largest_log_weights.shape}.')
  log_y = _log_exceedances(largest_log_weights, threshold_log_weight)
  dtype = log_y.dtype
  log_quartile = log_y[int(n / 4 + 0.5) - 1]
  fittable = jnp.isfinite(log_quartile)  # then the largest exceedance is positive too
  log_y, log_quartile = (jnp.where(fittable, v, 0.0) for v in (log_y, log_quartile))
  log_one_minus_y = jnp.log(-jnp.expm1(log_y))  # −inf for the largest

  def profile_k(log_c):  # k(b) = mean_i log(1 − b y_i) at b = 1 − c / y_q, for c [J]
    return jnp.mean(jnp.logaddexp(log_one_minus_y, log_c[:, None] + log_y - log_quartile),
                    axis=-1)

  # Zhang & Stephens' grid of b (< 1/y_max), with the prior on b scaled by the first quartile.
  num_grid = 30 + int(math.sqrt(n))
  grid = 1.0 - np.sqrt(num_grid / (np.arange(1, num_grid + 1, dtype=np.float64) - 0.5))  # < 0
  log_c = jnp.asarray(np.log(-grid / _PRIOR_BS), dtype)
  k = profile_k(log_c)  # the profile estimate of k at each b
  log_minus_b = _log_abs_expm1(log_c - log_quartile)  # log |−b|; −b and k share their sign
  profile_log_likelihood = n * (log_minus_b - jnp.log(jnp.abs(k)) - k - 1.0)
  weights = jax.nn.softmax(profile_log_likelihood)  # = 1 / Σ_j exp(L_j − L_i), stably
  # The posterior mean of b is 1 − (Σ_j w_j c_j) / y_q: the same form, c averaged.
  k_posterior = profile_k(jnp.log(jnp.sum(weights * jnp.exp(log_c)))[None])[0]
  k_shrunk = (n * k_posterior + _PRIOR_K * 0.5) / (n + _PRIOR_K)  # the prior k ~ 0.5
  return jnp.where(fittable, k_shrunk, jnp.nan).astype(dtype)


def unreliable(pareto_k, threshold: float = RELIABLE_PARETO_K):
  """Whether k̂ says the estimate cannot be trusted: above `threshold`, or NaN (no fit: the
  weights' tail could not be measured, which is never evidence that it is light)."""
  return ~(pareto_k <= threshold)


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
