r"""Evaluates a trained model on a whole split with the evaluators of its config (`config.evals`,
the same the training loop runs): ELBO, log p(x) by importance sampling (with its diagnostics),
exact log p(x) where z can be enumerated or integrated over a grid (1- or 2-D z), active units
and KL per unit, a linear probe, image grids; and, when named, log p(x) by annealed importance
sampling (`ais`) and its bidirectional bounds on simulated data (`bdmc`).

  python -m experiments.evaluate --workdir=/tmp/mnist [--num_importance_samples=5000]
  python -m experiments.evaluate --workdir=/tmp/mnist --evals=ais --options=ais.num_steps=1000

Reads the config saved in the workdir (with the data location it was trained on; `--data_dir`
or `--data_path` point elsewhere) and its latest readable (or `--step`) checkpoint — for a run
that stops early, its best one (`--checkpoint=latest` for the other); writes
`WORKDIR/evaluation/step_<step>_<split>_<evaluators>[_k<K>][_n<N>][_seed<S>].json` (never over
an earlier report: a repeat gets `_2`, `_3`, ...; image grids beside it as PNG files) and
prints a summary. Deterministic given `--seed`: rerunning gives the same numbers whatever
`--batch_size`.
"""

import glob
import json
import os
import tempfile
import time

import jax
from absl import app, flags, logging

from experiments import launch
from vae_jax import data, errors, evaluators, files, images, models, networks, progress
from vae_jax.engine import config_checks
from vae_jax.errors import UserError
from vae_jax.evaluators import batched, elbo


def define_flags() -> None:
  """The command line (defined only when run as a program, so tests can import this module)."""
  flags.DEFINE_string('workdir', None, 'A training workdir.', required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: the latest, or the '
                       'best: see --checkpoint).')
  flags.DEFINE_enum('checkpoint', 'auto', list(launch.CHECKPOINT_CHOICES),
                    'best: the best evaluation of a run that stops early '
                    '(WORKDIR/checkpoints_best/); latest: WORKDIR/checkpoints/; auto: best when '
                    'the run has early stopping, else latest.')
  flags.DEFINE_enum('split', 'test', ['test', 'validation', 'train'], 'Split to evaluate.')
  flags.DEFINE_list('evals', None, 'Evaluators to run (default: every one in config.evals).')
  flags.DEFINE_integer('num_importance_samples', None,
                       'Importance samples per example for log p(x) (0: skip; default: '
                       'config.evals.importance_sampled.num_samples).')
  flags.DEFINE_integer('chunk_size', None, 'Importance samples drawn at a time (bounds memory: '
                       'chunk × batch draws; default: the config\'s).')
  flags.DEFINE_integer('batch_size', 100, 'Examples per batch.')
  flags.DEFINE_integer('num_examples', None, 'Evaluate the first N examples of the split only '
                       '(default: all of them; the report says how many).')
  flags.DEFINE_integer('seed', 0, 'Seed of the evaluation noise.')
  flags.DEFINE_list('options', [], 'Evaluator options over the saved config\'s, as '
                    'evaluator.option=value (e.g. ais.num_steps=1000,ais.initial=prior).')
  flags.DEFINE_integer('probe_train_examples', None,
                       'Training examples the linear probe is fitted on (0: no probe; default: '
                       'config.evals.linear_probe.train_examples).')
  flags.DEFINE_string('report_dir', None, 'Folder for the report (default: WORKDIR/evaluation; '
                      'e.g. for a workdir that cannot be written).')
  flags.DEFINE_float('progress_every_seconds', progress.DEFAULT_EVERY_SECONDS,
                     'Log the progress of a running evaluator (examples done, rate, time left) '
                     'at most this often.')


def evaluate_workdir(workdir: str, *, step: int | None = None, split: str = 'test',
                     names: list[str] | None = None,
                     num_importance_samples: int | None = None, chunk_size: int | None = None,
                     batch_size: int = 100, seed: int = 0,
                     probe_train_examples: int | None = None, num_examples: int | None = None,
                     options: list[str] | None = None, checkpoint: str = 'auto',
                     data_dir: str | None = None, data_path: str | None = None,
                     progress_every_seconds: float = progress.DEFAULT_EVERY_SECONDS,
                     report_dir: str | None = None) -> dict:
  """Evaluates the checkpoint and returns the report that is also written to `report_dir`
  (default WORKDIR/evaluation/). Options left at None take the saved config's values."""
  for name, value in (('num_importance_samples', num_importance_samples),
                      ('probe_train_examples', probe_train_examples)):
    if value is not None and value < 0:
      raise app.UsageError(f'--{name}={value} must be non-negative.')
  for name, value in (('chunk_size', chunk_size), ('batch_size', batch_size),
                      ('num_examples', num_examples)):
    if value is not None and value < 1:
      raise app.UsageError(f'--{name}={value} must be at least 1.')
  report_dir = report_dir or os.path.join(workdir, 'evaluation')
  check_writable(report_dir)  # before hours of computing, not after
  config, dataset, model, state, eval_params = launch.load_trained(
      workdir, step, data_dir=data_dir, data_path=data_path, checkpoint=checkpoint)
  checkpoint = launch.resolve_checkpoint(config, checkpoint)
  unknown = sorted(set(names or ()) - set(config.evals))
  if unknown:
    raise app.UsageError(f'--evals names {unknown}, which the config does not list; choose '
                         f'from {list(config.evals)}.')
  config = _with_overrides(config, batch_size=batch_size,
                           num_importance_samples=num_importance_samples,
                           chunk_size=chunk_size, probe_train_examples=probe_train_examples,
                           options=options or [])
  problems = list(config_checks.evaluator_problems(config))
  if problems:
    raise app.UsageError(' '.join(problems))
  chosen = _split(dataset, split).take(slice(0, num_examples))
  step = int(state.step)
  try:  # builds (and checks) every evaluator before any of them computes
    chosen_evaluators = evaluators.create(model, config, dataset, names=names)
  except ValueError as error:
    raise app.UsageError(str(error)) from error
  not_applicable = sorted(set(names or ()) - set(chosen_evaluators))
  if not_applicable:
    needs = '; '.join(f'{name}: {evaluators.registry.applies_to(name)}'
                      for name in not_applicable)
    raise app.UsageError(f'--evals names {not_applicable}, which do not apply to this model or '
                         f'are switched off by their options ({needs}).')
  rng = jax.random.key(seed)
  seconds_per_pass = measure_seconds_per_pass(model, config, chosen_evaluators, eval_params,
                                              chosen.images, rng)
  logging.info('%s', '\n'.join(plan_lines(
      f'Evaluating {workdir} at step {step} on {len(chosen.images)} {split} examples',
      chosen_evaluators, len(chosen.images), seconds_per_pass)))
  report, seconds, grids, keys = {'num_examples': len(chosen.images)}, {}, {}, {}
  for name, evaluator in chosen_evaluators.items():
    start = time.perf_counter()
    with progress.tracking(name, every_seconds=progress_every_seconds), \
        networks.matmul_precision(config.model.matmul_precision):
      result = evaluator(eval_params, chosen, rng)
    seconds[name] = time.perf_counter() - start
    logging.info('%s done in %s.', name, progress.format_duration(seconds[name]))
    grids.update(evaluators.images_of(result))
    keys[name] = [key for key in result if key not in grids]
    report.update({key: result[key] for key in keys[name]})
  report.update(seconds=seconds, evaluators=keys, workdir=os.path.abspath(workdir), step=step,
                checkpoint=checkpoint,
                epoch=step / (len(dataset.train) // config.batch_size), split=split, seed=seed,
                family=models.family_name(config.model), device=str(jax.devices()[0].device_kind),
                paper=config.paper.to_dict())
  if dataset.standardization is not None:
    report['data_units'] = in_data_units(report, dataset.standardization.log_jacobian)
  stem = _unused_stem(os.path.join(report_dir, _report_name(
      step, split, names, seed, len(chosen.images) if num_examples is not None else None,
      [getattr(evaluator, 'report_name_part', '') for evaluator in chosen_evaluators.values()])))
  try:
    write_json_atomically(f'{stem}.json', report)
    for name, grid in grids.items():
      images.save_png(f'{stem}_{name}.png', grid)
  except OSError as error:
    report['path'] = 'not written'
    raise ReportNotWrittenError(report, error) from error
  report['path'] = f'{stem}.json'
  return report


class ReportNotWrittenError(UserError):
  """The evaluation finished but its report could not be saved; it holds the report, which
  the launcher prints before the error."""

  def __init__(self, report: dict, error: OSError):
    super().__init__(f'the report could not be written: '
                     f'{(errors.os_error_message(error) or str(error)).rstrip(".")}. Its numbers are printed above; '
                     'rerun with --report_dir=DIR to save them elsewhere.')
    self.report = report


def check_writable(folder: str) -> None:
  """Raises a one-line UserError unless a report can be written in `folder` (created if
  needed)."""
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix='.write_test'):
      pass
  except OSError as error:
    raise UserError(f'The evaluation report cannot be written to {folder}: '
                    f'{error.strerror or error}. Make it writable, or choose another folder with '
                    '--report_dir=DIR (nothing was computed).') from error


def write_json_atomically(path: str, value) -> None:
  """A reader sees the whole report or none (a full disk leaves no half-written file)."""
  files.write_text_atomically(path, json.dumps(value, indent=2))


def measure_seconds_per_pass(model, config, chosen_evaluators, params, images,
                             rng) -> float:
  """Seconds per example of one pass through the model: the one-sample ELBO on a batch, timed
  after compiling (the ELBO evaluator's own program where it has one sample, so nothing is
  compiled twice)."""
  own = [evaluator.elbo_fn for evaluator in chosen_evaluators.values()
         if isinstance(evaluator, elbo.ElboEvaluator) and evaluator.num_samples == 1]
  elbo_fn = own[0] if own else elbo.make_elbo_fn(model, num_samples=1,
                                                  analytic_kl=config.objective.analytic_kl)
  batch = images[:config.eval_batch_size]
  timed = lambda: batched.map_examples(elbo_fn, params, batch,
                                       batch_size=config.eval_batch_size, rng=rng)
  timed()  # compiles
  start = time.perf_counter()
  timed()
  return (time.perf_counter() - start) / config.eval_batch_size


def plan_lines(heading: str, chosen_evaluators: dict, num_examples: int,
               seconds_per_pass: float) -> list[str]:
  """What will run and roughly how long: each evaluator's passes through the model, at the
  measured speed of one pass. A rough guide (compilation and batching are not counted)."""
  work = {name: evaluators.work(evaluator, num_examples)
          for name, evaluator in chosen_evaluators.items()}
  total = seconds_per_pass * sum(work.values())
  lines = [f'{heading}: {len(work)} evaluators, roughly {progress.format_duration(total)} '
           f'in all (at {1e3 * seconds_per_pass:.3g} ms per example and pass through the '
           'model, measured on the ELBO):']
  for name, passes in work.items():
    lines.append(f'  {name:<20} {passes:>16,.0f} passes  '
                 f'~{progress.format_duration(seconds_per_pass * passes)}')
  return lines


def _report_name(step: int, split: str, names, seed: int, num_examples,
                 evaluator_parts: list[str]) -> str:
  """'step_<step>_<split>_<evaluators>[_<each evaluator's own part, e.g. k5000>][_n<N>]
  [_seed<S>]'."""
  parts = [f'step_{step:08d}', split, '+'.join(names) if names else 'all']
  parts += [part for part in evaluator_parts if part]
  parts += [f'n{num_examples}'] if num_examples is not None else []
  parts += [f'seed{seed}'] if seed else []
  return '_'.join(parts)


def read_reports(workdir: str) -> list[tuple[str, dict]]:
  """(path, report) of each report in WORKDIR/evaluation; one that cannot be read (cut short by a
  full disk before 2026-12-04) is skipped with a warning."""
  reports = []
  for path in sorted(glob.glob(os.path.join(workdir, 'evaluation', '*.json'))):
    try:
      with open(path, encoding='utf-8') as f:
        reports.append((path, json.load(f)))
    except (OSError, ValueError) as error:
      logging.warning('Skipping %s: it cannot be read as a report (%s).', path, error)
  return reports


def _unused_stem(stem: str) -> str:
  """`stem`, or `stem_2`, `stem_3`, ...: the first with no report yet (none is overwritten)."""
  os.makedirs(os.path.dirname(stem), exist_ok=True)
  candidate, repeat = stem, 1
  while os.path.exists(f'{candidate}.json'):
    repeat += 1
    candidate = f'{stem}_{repeat}'
  return candidate


def _parse_option(config, assignment: str) -> tuple[str, str, object]:
  """`evaluator.option=value` -> (evaluator, option, value of the option's type)."""
  key, _, text = assignment.partition('=')
  evaluator, dot, option = key.strip().partition('.')
  if not dot or evaluator not in config.evals or option not in config.evals[evaluator]:
    raise app.UsageError(f'--options={assignment!r}: expected evaluator.option=value with an '
                         f'option of config.evals (e.g. ais.num_steps=1000).')
  current = config.evals[evaluator][option]
  try:
    if isinstance(current, bool):
      if text.lower() not in ('true', 'false'):
        raise ValueError
      return evaluator, option, text.lower() == 'true'
    return evaluator, option, type(current)(text) if current is not None else text
  except ValueError as error:
    raise app.UsageError(f'--options={assignment!r}: {text!r} is not a '
                         f'{type(current).__name__}.') from error


def _with_overrides(config, *, batch_size, num_importance_samples, chunk_size,
                    probe_train_examples, options):
  """The saved config with the command line's evaluation options in place."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for assignment in options:
      evaluator, option, value = _parse_option(config, assignment)
      config.evals[evaluator][option] = value
    config.eval_batch_size = batch_size
    for key, value in (('importance_sampled.num_samples', num_importance_samples),
                       ('importance_sampled.chunk_size', chunk_size),
                       ('linear_probe.train_examples', probe_train_examples)):
      if value is not None:
        evaluator, option = key.split('.')
        config.evals[evaluator][option] = value
  return config


def in_data_units(report: dict, log_jacobian: float) -> dict:
  """The log-densities of a report on standardised vectors as densities of the data in its own
  units: log p(x) = log p(x_std) − Σ_d log σ_d (`log_jacobian` = −Σ_d log σ_d, per example)."""
  converted = {'log_jacobian': log_jacobian}
  for key, value in report.items():
    if key == 'elbo' and isinstance(value, (int, float)):
      converted['elbo'] = value + log_jacobian
    elif isinstance(value, dict) and isinstance(value.get('log_likelihood'), (int, float)):
      converted[f'{key}/log_likelihood'] = value['log_likelihood'] + log_jacobian
  return converted


def _data_units_lines(report: dict) -> list[str]:
  converted = report.get('data_units')
  if not converted or len(converted) == 1:  # no log-density to convert (BDMC's are simulated)
    return []
  jacobian = converted['log_jacobian']
  lines = ['  The model sees standardised vectors x_std = (x - mean) / sd (fitted on the training '
           'split); the numbers above are log-densities of x_std. In the data\'s own units, '
           f"log p(x) = log p(x_std) - sum_d log sd_d = log p(x_std) {'+-'[jacobian < 0]} "
           f'{abs(jacobian):.4f}:']
  for key, value in converted.items():
    if key != 'log_jacobian':
      what = 'ELBO' if key == 'elbo' else 'log p(x)'
      lines.append(f"  {what:<13} {value:10.4f} nats in the data's units  "
                   f"({key.removesuffix('/log_likelihood')})")
  return lines


def _split(dataset: data.Dataset, split: str) -> data.Split:
  if split == 'validation' and dataset.validation is None:
    raise app.UsageError('This run has no validation split (data.validation_size=0).')
  return getattr(dataset, split)


def format_report(report: dict) -> str:
  which = ' (the best checkpoint)' if report.get('checkpoint') == 'best' else ''
  lines = [f"{report['workdir']}: step {report['step']}{which} (epoch {report['epoch']:g}), "
           f"{report['split']} split, {report['num_examples']} examples"]
  lines += evaluators.registry.summary_lines(report)
  lines += _data_units_lines(report)
  paper = report['paper']
  if paper.get('test_log_likelihood') is not None:
    units = f", {paper['active_units']} active units" if paper.get('active_units') else ''
    lines.append(f"  paper         {paper['test_log_likelihood']} nats{units} ({paper['source']})")
  elif paper.get('test_elbo') is not None:
    lines.append(f"  paper         ELBO {paper['test_elbo']} nats ({paper['source']})")
  elif paper.get('source'):
    lines.append(f"  paper         no published number recorded ({paper['source']})")
  lines.append(f"  written to    {report['path']}")
  return '\n'.join(lines)


def main(argv):
  del argv
  options = flags.FLAGS
  try:
    report = _evaluate_from_flags(options)
  except ReportNotWrittenError as error:  # the numbers are printed all the same
    print(format_report(error.report))
    raise
  print(format_report(report))


def _evaluate_from_flags(options) -> dict:
  return evaluate_workdir(options.workdir, step=options.step, split=options.split,
                          names=options.evals,
                          num_importance_samples=options.num_importance_samples,
                          chunk_size=options.chunk_size, batch_size=options.batch_size,
                          seed=options.seed,
                          probe_train_examples=options.probe_train_examples,
                          num_examples=options.num_examples, options=options.options,
                          checkpoint=options.checkpoint,
                          data_dir=options.data_dir, data_path=options.data_path,
                          progress_every_seconds=options.progress_every_seconds,
                          report_dir=options.report_dir)


if __name__ == '__main__':
  define_flags()
  launch.run(main)
