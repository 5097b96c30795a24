"""The importance-sampled estimate of log p(x), with what says how far it can be off: the
Pareto k̂ and effective sample size of each example's weights, the Monte-Carlo error measured
over repeated seeds, and the test-set sampling error."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import compiler_options, objectives, options, psis
from vae_jax.options import Option
from vae_jax.evaluators import batched, registry

WORST_EXAMPLES = 10  # indices of the examples with the largest k̂ that a report lists


def make_importance_sampling_fn(model, *, num_samples: int, chunk_size: int,
                                jit_options: dict | None = None):
  """A jitted `(params, images [B, ...], example_ids [B], rng) -> {'log_likelihood': [B],
  'standard_error': [B], 'pareto_k': [B], 'effective_sample_size': [B]}`: the estimate

      log p(x) ≈ log (1/K) Σ_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x),   K = num_samples,

  (the IWAE bound with K samples, which tends to log p(x) from below as K grows). The K draws
  are made `chunk_size` at a time inside a `lax.scan`, keeping running log-sums of the weights
  and of their squares and the largest weights (for k̂), so memory is set by `chunk_size`, not
  K. `standard_error` is the delta-method Monte-Carlo error of log p̂ (the weights' sample
  standard deviation over √K times their mean): it is itself unreliable when k̂ is large.
  """
  chunk_size = min(chunk_size, num_samples)
  num_chunks = math.ceil(num_samples / chunk_size)
  num_top = min(psis.tail_length(num_samples) + 1, num_samples)

  def example_estimate(params, image, key):
    x = image[None]

    def add_chunk(carry, chunk_index):
      log_sum_w, log_sum_w2, top = carry
      terms = objectives.log_weight_terms(model, params, x, jax.random.fold_in(key, chunk_index),
                                          chunk_size)
      log_w = objectives.log_weights(terms)[:, 0]
      in_range = chunk_index * chunk_size + jnp.arange(chunk_size) < num_samples
      log_w = jnp.where(in_range, log_w, -jnp.inf)
      top = jax.lax.top_k(jnp.concatenate([top, log_w]), num_top)[0]
      return (jnp.logaddexp(log_sum_w, jax.scipy.special.logsumexp(log_w)),
              jnp.logaddexp(log_sum_w2, jax.scipy.special.logsumexp(2 * log_w)), top), None

    none = jnp.asarray(-jnp.inf, jnp.float32)
    (log_sum_w, log_sum_w2, top), _ = jax.lax.scan(
        add_chunk, (none, none, jnp.full(num_top, -jnp.inf)), jnp.arange(num_chunks))
    # Var(w) / mean(w)² = K Σw² / (Σw)² − 1.
    relative_variance = jnp.maximum(num_samples * jnp.exp(log_sum_w2 - 2 * log_sum_w) - 1.0, 0.0)
    return {'log_likelihood': log_sum_w - math.log(num_samples),
            'standard_error': jnp.sqrt(relative_variance / num_samples),
            **psis.diagnostics_from_top(top, log_sum_w, log_sum_w2)}

  @functools.partial(batched.jit_at_full_precision, compiler_options=jit_options)
  def importance_sampling_fn(params, images, example_ids, rng):
    keys = batched.per_example_keys(rng, example_ids)
    return jax.vmap(example_estimate, in_axes=(None, 0, 0))(params, images, keys)

  return importance_sampling_fn


def repeated_estimates(importance_sampling_fn, params, images: np.ndarray, *, batch_size: int,
                       rng: jax.Array, num_repeats: int) -> dict[str, np.ndarray]:
  """The per-example results of `num_repeats` independent runs (seed r: `fold_in(rng, r)`;
  the first is the single run's), each `[R, N]`."""
  runs = [batched.map_examples(importance_sampling_fn, params, images, batch_size=batch_size,
                               rng=rng if repeat == 0 else jax.random.fold_in(rng, repeat))
          for repeat in range(num_repeats)]
  return {key: np.stack([run[key] for run in runs]) for key in runs[0]}


def summarize(runs: dict[str, np.ndarray]) -> dict:
  """The split's estimate (the mean over seeds of each seed's split mean, all at K samples), its
  errors, and the diagnostics of the first seed's weights.

  monte_carlo_error     standard error of the reported mean from the estimator's noise, measured
                        across seeds: √(Σ_i s_i² / R) / N with s_i² example i's variance over
                        the R seeds (None for R = 1)
  delta_method_error    the same from the within-run delta-method formula (unreliable where k̂
                        is large)
  test_set_error        standard error of the mean over a test set of this size: the examples'
                        standard deviation over √N
  """
  estimates = runs['log_likelihood']  # [R, N]
  num_repeats, num_examples = estimates.shape
  per_example = estimates.mean(axis=0)
  pareto_k = runs['pareto_k'][0]
  # k̂ needs at least 25 samples (psis.MIN_TAIL_LENGTH tail weights): below that it is NaN
  # everywhere and says nothing; above, a NaN is a tail that could not be fitted: unreliable.
  fitted = bool(np.any(np.isfinite(pareto_k)))
  # Worst first: NaN (no fit) before every number, then the largest k̂.
  worst = np.argsort(-np.nan_to_num(pareto_k, nan=np.inf), kind='stable')[:WORST_EXAMPLES]
  return {
      'log_likelihood': float(per_example.mean()),
      'seed_means': [float(m) for m in estimates.mean(axis=1)],
      'monte_carlo_error': (float(np.sqrt(np.sum(estimates.var(axis=0, ddof=1)) / num_repeats)
                                  / num_examples) if num_repeats > 1 else None),
      'delta_method_error': float(np.sqrt(np.sum(runs['standard_error'][0]**2)) / num_examples
                                  / np.sqrt(num_repeats)),
      'test_set_error': batched.test_set_error(per_example),
      'unreliable_fraction': (float(np.mean(psis.unreliable(pareto_k))) if fitted else None),
      'reliable_pareto_k': psis.RELIABLE_PARETO_K,
      'median_pareto_k': float(np.nanmedian(pareto_k)) if fitted else None,
      'median_effective_sample_size': float(np.median(runs['effective_sample_size'][0])),
      'min_effective_sample_size': float(np.min(runs['effective_sample_size'][0])),
      'worst_examples': [{'index': int(i), 'pareto_k': float(pareto_k[i]),
                          'log_likelihood': float(per_example[i]),
                          'effective_sample_size': float(runs['effective_sample_size'][0][i])}
                         for i in worst],
      'num_repeats': num_repeats,
      'per_example_log_likelihood': per_example.tolist(),
      'per_example_pareto_k': pareto_k.tolist(),
  }


@dataclasses.dataclass
class ImportanceSamplingEvaluator:
  """`{'importance_sampled': {log_likelihood, monte_carlo_error, test_set_error, diagnostics,
  num_samples, ...}}` (see `summarize`)."""
  importance_sampling_fn: object
  num_samples: int
  num_repeats: int
  batch_size: int
  computes_log_likelihood = 'estimate'

  @property
  def report_name_part(self) -> str:
    """What `experiments.evaluate` adds to its report's file name: k."""
    return f'k{self.num_samples}'

  def work(self, num_examples: int) -> float:
    return num_examples * self.num_samples * self.num_repeats

  def __call__(self, params, split, rng) -> dict:
    runs = repeated_estimates(self.importance_sampling_fn, params, split.images,
                              batch_size=self.batch_size, rng=rng, num_repeats=self.num_repeats)
    return {'importance_sampled': {**summarize(runs), 'num_samples': self.num_samples}}


def _k_text(pareto_k: float) -> str:
  return 'no fit' if math.isnan(pareto_k) else f'{pareto_k:.2f}'


def report_lines(report: dict, seconds: float) -> list[str]:
  sampled = report['importance_sampled']
  repeats = sampled['num_repeats']
  lines = [f"  log p(x)      {sampled['log_likelihood']:10.3f} "
           f"{registry.format_errors(sampled)} nats  "
           f"(importance sampling, k = {sampled['num_samples']}, {repeats} "
           f"seed{'s' if repeats > 1 else ''}, {seconds:.0f} s)",
           '                ± Monte Carlo: ' + (
               f'the spread of the estimate over the {repeats} seeds' if repeats > 1 else
               'not measured (--options=importance_sampled.num_repeats=2 measures it over '
               'seeds)') + f" (the delta method within a run says ± "
           f"{sampled['delta_method_error']:.3f}); ± test set: the examples' standard deviation "
           'over √N, how far another test set of this size could move it']
  if sampled['unreliable_fraction'] is None:
    lines.append(f"                k̂ needs k ≥ 25; effective sample size median "
                 f"{sampled['median_effective_sample_size']:.0f}, min "
                 f"{sampled['min_effective_sample_size']:.1f} of {sampled['num_samples']}")
    return lines
  lines.append(f"                k̂ > {sampled['reliable_pareto_k']} or not fitted on "
               f"{100 * sampled['unreliable_fraction']:.1f}% of examples (median k̂ "
               f"{sampled['median_pareto_k']:.2f}); effective sample size median "
               f"{sampled['median_effective_sample_size']:.0f}, min "
               f"{sampled['min_effective_sample_size']:.1f} of {sampled['num_samples']}")
  if sampled['unreliable_fraction'] > 0:
    worst = ', '.join(f"#{e['index']} (k̂ {_k_text(e['pareto_k'])})"
                      for e in sampled['worst_examples'][:5])
    lines.append(f"                WARNING: on those examples q(z|x) misses posterior mass, so the "
                 f"estimate is most likely too low by more than its errors say (worst: {worst}). "
                 f"Quote AIS (--evals=ais) or, for 1-2 latent units, quadrature.")
  lines.append('                (k̂ sees only where q(z|x) samples: a posterior mode q never '
               'reaches goes unflagged; AIS from ½q + ½p(z) can find it)')
  return lines


@registry.register(
    'importance_sampled', during_training=False,  # minutes per split at K = 5000
    report_lines=report_lines, report_rank=1, applies_to='num_samples > 0',
    num_samples=Option(5000, 'K: importance samples per example (Burda et al. use 5000)',
                       options.non_negative),
    chunk_size=Option(100, 'samples drawn at a time (memory: chunk_size × eval_batch_size '
                      'draws)', options.at_least(1)),
    num_repeats=Option(2, 'independent seeds: the Monte-Carlo error is measured across them',
                       options.at_least(1)))
def create(model, config, dataset) -> ImportanceSamplingEvaluator | None:
  del dataset
  options = config.evals.importance_sampled
  if not options.num_samples:
    return None
  return ImportanceSamplingEvaluator(
      make_importance_sampling_fn(model, jit_options=compiler_options.for_run(config),
                                  num_samples=options.num_samples,
                                  chunk_size=options.chunk_size),
      options.num_samples, options.num_repeats, config.eval_batch_size)
