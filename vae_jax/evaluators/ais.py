"""log p(x) by annealed importance sampling (Neal 2001), as Wu et al. (2017) evaluate
decoder-based models: a stochastic lower bound that, unlike importance sampling from q(z|x),
tends to log p(x) as the number of intermediate distributions grows, even where q misses part of
the posterior."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import annealing, compiler_options, models
from vae_jax.evaluators import batched, registry
from vae_jax.options import Option

INITIAL_DISTRIBUTIONS = ('mixture', 'posterior', 'prior')
GRADIENT_COST = 3  # a gradient of log p(x, z) costs about three passes through the model


def settings(options) -> dict:
  """The AIS settings a report records (and `make_ais_fn` takes)."""
  return {'num_steps': int(options.num_steps), 'num_chains': int(options.num_chains),
          'leapfrog_steps': int(options.leapfrog_steps), 'step_size': float(options.step_size),
          'pilot_chains': int(options.pilot_chains), 'initial': str(options.initial)}


def gradient_evaluations(settings: dict) -> int:
  """Gradient evaluations of log p(x, z) per example: (leapfrog steps + 1) per temperature and
  chain, the pilot's chains included (the +1 evaluates the state at each new temperature)."""
  return ((settings['num_chains'] + settings['pilot_chains']) * settings['num_steps']
          * (settings['leapfrog_steps'] + 1))


def chain_log_densities(model, params, x: jax.Array, context, initial: str):
  """`z -> (log f_0(z), log p(x, z))` for one chain (no batch axis) on one example `x [1, ...]`,
  with f_0 = q(z|x), p(z), or their even mixture."""

  def log_densities(z):
    terms = model.apply(params, x, jax.tree.map(lambda a: a[None], z), context,
                        method='latent_log_densities')
    log_joint = terms['reconstruction'] + terms['log_prior']
    log_initial = {
        'posterior': lambda: terms['log_posterior'],
        'prior': lambda: terms['log_prior'],
        'mixture': lambda: jnp.logaddexp(terms['log_posterior'], terms['log_prior']) - jnp.log(2.0),
    }[initial]()
    return log_initial[0], log_joint[0]

  return log_densities


def initial_draws(model, params, key: jax.Array, context, num_chains: int, initial: str):
  """The chains' starts, from f_0. For the mixture, stratified: of the first `2 ⌊C/2⌋` chains
  half from q(z|x) and half from p(z), and an odd last chain from either with probability ½,
  so that the mean of the chains' weights is unbiased for any C (each pair's two weights sum
  to 2 p(x) in expectation, the odd chain's to p(x))."""
  chains_context = jax.tree.map(lambda a: jnp.broadcast_to(a, (num_chains, *a.shape[1:])),
                                context)
  posterior_key, prior_key, coin_key = jax.random.split(key, 3)
  if initial != 'mixture':
    return model.apply(params, posterior_key, chains_context, num_chains, initial == 'prior',
                       method='draw_latents')
  from_posterior = model.apply(params, posterior_key, chains_context, num_chains, False,
                               method='draw_latents')
  from_prior = model.apply(params, prior_key, chains_context, num_chains, True,
                           method='draw_latents')
  chain, paired = jnp.arange(num_chains), 2 * (num_chains // 2)
  use_prior = jnp.where(chain < paired, chain >= paired // 2, jax.random.bernoulli(coin_key))

  def choose(a, b):
    return jnp.where(use_prior.reshape((-1,) + (1,) * (a.ndim - 1)), b, a)

  return jax.tree.map(choose, from_posterior, from_prior)


def make_ais_fn(model, *, num_steps: int, num_chains: int, leapfrog_steps: int,
                step_size: float, pilot_chains: int, initial: str,
                jit_options: dict | None = None):
  """A jitted `(params, images [B, ...], example_ids [B], rng) -> {'log_likelihood': [B], ...}`:
  per example, the log-mean-exp over `num_chains` AIS chains of their log-weights along
  `num_steps` intermediate distributions from `initial` (q(z|x), p(z) or their mixture) to
  p(x, z), with the chains' Monte-Carlo error (delta method over chains), mean acceptance rate
  and mean step size. The step sizes are set per β by a pilot of `pilot_chains` chains
  starting at `step_size`, on random draws of their own, and then frozen."""
  betas = annealing.sigmoid_schedule(num_steps)
  run = dict(leapfrog_steps=leapfrog_steps, initial_step_size=step_size)

  def example_estimate(params, image, key):
    x = image[None]
    start_key, run_key, pilot_start_key, pilot_key = jax.random.split(key, 4)
    context = model.apply(params, x, method='encode_context')
    log_densities = chain_log_densities(model, params, x, context, initial)
    step_sizes = annealing.pilot_step_sizes(
        pilot_key, initial_draws(model, params, pilot_start_key, context, pilot_chains, initial),
        log_densities, betas, **run)
    z0 = initial_draws(model, params, start_key, context, num_chains, initial)
    log_w, _, info = annealing.anneal(run_key, z0, log_densities, betas,
                                      leapfrog_steps=leapfrog_steps, step_sizes=step_sizes)
    weights = jnp.exp(log_w - jnp.max(log_w))
    return {'log_likelihood': annealing.log_mean_exp(log_w),
            'standard_error': jnp.std(weights, ddof=1) / (jnp.sqrt(num_chains) * jnp.mean(weights)),
            'chain_effective_sample_size': jnp.sum(weights)**2 / jnp.sum(weights**2),
            'acceptance_rate': info['acceptance_rate'],
            'step_size': jnp.exp(jnp.mean(jnp.log(step_sizes[1:])))}

  @functools.partial(batched.jit_at_full_precision, compiler_options=jit_options)
  def ais_fn(params, images, example_ids, rng):
    keys = batched.per_example_keys(rng, example_ids)
    return jax.vmap(example_estimate, in_axes=(None, 0, 0))(params, images, keys)

  return ais_fn


def summarize(per_example: dict[str, np.ndarray]) -> dict:
  """Split means of the per-example AIS results, and the errors of that mean."""
  estimates = per_example['log_likelihood']
  return {
      'log_likelihood': float(np.mean(estimates)),
      'monte_carlo_error': float(np.sqrt(np.sum(per_example['standard_error']**2))
                                 / len(estimates)),
      'test_set_error': batched.test_set_error(estimates),
      'acceptance_rate': float(np.mean(per_example['acceptance_rate'])),
      'mean_step_size': float(np.exp(np.mean(np.log(per_example['step_size'])))),
      'min_chain_effective_sample_size': float(np.min(per_example['chain_effective_sample_size'])),
      'per_example_log_likelihood': estimates.tolist(),
  }


@dataclasses.dataclass
class AISEvaluator:
  """`{'ais': {log_likelihood, monte_carlo_error, test_set_error, acceptance_rate, ...,
  settings}}`."""
  ais_fn: object
  options: dict
  batch_size: int
  computes_log_likelihood = 'estimate'

  def work(self, num_examples: int) -> float:
    return num_examples * GRADIENT_COST * gradient_evaluations(self.options)

  def __call__(self, params, split, rng) -> dict:
    per_example = batched.map_examples(self.ais_fn, params, split.images,
                                       batch_size=self.batch_size, rng=rng)
    return {'ais': {**summarize(per_example), **self.options,
                    'gradient_evaluations_per_example': gradient_evaluations(self.options)}}


def option_problems(config) -> list[str]:
  """What in `config.evals.ais` cannot run on this config's model, each naming the fix."""
  options, problems = config.evals.ais, []
  if options.initial not in INITIAL_DISTRIBUTIONS:
    problems.append(f'evals.ais.initial={options.initial!r}: choose from '
                    f'{INITIAL_DISTRIBUTIONS}.')
  elif options.initial != 'prior' and config.model.encoder.get('flow_steps', 0):
    problems.append(f"evals.ais.initial={options.initial!r} needs q(z|x) at any z, and an IAF "
                    "posterior has its density at its own samples only: set "
                    "evals.ais.initial='prior'.")
  for key in ('num_steps', 'num_chains', 'leapfrog_steps', 'pilot_chains'):
    if options[key] < 1:
      problems.append(f'evals.ais.{key}={options[key]} must be at least 1.')
  if options.step_size <= 0:
    problems.append(f'evals.ais.step_size={options.step_size} must be positive.')
  return problems


def check_options(config) -> None:
  problems = option_problems(config)
  if problems:
    raise ValueError(' '.join(problems))


def report_lines(report: dict, seconds: float) -> list[str]:
  result = report['ais']
  start = {'posterior': 'q(z|x)', 'prior': 'p(z)', 'mixture': '½q(z|x) + ½p(z)'}[result['initial']]
  return [f"  log p(x)      {result['log_likelihood']:10.3f} {registry.format_errors(result)} "
          f"nats  (AIS from {start}, {result['num_steps']} "
          f"steps × {result['num_chains']} chains × {result['leapfrog_steps']} leapfrog, step "
          f"sizes frozen from a pilot of {result['pilot_chains']} chains (mean "
          f"{result['mean_step_size']:.3g}), acceptance {result['acceptance_rate']:.2f}, "
          f"{seconds:.0f} s)",
          f"                ± Monte Carlo: the delta method over each example's "
          f"{result['num_chains']} chains (it understates the error where the weights are "
          "heavy-tailed: BDMC's gap and the exact value where there is one are the check); "
          "± test set: the examples' standard deviation over √N"]


# log p(x) by annealed importance sampling with HMC (Wu et al. 2017), continuous z; run by
# experiments.evaluate only when named (--evals=ais): its cost is set by its options.
@registry.register(
    'ais', during_training=False, by_default=False, checks=(option_problems,),
    report_lines=report_lines, report_rank=2, applies_to='continuous latents',
    num_steps=Option(400, 'intermediate distributions (a sigmoidal schedule of β)'),
    num_chains=Option(16, 'chains per example; the estimate is their log-mean-exp'),
    leapfrog_steps=Option(2, 'per HMC transition'),
    step_size=Option(0.05, "the pilot's initial step size; each pilot chain adapts its own "
                     'towards acceptance 0.65, and their geometric mean at each β is the '
                     'frozen schedule of the run'),
    pilot_chains=Option(4, 'chains of the pilot run that sets the step sizes (its draws are '
                        'discarded, so the estimate stays unbiased)'),
    initial=Option('mixture', "the path starts at q(z|x) ('posterior'), p(z) ('prior'), or "
                   "their even mixture ('mixture': half the chains from each, an odd last one "
                   'from either at random), which finds posterior modes q misses; with many '
                   "latent units 'posterior' spends the budget better "
                   '(docs/results/log_likelihood_estimators.md)'))
def create(model, config, dataset) -> AISEvaluator | None:
  del dataset
  options = config.evals.ais
  if not isinstance(model, models.LatentDensities):
    return None  # discrete latents: evals.exact sums over them
  check_options(config)
  ais_fn = make_ais_fn(model, **settings(options),
                       jit_options=compiler_options.for_run(config))
  return AISEvaluator(ais_fn, settings(options), config.eval_batch_size)
