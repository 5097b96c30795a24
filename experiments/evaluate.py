r"""Evaluates a trained model on a whole split with the evaluators of its config (`config.evals`,
the same the training loop runs): ELBO, importance-sampled log p(x), exact log p(x) where z can
be enumerated, active units and KL per unit, a linear probe, image grids.

  python -m experiments.evaluate --workdir=/tmp/mnist [--num_importance_samples=5000]

Reads the config saved in the workdir (with the data location it was trained on; `--data_dir`
or `--data_path` point elsewhere) and its latest readable (or `--step`) checkpoint; writes
`WORKDIR/evaluation/step_<step>_<split>_k<K>[_n<N>].json` (and the image grids beside it as PNG
files) and prints a summary. Deterministic given `--seed`: rerunning gives the same numbers
whatever `--batch_size`.
"""

import json
import os
import time

import jax
from absl import app, flags, logging

from experiments import launch
from vae_jax import data, evaluators, images, models


def define_flags() -> None:
  """The command line (defined only when run as a program, so tests can import this module)."""
  flags.DEFINE_string('workdir', None, 'A training workdir.', required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: the latest).')
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
  flags.DEFINE_integer('probe_train_examples', None,
                       'Training examples the linear probe is fitted on (0: no probe; default: '
                       'config.evals.linear_probe.train_examples).')


def evaluate_workdir(workdir: str, *, step: int | None = None, split: str = 'test',
                     names: list[str] | None = None,
                     num_importance_samples: int | None = None, chunk_size: int | None = None,
                     batch_size: int = 100, seed: int = 0,
                     probe_train_examples: int | None = None, num_examples: int | None = None,
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
                                                      data_path=data_path)
  unknown = sorted(set(names or ()) - set(config.evals))
  if unknown:
    raise app.UsageError(f'--evals names {unknown}, which the config does not list; choose '
                         f'from {list(config.evals)}.')
  config = _with_overrides(config, batch_size=batch_size,
                           num_importance_samples=num_importance_samples,
                           chunk_size=chunk_size, probe_train_examples=probe_train_examples)
  chosen = _split(dataset, split).take(slice(0, num_examples))
  step = int(state.step)
  num_samples = (config.evals.importance_sampled.num_samples
                 if names is None or 'importance_sampled' in names else 0)
  logging.info('Evaluating %s at step %d on %d %s examples.', workdir, step, len(chosen.images),
               split)
  report, seconds, grids = {'num_examples': len(chosen.images)}, {}, {}
  rng = jax.random.key(seed)
  for name, evaluator in evaluators.create(model, config, dataset, names=names).items():
    start = time.perf_counter()
    result = evaluator(state.params, chosen, rng)
    seconds[name] = time.perf_counter() - start
    grids.update(evaluators.images_of(result))
    report.update({key: value for key, value in result.items() if key not in grids})
  report.update(seconds=seconds, workdir=os.path.abspath(workdir), step=step,
                epoch=step / (len(dataset.train) // config.batch_size), split=split, seed=seed,
                family=models.family_name(config.model), device=str(jax.devices()[0].device_kind),
                paper=config.paper.to_dict())
  subset = '' if num_examples is None else f'_n{len(chosen.images)}'
  stem = os.path.join(workdir, 'evaluation', f'step_{step:08d}_{split}_k{num_samples}{subset}')
  os.makedirs(os.path.dirname(stem), exist_ok=True)
  with open(f'{stem}.json', 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=2)
  for name, grid in grids.items():
    images.save_png(f'{stem}_{name}.png', grid)
  report['path'] = f'{stem}.json'
  return report


def _with_overrides(config, *, batch_size, num_importance_samples, chunk_size,
                    probe_train_examples):
  """The saved config with the command line's evaluation options in place."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
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
  lines = [f"{report['workdir']}: step {report['step']} (epoch {report['epoch']:g}), "
           f"{report['split']} split, {report['num_examples']} examples"]
  if 'importance_sampled' in report:
    sampled = report['importance_sampled']
    lines.append(f"  log p(x)      {sampled['log_likelihood']:10.3f} ± {sampled['standard_error']:.3f}"
                 f" nats  (importance sampling, k = {sampled['num_samples']}, "
                 f"{report['seconds']['importance_sampled']:.0f} s)")
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


def main(argv):
  del argv
  options = flags.FLAGS
  report = evaluate_workdir(options.workdir, step=options.step, split=options.split,
                            names=options.evals,
                            num_importance_samples=options.num_importance_samples,
                            chunk_size=options.chunk_size, batch_size=options.batch_size,
                            seed=options.seed,
                            probe_train_examples=options.probe_train_examples,
                            num_examples=options.num_examples,
                            data_dir=options.data_dir, data_path=options.data_path)
  print(format_report(report))


if __name__ == '__main__':
  define_flags()
  launch.run(main)
