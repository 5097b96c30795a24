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

import json
import os
import time

import jax
from absl import app, flags, logging

from experiments import launch
from vae_jax import config_checks, data, evaluators, images, models


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


def evaluate_workdir(workdir: str, *, step: int | None = None, split: str = 'test',
                     names: list[str] | None = None,
                     num_importance_samples: int | None = None, chunk_size: int | None = None,
                     batch_size: int = 100, seed: int = 0,
                     probe_train_examples: int | None = None, num_examples: int | None = None,
                     options: list[str] | None = None, checkpoint: str = 'auto',
                     data_dir: str | None = None, data_path: str | None = None) -> dict:
  """Evaluates the checkpoint and returns the report that is also written to the workdir.
  Options left at None take the saved config's values."""
  for name, value in (('num_importance_samples', num_importance_samples),
                      ('probe_train_examples', probe_train_examples)):
    if value is not None and value < 0:
      raise app.UsageError(f'--{name}={value} must be non-negative.')
  for name, value in (('chunk_size', chunk_size), ('batch_size', batch_size),
                      ('num_examples', num_examples)):
    if value is not None and value < 1:
      raise app.UsageError(f'--{name}={value} must be at least 1.')
  config, dataset, model, state = launch.load_trained(workdir, step, data_dir=data_dir,
                                                      data_path=data_path, checkpoint=checkpoint)
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
    raise app.UsageError(
        f'--evals names {not_applicable}, which do not apply to this model or are switched off '
        f'by their options (quadrature: 1 or 2 latent units of the one-layer family; exact: a '
        f'small discrete latent; ais, bdmc: continuous latents; importance_sampled: '
        f'num_samples > 0; linear_probe: labels and train_examples > 0).')
  logging.info('Evaluating %s at step %d on %d %s examples.', workdir, step, len(chosen.images),
               split)
  report, seconds, grids = {'num_examples': len(chosen.images)}, {}, {}
  rng = jax.random.key(seed)
  for name, evaluator in chosen_evaluators.items():
    start = time.perf_counter()
    result = evaluator(state.params, chosen, rng)
    seconds[name] = time.perf_counter() - start
    grids.update(evaluators.images_of(result))
    report.update({key: value for key, value in result.items() if key not in grids})
  report.update(seconds=seconds, workdir=os.path.abspath(workdir), step=step,
                checkpoint=checkpoint,
                epoch=step / (len(dataset.train) // config.batch_size), split=split, seed=seed,
                family=models.family_name(config.model), device=str(jax.devices()[0].device_kind),
                paper=config.paper.to_dict())
  stem = _unused_stem(os.path.join(workdir, 'evaluation', _report_name(
      step, split, names, seed, len(chosen.images) if num_examples is not None else None,
      config.evals.importance_sampled.num_samples if 'importance_sampled' in chosen_evaluators
      else None)))
  with open(f'{stem}.json', 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=2)
  for name, grid in grids.items():
    images.save_png(f'{stem}_{name}.png', grid)
  report['path'] = f'{stem}.json'
  return report


def _report_name(step: int, split: str, names, seed: int, num_examples, num_samples) -> str:
  parts = [f'step_{step:08d}', split, '+'.join(names) if names else 'all']
  parts += [f'k{num_samples}'] if num_samples else []
  parts += [f'n{num_examples}'] if num_examples is not None else []
  parts += [f'seed{seed}'] if seed else []
  return '_'.join(parts)


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


def _split(dataset: data.Dataset, split: str) -> data.Split:
  if split == 'validation' and dataset.validation is None:
    raise app.UsageError('This run has no validation split (data.validation_size=0).')
  return getattr(dataset, split)


def format_report(report: dict) -> str:
  which = ' (the best checkpoint)' if report.get('checkpoint') == 'best' else ''
  lines = [f"{report['workdir']}: step {report['step']}{which} (epoch {report['epoch']:g}), "
           f"{report['split']} split, {report['num_examples']} examples"]
  if 'quadrature' in report:
    lines.extend(_quadrature_lines(report['quadrature'], report['seconds']['quadrature']))
  if 'importance_sampled' in report:
    lines.extend(_importance_sampling_lines(report['importance_sampled'],
                                            report['seconds']['importance_sampled']))
  if 'ais' in report:
    lines.extend(_ais_lines(report['ais'], report['seconds']['ais']))
  if 'bdmc' in report:
    bdmc = report['bdmc']
    lines.append(f"  BDMC          on {bdmc['num_simulated']} examples simulated from the model: "
                 f"AIS lower bound {bdmc['lower_bound']:.3f}, upper bound "
                 f"{bdmc['upper_bound']:.3f}; gap {bdmc['gap']:.3f} nats (largest "
                 f"{bdmc['max_gap']:.3f}), which bounds AIS's error there "
                 f"({report['seconds']['bdmc']:.0f} s)")
  if 'exact' in report:
    exact = report['exact']
    lines.append(f"  log p(x)      {exact['log_likelihood']:10.3f} nats  exact: a sum over every z "
                 f"({report['seconds']['exact']:.0f} s)")
    lines.append(f"  ELBO (exact)  {exact['elbo']:10.3f} nats  gap KL(q ‖ p(z|x)) "
                 f"{exact['kl_to_posterior']:.3f}; H[p(z|x)] {exact['posterior_entropy']:.3f}, "
                 f"H[q(z|x)] {exact['q_entropy']:.3f} nats")
  if 'clusters' in report:
    clusters = report['clusters']
    lines.append(f"  clusters      accuracy {clusters['accuracy']:.3f}, purity "
                 f"{clusters['purity']:.3f} ({clusters['num_clusters_used']} values of z used)")
  if 'elbo' in report:
    lines.append(f"  ELBO          {report['elbo']:10.3f} nats  = E_q log p(x|z) "
                 f"{report['reconstruction']:.3f} − KL {report['kl']:.3f}")
  if 'linear_probe' in report:
    probe = report['linear_probe']
    lines.append(f"  linear probe  {100 * probe['accuracy']:.1f}% test accuracy of a logistic "
                 f"regression on posterior means ({probe['num_train_examples']} training images)")
  if 'active_units' in report:
    units = ', '.join(f'{layer} {count}/{len(report["posterior_mean_variance"][layer])}'
                      for layer, count in report['active_units'].items())
    lines.append(f'  active units  {units}')
  if 'kl_per_dimension' in report:
    kls = sorted(report['kl_per_dimension'], reverse=True)
    lines.append('  KL per unit   ' + ' '.join(f'{kl:.2f}' for kl in kls))
  paper = report['paper']
  if paper.get('test_log_likelihood') is not None:
    units = f", {paper['active_units']} active units" if paper.get('active_units') else ''
    lines.append(f"  paper         {paper['test_log_likelihood']} nats{units} ({paper['source']})")
  elif paper.get('source'):
    lines.append(f"  paper         no published number recorded ({paper['source']})")
  lines.append(f"  written to    {report['path']}")
  return '\n'.join(lines)


def _errors(result: dict) -> str:
  errors = []
  if result.get('monte_carlo_error') is not None:
    errors.append(f"± {result['monte_carlo_error']:.3f} (Monte Carlo)")
  if result.get('test_set_error') is not None:
    errors.append(f"± {result['test_set_error']:.3f} (test set)")
  return ' '.join(errors)


def _importance_sampling_lines(sampled: dict, seconds: float) -> list[str]:
  lines = [f"  log p(x)      {sampled['log_likelihood']:10.3f} {_errors(sampled)} nats  "
           f"(importance sampling, k = {sampled['num_samples']}, {sampled['num_repeats']} "
           f"seed{'s' if sampled['num_repeats'] > 1 else ''}, {seconds:.0f} s)",
           f"                k̂ > {sampled['reliable_pareto_k']} on "
           f"{100 * sampled['unreliable_fraction']:.1f}% of examples ("
           + (f"median k̂ {sampled['median_pareto_k']:.2f}" if sampled['median_pareto_k']
              is not None else 'k̂ needs k ≥ 25') + "); effective sample size median "
           f"{sampled['median_effective_sample_size']:.0f}, min "
           f"{sampled['min_effective_sample_size']:.1f} of {sampled['num_samples']}"]
  if sampled['unreliable_fraction'] > 0:
    worst = ', '.join(f"#{e['index']} (k̂ {e['pareto_k']:.2f})"
                      for e in sampled['worst_examples'][:5])
    lines.append(f"                WARNING: on those examples q(z|x) misses posterior mass, so the "
                 f"estimate is most likely too low by more than its errors say (worst: {worst}). "
                 f"Quote AIS (--evals=ais) or, for 1-2 latent units, quadrature.")
  lines.append('                (k̂ sees only where q(z|x) samples: a posterior mode q never '
               'reaches goes unflagged; AIS from ½q + ½p(z) can find it)')
  if sampled['monte_carlo_error'] is None:
    lines.append('                the Monte-Carlo error over seeds was not measured '
                 '(--options=importance_sampled.num_repeats=2 measures it)')
  return lines


def _ais_lines(result: dict, seconds: float) -> list[str]:
  start = {'posterior': 'q(z|x)', 'prior': 'p(z)', 'mixture': '½q(z|x) + ½p(z)'}[result['initial']]
  return [f"  log p(x)      {result['log_likelihood']:10.3f} {_errors(result)} nats  (AIS from "
          f"{start}, {result['num_steps']} "
          f"steps × {result['num_chains']} chains × {result['leapfrog_steps']} leapfrog, "
          f"acceptance {result['acceptance_rate']:.2f}, {seconds:.0f} s)"]


def _quadrature_lines(result: dict, seconds: float) -> list[str]:
  points = result['refinements'][-1]['points_per_dim']
  status = (f"converged: no example moved by more than {result['max_change']:.1e} at the last "
            f"doubling" if result['converged'] else
            f"NOT converged: {result['num_unconverged']} examples still moved by up to "
            f"{result['max_change']:.3g} nats at {points} points per dimension")
  return [f"  log p(x)      {result['log_likelihood']:10.3f} nats  exact by quadrature "
          f"({points} points per dimension, {seconds:.0f} s); {status}; edge cells hold at most "
          f"{result['max_edge_share']:.1e} of any p(x)"]


def main(argv):
  del argv
  options = flags.FLAGS
  report = evaluate_workdir(options.workdir, step=options.step, split=options.split,
                            names=options.evals,
                            num_importance_samples=options.num_importance_samples,
                            chunk_size=options.chunk_size, batch_size=options.batch_size,
                            seed=options.seed,
                            probe_train_examples=options.probe_train_examples,
                            num_examples=options.num_examples, options=options.options,
                            checkpoint=options.checkpoint,
                            data_dir=options.data_dir, data_path=options.data_path)
  print(format_report(report))


if __name__ == '__main__':
  define_flags()
  launch.run(main)
