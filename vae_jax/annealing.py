"""Annealed importance sampling (Neal 2001) with Hamiltonian Monte Carlo transitions.

A path of distributions from a normalised initial density `f_0` (the encoder's q(z|x) or the
prior p(z)) to the unnormalised target `f_1(z) = p(x, z)`:

    log f_β(z) = (1 − β) log f_0(z) + β log f_1(z),     0 = β_0 < β_1 < … < β_T = 1.

A chain starts at z_0 ~ f_0; at each β_t its weight gains `(β_t − β_{t−1}) (log f_1 − log f_0)`
at the current z, then an HMC transition leaving f_{β_t} invariant moves z. `E[w] = Z_1/Z_0 =
p(x)`, so the log-mean-exp of the chains' log-weights is a stochastic lower bound on log p(x).
Run with the β's reversed from an exact draw of f_1's normalised density (BDMC, Grosse et al.
2015), the same weights give a stochastic lower bound on −log p(x), hence an upper bound on
log p(x).

The HMC kernel is blackjax's. Each chain's step size is adapted during the run towards an
acceptance rate of 0.65 (×1.02 above it, ×0.98 below, as Wu et al. 2017 do); a step size set by
the chain's own past makes the estimator biased in principle, by an amount the tests bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

TARGET_ACCEPTANCE = 0.65


def sigmoid_schedule(num_steps: int, sharpness: float = 4.0) -> np.ndarray:
  """`num_steps + 1` inverse temperatures from 0 to 1, dense at both ends (the sigmoidal
  schedule of Grosse et al. 2015 and Wu et al. 2017)."""
  s = 1.0 / (1.0 + np.exp(-np.linspace(-sharpness, sharpness, num_steps + 1)))
  return ((s - s[0]) / (s[-1] - s[0])).astype(np.float32)


def anneal(key: jax.Array, z0, log_densities, betas: jax.Array, *, leapfrog_steps: int,
           step_size: float, adapt_step_size: bool = True):
  """Runs AIS chains along `betas` (increasing: forward; decreasing: reverse).

  z0             the chains' start, a pytree with the chain axis leading
  log_densities  `z -> (log f_0(z), log f_1(z))` for one chain's z (no chain axis)
  Returns the chains' log-weights `Σ_t (β_t − β_{t−1})(log f_1 − log f_0)(z_{t−1})` [C], their
  final positions, and `{'acceptance_rate': mean over steps and chains, 'step_size': mean final
  step size}`.
  """
  num_chains = jax.tree.leaves(z0)[0].shape[0]
  inverse_mass = jnp.ones(ravel_pytree(jax.tree.map(lambda a: a[0], z0))[0].shape)
  # Imported here: blackjax computes with jax when imported, which would start the backend
  # before a multi-host launcher can call jax.distributed.initialize().
  from blackjax.mcmc import hmc  # pylint: disable=import-outside-toplevel
  kernel = hmc.build_kernel()

  def tempered(z, beta):
    log_f0, log_f1 = log_densities(z)
    return log_f0 + beta * (log_f1 - log_f0), log_f1 - log_f0

  def chain_step(key, z, step, beta):
    # The state at the new β: its log-density and gradient (which HMC needs), and the weight
    # increment's log f_1 − log f_0 from the same evaluation.
    (log_f, increment), gradient = jax.value_and_grad(tempered, has_aux=True)(z, beta)
    state = hmc.HMCState(z, log_f, gradient)
    state, info = kernel(key, state, lambda z: tempered(z, beta)[0], step, inverse_mass,
                         leapfrog_steps)
    return state.position, increment, info.acceptance_rate

  def transition(carry, inputs):
    z, log_w, steps, acceptance = carry
    beta_before, beta, step_key = inputs
    keys = jax.random.split(step_key, num_chains)
    z, increment, accepted = jax.vmap(chain_step, in_axes=(0, 0, 0, None))(keys, z, steps, beta)
    log_w = log_w + (beta - beta_before) * increment
    if adapt_step_size:
      steps = steps * jnp.where(accepted > TARGET_ACCEPTANCE, 1.02, 0.98)
    return (z, log_w, steps, acceptance + accepted), None

  betas = jnp.asarray(betas, jnp.float32)
  step_keys = jax.random.split(key, betas.shape[0] - 1)
  init = (z0, jnp.zeros(num_chains), jnp.full(num_chains, step_size, jnp.float32),
          jnp.zeros(num_chains))
  (z, log_w, steps, acceptance), _ = jax.lax.scan(transition, init,
                                                  (betas[:-1], betas[1:], step_keys))
  return log_w, z, {'acceptance_rate': jnp.mean(acceptance) / (betas.shape[0] - 1),
                    'step_size': jnp.mean(steps)}


def log_mean_exp(log_w: jax.Array, axis: int = -1) -> jax.Array:
  return jax.scipy.special.logsumexp(log_w, axis=axis) - jnp.log(log_w.shape[axis])
