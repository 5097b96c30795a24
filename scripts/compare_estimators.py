r"""How far each log p(x) estimate is off, example by example, against an exact reference.

  python -m scripts.compare_estimators --reference=EXACT.json --reports=IS.json,AIS.json \
      [--figure=errors.png]

Reads experiments.evaluate reports that hold per-example values (`quadrature` or `exact` as the
reference; `importance_sampled` and `ais` as the estimates, over the same first N examples of
the same split) and prints a markdown table: each estimator's mean, its mean and worst error
against the reference (reference − estimate: positive is an underestimate), the share of
examples off by more than 1 nat, and, for importance sampling, how well its k̂ > 0.7 flags
match the examples off by more than 1 nat. `--figure` draws each example's error against its
k̂, and each estimator's errors sorted.
"""

from __future__ import annotations

import json

import numpy as np
from absl import app, flags

from vae_jax import psis

_REFERENCE = flags.DEFINE_string('reference', None, 'A report with an exact log p(x).',
                                 required=True)
_REPORTS = flags.DEFINE_list('reports', [], 'Reports with estimates to compare.')
_FIGURE = flags.DEFINE_string('figure', None, 'Where to write the figure (PNG), if anywhere.')

ESTIMATORS = ('importance_sampled', 'ais', 'quadrature', 'exact')
LARGE_ERROR = 1.0  # nats


def per_example(report: dict) -> dict[str, np.ndarray]:
  """{estimator: per-example log p(x)} of the estimators a report holds."""
  return {name: np.asarray(report[name]['per_example_log_likelihood'])
          for name in ESTIMATORS if 'per_example_log_likelihood' in report.get(name, {})}


def flag_agreement(error: np.ndarray, pareto_k: np.ndarray, threshold: float) -> dict:
  """How k̂ > threshold (or not fitted: NaN) matches |error| > 1 nat: precision (flagged
  examples that are off), recall (examples off that are flagged)."""
  flagged, off = psis.unreliable(pareto_k, threshold), np.abs(error) > LARGE_ERROR
  return {'flagged': float(flagged.mean()),
          'precision': float((flagged & off).sum() / max(flagged.sum(), 1)),
          'recall': float((flagged & off).sum() / max(off.sum(), 1))}


def comparison_rows(reference: np.ndarray, reports: list[dict]) -> list[dict]:
  rows = []
  for report in reports:
    for name, values in per_example(report).items():
      if len(values) > len(reference):
        raise app.UsageError(f'{name} holds {len(values)} examples, the reference only '
                             f'{len(reference)}: evaluate the reference on as many.')
      # `--num_examples=N` evaluates the first N: compare with the reference's first N.
      error = reference[:len(values)] - values
      row = {'estimator': name, 'seconds': report['seconds'][name], 'num_examples': len(values),
             'reference_mean': float(reference[:len(values)].mean()),
             'mean': float(values.mean()), 'mean_error': float(error.mean()),
             'worst_error': float(error.max()), 'worst_index': int(error.argmax()),
             'overestimate': float(-error.min()), 'off_by_1_nat': float(np.mean(error > 1))}
      if name == 'importance_sampled':
        sampled = report[name]
        row.update(num_samples=sampled['num_samples'], **flag_agreement(
            error, np.asarray(sampled['per_example_pareto_k']), sampled['reliable_pareto_k']))
      if name == 'ais':
        row.update(num_steps=report[name]['num_steps'], num_chains=report[name]['num_chains'])
      rows.append(row)
  return rows


def markdown(reference_mean: float, rows: list[dict]) -> str:
  lines = [f'Reference (exact) mean log p(x): {reference_mean:.3f} nats.', '',
           '| estimator | examples | exact mean there | mean | mean error | worst error '
           '(example) | largest overestimate | off by > 1 nat | k̂ > 0.7: share, precision, '
           'recall | seconds |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for row in rows:
    flags_cell = (f"{100 * row['flagged']:.1f}%, {row['precision']:.2f}, {row['recall']:.2f}"
                  if 'flagged' in row else '')
    label = {'importance_sampled': lambda r: f"IS k={r['num_samples']}",
             'ais': lambda r: f"AIS {r['num_steps']}×{r['num_chains']}"}.get(
                 row['estimator'], lambda r: r['estimator'])(row)
    lines.append(f"| {label} | {row['num_examples']} | {row['reference_mean']:.3f} | "
                 f"{row['mean']:.3f} | {row['mean_error']:.3f} | "
                 f"{row['worst_error']:.2f} (#{row['worst_index']}) | {row['overestimate']:.2f} | "
                 f"{100 * row['off_by_1_nat']:.1f}% | {flags_cell} | {row['seconds']:.0f} |")
  return '\n'.join(lines)


def draw(reference: np.ndarray, reports: list[dict], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
  figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4))
  for report in reports:
    for name, values in per_example(report).items():
      label = {'importance_sampled': f"IS k={report[name].get('num_samples')}",
               'ais': f"AIS {report[name].get('num_steps')} steps × "
                      f"{report[name].get('num_chains')} chains"}.get(name, name)
      error = reference[:len(values)] - values
      label += f' ({len(values)} images)'
      right.plot(np.arange(1, len(error) + 1) / len(error), np.sort(error)[::-1], label=label)
      if name == 'importance_sampled':
        left.scatter(report[name]['per_example_pareto_k'], error, s=2, alpha=0.4)
        left.axvline(report[name]['reliable_pareto_k'], color='k', lw=0.8, ls='--')
  left.set(xlabel='Pareto k̂ of the importance weights', ylabel='exact − estimate (nats)',
           yscale='symlog', title='importance sampling: error against k̂')
  right.set(xlabel='share of examples, worst first', ylabel='exact − estimate (nats)',
            xscale='log',
            yscale='symlog', title='errors, sorted')
  right.axhline(0, color='k', lw=0.8)
  right.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=110)


def main(argv):
  del argv
  with open(_REFERENCE.value, encoding='utf-8') as f:
    reference_report = json.load(f)
  exact = {name: values for name, values in per_example(reference_report).items()
           if name in ('quadrature', 'exact')}
  if not exact:
    raise app.UsageError(f'{_REFERENCE.value} holds no per-example quadrature or exact values.')
  reference = next(iter(exact.values()))
  reports = []
  for path in _REPORTS.value:
    with open(path, encoding='utf-8') as f:
      reports.append(json.load(f))
  print(markdown(float(reference.mean()), comparison_rows(reference, reports)))
  if _FIGURE.value:
    draw(reference, reports, _FIGURE.value)


if __name__ == '__main__':
  app.run(main)
