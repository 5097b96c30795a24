"""What the approximate posterior uses: active units per stochastic layer and the closed-form
KL of each unit."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from vae_jax import compiler_options
from vae_jax.evaluators import batched, registry

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2015: active when Cov_x(E_q[u|x]) > 10⁻²


def make_posterior_statistics_fn(model, *, jit_options: dict | None = None):
  """A jitted `(params, images, example_ids, rng) -> {'means/<layer>': [B, D], 'kl_per_dimension':
  [B, D] (absent without a closed form)}`."""

  @functools.partial(jax.jit, compiler_options=jit_options)
  def statistics_fn(params, images, example_ids, rng):
    del example_ids, rng  # deterministic
    means = model.apply(params, images, method='posterior_means')
    statistics = {f'means/{layer}': value for layer, value in means.items()}
    kl_per_dimension = model.apply(params, images, method='kl_per_dimension')
    if kl_per_dimension is not None:
      statistics['kl_per_dimension'] = kl_per_dimension
    return statistics

  return statistics_fn


def posterior_features(statistics: dict[str, np.ndarray]) -> np.ndarray:
  """The first layer's posterior means as a `[B, features]` matrix (probes, projections)."""
  means = next(value for name, value in statistics.items() if name.startswith('means/'))
  return means.reshape(len(means), -1)


def posterior_summary(statistics: dict[str, np.ndarray]) -> dict:
  """Active units per layer (Burda et al.: `Cov_x(E_q[u|x]) > 0.01`), the per-unit variances
  they are decided on, and the mean closed-form KL of each unit where there is one.

  A unit whose mean is a vector (a categorical variable's one-hot probabilities, `[B, D, K]`)
  is scored by the trace of that vector's covariance across the data.
  """
  summary = {'active_units': {}, 'posterior_mean_variance': {}}
  for name, means in statistics.items():
    if name.startswith('means/'):
      layer = name.removeprefix('means/')
      variances = np.var(means, axis=0).reshape(means.shape[1], -1).sum(axis=-1)
      summary['active_units'][layer] = int(np.sum(variances > ACTIVE_UNIT_THRESHOLD))
      summary['posterior_mean_variance'][layer] = variances.tolist()
  if 'kl_per_dimension' in statistics:
    summary['kl_per_dimension'] = np.mean(statistics['kl_per_dimension'], axis=0).tolist()
  return summary


@dataclasses.dataclass
class ActiveUnitsEvaluator:
  """`posterior_summary` of a split: `active_units` per layer (metrics), the variances and
  per-unit KLs (lists, in reports)."""
  statistics_fn: object
  batch_size: int

  def __call__(self, params, split, rng) -> dict:
    statistics = batched.map_examples(self.statistics_fn, params, split.images,
                                      batch_size=self.batch_size, rng=rng)
    return posterior_summary(statistics)


def report_lines(report: dict, seconds: float) -> list[str]:
  del seconds
  units = ', '.join(f'{layer} {count}/{len(report["posterior_mean_variance"][layer])}'
                    for layer, count in report['active_units'].items())
  lines = [f'  active units  {units}']
  if 'kl_per_dimension' in report:
    kls = sorted(report['kl_per_dimension'], reverse=True)
    lines.append('  KL per unit   ' + ' '.join(f'{kl:.2f}' for kl in kls))
  return lines


# Active units per layer, and the closed-form KL of each unit.
@registry.register('active_units', during_training=True, report_lines=report_lines,
                   report_rank=7)
def create(model, config, dataset) -> ActiveUnitsEvaluator:
  del dataset
  return ActiveUnitsEvaluator(make_posterior_statistics_fn(
      model, jit_options=compiler_options.for_run(config)), config.eval_batch_size)
