"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015; Wu et al. 2017): how far the AIS
estimate of log p(x) can be off, measured where the truth is bracketed.

On data simulated from the model itself, `z* ~ p(z)`, `x ~ p(x|z*)`, z* is an exact draw from
p(z|x). AIS forward (from q(z|x) or p(z) to p(x, z)) gives a stochastic lower bound on log p(x);
AIS in reverse, started at z*, gives a stochastic upper bound. Their gap bounds the error of the
forward estimate on these examples and, as Wu et al. argue, indicates it on real data of the
same kind when the model fits the data well.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import annealing, compiler_options, models, options, progress
from vae_jax.options import Option
from vae_jax.evaluators import ais as forward_ais
from vae_jax.evaluators import batched, registry


def simulated_images(model, params, rng: jax.Array, example_ids) -> jax.Array:
  """The images `[B, ...]` `make_bdmc_fn(...)(params, rng, example_ids)` simulates (to check
  its bounds against a closed form)."""
  simulate_keys = jax.vmap(lambda key: jax.random.split(key)[0])(batched.per_example_keys(rng, example_ids))
  return jax.vmap(lambda key: model.apply(params, key, 1, method='simulate')[0][0])(simulate_keys)


def make_bdmc_fn(model, *, num_steps: int, num_chains: int, leapfrog_steps: int,
                 step_size: float, pilot_chains: int, initial: str,
                 jit_options: dict | None = None):
  """A jitted `(params, rng, example_ids [B]) -> {'lower_bound', 'upper_bound'} [B]` on B
  examples simulated from the model (example i from `fold_in(rng, i)`). A forward pilot sets
  the step size at each β; both directions take them frozen (the reverse run in reverse)."""
  betas = annealing.sigmoid_schedule(num_steps)

  def example_bounds(params, key):
    simulate_key, chains_key = jax.random.split(key)
    start_key, forward_key, reverse_key, pilot_start_key, pilot_key = (
        jax.random.split(chains_key, 5))
    x, z_star = model.apply(params, simulate_key, 1, method='simulate')
    context = model.apply(params, x, method='encode_context')
    log_densities = forward_ais.chain_log_densities(model, params, x, context, initial)
    step_sizes = annealing.pilot_step_sizes(
        pilot_key, forward_ais.initial_draws(model, params, pilot_start_key, context,
                                             pilot_chains, initial),
        log_densities, betas, leapfrog_steps=leapfrog_steps, initial_step_size=step_size)
    z0 = forward_ais.initial_draws(model, params, start_key, context, num_chains, initial)
    forward, _, _ = annealing.anneal(forward_key, z0, log_densities, betas,
                                     leapfrog_steps=leapfrog_steps, step_sizes=step_sizes)
    # Every reverse chain starts at the exact posterior draw z*.
    z_star = jax.tree.map(lambda a: jnp.broadcast_to(a, (num_chains, *a.shape[1:])), z_star)
    reverse, _, _ = annealing.anneal(reverse_key, z_star, log_densities, betas[::-1],
                                     leapfrog_steps=leapfrog_steps, step_sizes=step_sizes[::-1])
    return {'lower_bound': annealing.log_mean_exp(forward),
            'upper_bound': -annealing.log_mean_exp(reverse)}

  @functools.partial(batched.jit_at_full_precision, compiler_options=jit_options)
  def bdmc_fn(params, rng, example_ids):
    keys = batched.per_example_keys(rng, example_ids)
    return jax.vmap(example_bounds, in_axes=(None, 0))(params, keys)

  return bdmc_fn


@dataclasses.dataclass
class BDMCEvaluator:
  """`{'bdmc': {lower_bound, upper_bound, gap, max_gap, num_simulated, AIS settings}}`: means
  over `num_simulated` examples drawn from the model (the split's images are not used)."""
  bdmc_fn: object
  options: dict
  num_simulated: int
  batch_size: int

  def work(self, num_examples: int) -> float:
    del num_examples  # the split is not used
    return (2 * self.num_simulated * forward_ais.GRADIENT_COST
            * forward_ais.gradient_evaluations(self.options))

  def __call__(self, params, split, rng) -> dict:
    del split  # the data are simulated from the model
    parts = []
    progress.start_pass(self.num_simulated)
    for start in range(0, self.num_simulated, self.batch_size):
      ids = np.arange(start, min(start + self.batch_size, self.num_simulated))
      parts.append(jax.device_get(self.bdmc_fn(params, rng, ids)))
      progress.advance(int(ids[-1]) + 1)
    lower = np.concatenate([p['lower_bound'] for p in parts]).astype(np.float64)
    upper = np.concatenate([p['upper_bound'] for p in parts]).astype(np.float64)
    return {'bdmc': {
        'lower_bound': float(lower.mean()), 'upper_bound': float(upper.mean()),
        'gap': float(np.mean(upper - lower)), 'max_gap': float(np.max(upper - lower)),
        'num_simulated': self.num_simulated, **self.options}}


def report_lines(report: dict, seconds: float) -> list[str]:
  bdmc = report['bdmc']
  return [f"  BDMC          on {bdmc['num_simulated']} examples simulated from the model: "
          f"AIS lower bound {bdmc['lower_bound']:.3f}, upper bound "
          f"{bdmc['upper_bound']:.3f}; gap {bdmc['gap']:.3f} nats (largest "
          f"{bdmc['max_gap']:.3f}), which bounds AIS's error there ({seconds:.0f} s)"]


# Bidirectional Monte Carlo (Grosse et al. 2015): AIS (evals.ais settings) forward and in
# reverse on data simulated from the model; the gap bounds the AIS error there.
@registry.register('bdmc', during_training=False, by_default=False, report_lines=report_lines,
                   report_rank=3, applies_to='continuous latents', num_simulated=Option(
                       100, 'examples drawn from the model', options.at_least(1)))
def create(model, config, dataset) -> BDMCEvaluator | None:
  del dataset
  if not isinstance(model, models.LatentDensities):
    return None
  forward_ais.check_options(config)
  settings = forward_ais.settings(config.evals.ais)
  bdmc_fn = make_bdmc_fn(model, **settings, jit_options=compiler_options.for_run(config))
  return BDMCEvaluator(bdmc_fn, settings, int(config.evals.bdmc.num_simulated),
                       config.eval_batch_size)
