r"""Collects the evaluations of several workdirs into a markdown table, beside the paper's numbers.

  python -m scripts.results_table --root=/tmp/repro            # every workdir under a folder
  python -m scripts.results_table --workdirs=/tmp/a,/tmp/b

For each workdir: its evaluation (`experiments.evaluate` JSON: of the best checkpoint for a
run that stops early, else of the latest step; the most importance samples there; a workdir
never evaluated so, a sweep's say, shows the last test evaluation made during training, without
log p(x)), the epochs trained, the training wall time (summed from metrics.jsonl, evaluations
during training included), and the paper's value from the config's `paper` block, marked
"static" where it is on the fixed binarisation of Larochelle & Murray (a different test set
from a dynamically binarised run's). Runs whose configs differ only in `seed` form one row:
mean ± standard deviation over the seeds (n in the first column). log p(x) is in nats (higher
is better; papers print the NLL, its negative).
"""

import glob
import json
import os

import numpy as np

from absl import app, flags

from configs import default
from experiments import evaluate
from vae_jax.engine import checkpointing, metric_writers

_ROOT = flags.DEFINE_string('root', None, 'A folder whose subfolders are workdirs.')
_WORKDIRS = flags.DEFINE_list('workdirs', [], 'Workdirs, comma-separated.')


def latest_evaluation(workdir: str) -> dict | None:
  reports = [report for _, report in evaluate.read_reports(workdir)
             if report.get('split') == 'test']
  if not reports:
    return None
  return max(reports, key=lambda r: (r.get('checkpoint') == 'best', r['step'],
                                     r.get('importance_sampled', {}).get('num_samples', 0)))


def training_seconds(workdir: str) -> float:
  """Wall time of the training run(s), from the intervals between progress reports."""
  try:
    intervals = [m['interval_seconds'] for m in metric_writers.read_metrics(workdir)
                 if 'interval_seconds' in m]
  except FileNotFoundError:
    return float('nan')
  return sum(intervals) if intervals else float('nan')


def describe_model(config) -> str:
  objective, model = config.objective, config.model
  if model.latent_kind == 'categorical':
    latent = (f'{model.latent_dim} × {model.num_categories}-way categorical'
              if model.num_categories > 2 or model.latent_dim == 1
              else f'{model.latent_dim} binary units')
    return f'discrete VAE, {latent}, {objective.gradient_estimator}'
  layers = 1 + len(model.upper_layers.latent_dims)
  name = 'VAE' if objective.kind == 'elbo' else 'IWAE'
  prior = '' if model.prior.kind == 'standard_normal' else f', {model.prior.kind} prior'
  return f'{name} k={objective.num_samples}, {layers} layer{"s" if layers > 1 else ""}{prior}'


def log_likelihood_cell(report: dict) -> str:
  """The exact log p(x) where there is one (enumeration, quadrature), else AIS's, else the
  importance-sampled one with its Monte-Carlo error and the share of examples its k̂ flags."""
  for name in ('exact', 'quadrature'):
    if name in report:
      return f"{report[name]['log_likelihood']:.2f} (exact)"
  if 'ais' in report:
    annealed = report['ais']
    return (f"{annealed['log_likelihood']:.2f} ± {annealed['monte_carlo_error']:.3f} "
            f"(AIS, {annealed['num_steps']} steps)")
  sampled = report.get('importance_sampled')
  if not sampled:
    return '—'
  # Reports from before the diagnostics (2026-11-29) carry the delta-method `standard_error`.
  error = next(sampled[key] for key in ('monte_carlo_error', 'delta_method_error',
                                        'standard_error') if sampled.get(key) is not None)
  flagged = (f"; k̂>0.7 on {100 * sampled['unreliable_fraction']:.0f}%"
             if sampled.get('unreliable_fraction') else '')
  return f"{sampled['log_likelihood']:.2f} ± {error:.3f} (k={sampled['num_samples']}{flagged})"


def training_evaluation(workdir: str) -> dict | None:
  """The last test evaluation written during training, shaped like an evaluate report."""
  try:
    metrics = metric_writers.read_metrics(workdir)
  except FileNotFoundError:
    return None
  last = next((m for m in reversed(metrics) if 'test/elbo' in m), None)
  if last is None:
    return None
  epoch = next((m['epoch'] for m in reversed(metrics) if 'epoch' in m), float('nan'))
  active = {name.split('/')[-1]: int(value) for name, value in last.items()
            if name.startswith('test/active_units/')}
  return {'step': last['step'], 'epoch': epoch, 'elbo': last['test/elbo'],
          'active_units': active}


def run_summary(workdir: str) -> dict | None:
  """One run's numbers: name, config, epochs, seconds, log p(x) (and its cell), ELBO, units."""
  report = latest_evaluation(workdir) or training_evaluation(workdir)
  if report is None:
    return None
  report = metric_writers.with_current_names(report)
  config = checkpointing.load_config(workdir, defaults=default.get_config())
  estimate = report['exact']['log_likelihood'] if 'exact' in report else report.get(
      'importance_sampled', {}).get('log_likelihood')
  return {'run': os.path.basename(os.path.normpath(workdir)), 'config': config,
          'epochs': report['epoch'], 'seconds': training_seconds(workdir),
          'log_likelihood': estimate, 'log_likelihood_cell': log_likelihood_cell(report),
          'elbo': report['elbo'],
          'active': '+'.join(str(count) for count in report['active_units'].values())}


def seed_groups(summaries: list[dict]) -> list[list[dict]]:
  """The runs grouped by their config without `seed` (and without where the data is)."""
  groups = {}
  for summary in summaries:
    key = json.loads(summary['config'].to_json())
    key.pop('seed')
    for name in ('tfds_data_dir', 'path', 'download'):
      key['data'].pop(name, None)
    groups.setdefault(json.dumps(key, sort_keys=True), []).append(summary)
  return list(groups.values())


def table_row(group: list[dict]) -> dict:
  """A table row of one run, or of runs that differ only in seed (mean ± sd over them)."""
  config, first = group[0]['config'], group[0]
  paper_ll = config.paper.test_log_likelihood
  estimates = [s['log_likelihood'] for s in group if s['log_likelihood'] is not None]
  if len(group) == 1:
    name, estimate_cell = first['run'], first['log_likelihood_cell']
    elbo_cell, epochs = f"{first['elbo']:.2f}", f"{first['epochs']:g}"
    active = first['active']
  else:
    seeds = ','.join(str(s['config'].seed) for s in group)
    name = f"{first['run']} (seeds {seeds}; n = {len(group)})"
    num_samples = config.evals.importance_sampled.num_samples
    # Seeds still training (no log p(x) yet) are counted, not averaged in.
    missing = (f'; {len(estimates)} of {len(group)} seeds' if len(estimates) < len(group)
               else '')
    estimate_cell = f'{_mean_sd(estimates)} (k={num_samples}{missing})' if estimates else '—'
    elbo_cell = _mean_sd([s['elbo'] for s in group])
    epoch_values = [s['epochs'] for s in group]
    epochs = f'{min(epoch_values):g}–{max(epoch_values):g}'
    active = ', '.join(s['active'] for s in group)
  if len(estimates) < len(group):
    estimates = []  # a gap needs every run's log p(x)
  static = config.paper.binarization == 'static'
  paper_cell = '—' if paper_ll is None else f'{paper_ll:.2f}' + (' (static)' if static else '')
  gap = ('—' if paper_ll is None or not estimates
         else f'{np.mean(estimates) - paper_ll:+.2f}' + (' (other data)' if static else ''))
  return {
      'run': name,
      'model': describe_model(config),
      'epochs': epochs,
      'train time': _format_seconds(sum(s['seconds'] for s in group)),
      'test log p(x)': estimate_cell,
      'test ELBO': elbo_cell,
      'active units': active,
      'paper log p(x)': paper_cell,
      'paper active': config.paper.active_units or '—',
      'gap to paper': gap,
  }


def _mean_sd(values: list[float]) -> str:
  if len(values) == 1:
    return f'{values[0]:.2f}'
  return f'{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}'


def markdown_table(rows: list[dict]) -> str:
  if not rows:
    return '(no evaluated workdirs)'
  header = list(rows[0])
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(row[column] for column in header) + ' |' for row in rows]
  return '\n'.join(lines)


def _format_seconds(seconds: float) -> str:
  if seconds != seconds:  # NaN
    return '—'
  minutes = seconds / 60
  return f'{minutes / 60:.1f} h' if minutes >= 90 else f'{minutes:.1f} min'


def main(argv):
  del argv
  workdirs = list(_WORKDIRS.value)
  if _ROOT.value:
    workdirs += sorted(os.path.dirname(path) for path in
                       glob.glob(os.path.join(_ROOT.value, '*', checkpointing.CONFIG_FILENAME)))
  if not workdirs:
    raise app.UsageError('Give --root or --workdirs.')
  summaries = [summary for summary in map(run_summary, workdirs) if summary is not None]
  print(markdown_table([table_row(group) for group in seed_groups(summaries)]))


if __name__ == '__main__':
  app.run(main)
