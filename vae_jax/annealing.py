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

The HMC kernel is blackjax's. `E[w] = Z` needs every transition fixed before the run: a step
size that a chain sets from its own acceptances makes the weights biased (upwards, by a few
per cent over 50 steps on a 1-D Gaussian; tests/test_annealing.py). So the step sizes are
tuned by a pilot run on its own random stream (`pilot_step_sizes`: each pilot chain adapts
towards acceptance 0.65, ×1.2 above it, ×0.8 below, fast enough to follow β; the schedule is
their geometric mean at each β), and the run itself (`anneal`) takes them frozen. Wu et al.
(2017) instead share one step size across a batch, moved during the run by a slow average of
acceptances and clipped to [1e-4, 0.5].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

TARGET_ACCEPTANCE = 0.65
PILOT_ADAPTATION_RATE = 0.2  # fast: the pilot's weights are discarded, so only lag matters


def sigmoid_schedule(num_steps: int, sharpness: float = 4.0) -> np.ndarray:
  """`num_steps + 1` inverse temperatures from 0 to 1, dense at both ends (the sigmoidal
  schedule of Grosse et al. 2015 and Wu et al. 2017)."""
  s = 1.0 / (1.0 + np.exp(-np.linspace(-sharpness, sharpness, num_steps + 1)))
  return ((s - s[0]) / (s[-1] - s[0])).astype(np.float32)


def _run(key, z0, log_densities, betas, step_sizes, *, leapfrog_steps: int,
         adaptation_rate: float = 0.0):
  """The chains along `betas` [T+1]; the transition to β_t takes step size `step_sizes[t]`
  (`[T+1]`, aligned with `betas`; the first entry is unused), or each chain starts
  at `step_sizes[1]` and moves its own from its acceptances (with `adaptation_rate` r > 0: ×(1 + r)
  above the target acceptance, ×(1 − r) below)."""
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
    z, log_w, chain_steps, acceptance = carry
    beta_before, beta, frozen_step, step_key = inputs
    steps = chain_steps if adaptation_rate else jnp.full(num_chains, frozen_step)
    keys = jax.random.split(step_key, num_chains)
    z, increment, accepted = jax.vmap(chain_step, in_axes=(0, 0, 0, None))(keys, z, steps, beta)
    log_w = log_w + (beta - beta_before) * increment
    if adaptation_rate:
      chain_steps = steps * jnp.where(accepted > TARGET_ACCEPTANCE, 1 + adaptation_rate,
                                      1 - adaptation_rate)
    return (z, log_w, chain_steps, acceptance + accepted), jnp.exp(jnp.mean(jnp.log(steps)))

  betas = jnp.asarray(betas, jnp.float32)
  step_sizes = jnp.broadcast_to(jnp.asarray(step_sizes, jnp.float32), betas.shape)
  step_keys = jax.random.split(key, betas.shape[0] - 1)
  init = (z0, jnp.zeros(num_chains), jnp.full(num_chains, step_sizes[1]), jnp.zeros(num_chains))
  (z, log_w, _, acceptance), used = jax.lax.scan(
      transition, init, (betas[:-1], betas[1:], step_sizes[1:], step_keys))
  return log_w, z, {'acceptance_rate': jnp.mean(acceptance) / (betas.shape[0] - 1),
                    'step_sizes': jnp.concatenate([used[:1], used])}


def anneal(key: jax.Array, z0, log_densities, betas: jax.Array, *, leapfrog_steps: int,
           step_sizes):
  """Runs AIS chains along `betas` `[T+1]` (increasing: forward; decreasing: reverse) with step
  sizes fixed in advance: `step_sizes` `[T+1]` aligned with `betas` (the transition to β_t
  takes `step_sizes[t]`; the first is unused), or one for every transition.

  z0             the chains' start, a pytree with the chain axis leading
  log_densities  `z -> (log f_0(z), log f_1(z))` for one chain's z (no chain axis)
  Returns the chains' log-weights `Σ_t (β_t − β_{t−1})(log f_1 − log f_0)(z_{t−1})` [C], their
  final positions, and `{'acceptance_rate': mean over steps and chains, 'step_sizes': [T+1]}`.
  """
  return _run(key, z0, log_densities, betas, step_sizes, leapfrog_steps=leapfrog_steps)


def anneal_adapting(key: jax.Array, z0, log_densities, betas: jax.Array, *,
                    leapfrog_steps: int, initial_step_size: float,
                    adaptation_rate: float = 0.02):
  """`anneal` with each chain moving its own step size from its own acceptances during the
  run: ×(1 + r) above acceptance 0.65, ×(1 − r) below (r = 0.02: the scheme this module used
  before). Its weights are biased (the transitions depend on the chain's past): use it as a
  pilot, whose `info['step_sizes']` `[T+1]` (at each β, the geometric mean over chains of the
  step size taken) a frozen `anneal` then takes."""
  return _run(key, z0, log_densities, betas, initial_step_size, leapfrog_steps=leapfrog_steps,
              adaptation_rate=adaptation_rate)


def pilot_step_sizes(key: jax.Array, z0, log_densities, betas: jax.Array, *,
                     leapfrog_steps: int, initial_step_size: float,
                     adaptation_rate: float = PILOT_ADAPTATION_RATE) -> jax.Array:
  """A step size per β `[T+1]` from a pilot run of the chains `z0` (drawn on a random stream of
  their own, and discarded): independent of the run that takes them, so that run's weights
  stay unbiased."""
  _, _, info = anneal_adapting(key, z0, log_densities, betas, leapfrog_steps=leapfrog_steps,
                               initial_step_size=initial_step_size,
                               adaptation_rate=adaptation_rate)
  return info['step_sizes']


def log_mean_exp(log_w: jax.Array, axis: int = -1) -> jax.Array:
  return jax.scipy.special.logsumexp(log_w, axis=axis) - jnp.log(log_w.shape[axis])
