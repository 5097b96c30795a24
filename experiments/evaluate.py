r"""Evaluates a trained model on a whole split: importance-sampled log p(x), ELBO, KL per unit,
active units.

  python -m experiments.evaluate --workdir=/tmp/mnist [--num_importance_samples=5000]

Reads the config saved in the workdir (with the data location it was trained on; `--data_dir`
or `--data_path` point elsewhere) and its latest readable (or `--step`) checkpoint; writes
`WORKDIR/evaluation/step_<step>_<split>_k<K>.json` and prints a summary. Deterministic given
`--seed`: rerunning gives the same numbers whatever `--batch_size`.
"""

import json
import os

import jax
import numpy as np
from absl import app, flags, logging

from experiments import launch
from vae_jax import data, evaluation

def define_flags() -> None:
  """The command line (defined only when run as a program, so tests can import this module)."""
  flags.DEFINE_string('workdir', None, 'A training workdir.', required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: the latest).')
  flags.DEFINE_enum('split', 'test', ['test', 'validation', 'train'], 'Split to evaluate.')
  flags.DEFINE_integer('num_importance_samples', 5000,
                       'Importance samples per example for log p(x) (0: skip).')
  flags.DEFINE_integer('chunk_size', 100, 'Importance samples drawn at a time (bounds memory: '
                       'chunk × batch draws).')
  flags.DEFINE_integer('batch_size', 100, 'Examples per batch.')
  flags.DEFINE_integer('seed', 0, 'Seed of the evaluation noise.')
  flags.DEFINE_integer('probe_train_examples', 10_000,
                       'Training examples the linear probe is fitted on (0: no probe).')


def evaluate_workdir(workdir: str, *, step: int | None, split: str, num_importance_samples: int,
                     chunk_size: int, batch_size: int, seed: int,
                     probe_train_examples: int = 10_000, data_dir: str | None = None,
                     data_path: str | None = None) -> dict:
  """Evaluates the checkpoint and returns the report that is also written to the workdir."""
  for name, value in (('num_importance_samples', num_importance_samples),):
    if value < 0:
      raise app.UsageError(f'--{name}={value} must be non-negative.')
  for name, value in (('chunk_size', chunk_size), ('batch_size', batch_size)):
    if value < 1:
      raise app.UsageError(f'--{name}={value} must be at least 1.')
  config, dataset, model, state = launch.load_trained(workdir, step, data_dir=data_dir,
                                                      data_path=data_path)
  images, labels = _split_arrays(dataset, split)
  step = int(state.step)
  logging.info('Evaluating %s at step %d on %d %s examples, k = %d.', workdir, step, len(images),
               split, num_importance_samples)
  report = evaluation.evaluate_split(
      model, state.params, images, rng=jax.random.key(seed),
      num_importance_samples=num_importance_samples, chunk_size=chunk_size,
      batch_size=batch_size, elbo_num_samples=config.eval_num_samples,
      analytic_kl=config.objective.analytic_kl, labels=labels)
  if probe_train_examples and labels is not None and dataset.train.labels is not None:
    report['linear_probe'] = _linear_probe(
        model, state.params, dataset, images, labels, probe_train_examples, batch_size,
        binarize=config.data.binarization == 'dynamic')
  report.update(workdir=os.path.abspath(workdir), step=step, epoch=step / _steps_per_epoch(
      config, dataset), split=split, seed=seed, device=str(jax.devices()[0].device_kind),
      paper=config.paper.to_dict())
  path = os.path.join(workdir, 'evaluation',
                      f'step_{step:08d}_{split}_k{num_importance_samples}.json')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=2)
  report['path'] = path
  return report


def _linear_probe(model, params, dataset, images, labels, num_train, batch_size, *,
                  binarize: bool) -> dict:
  """Logistic regression from the posterior means of the first `num_train` training images
  (of the first stochastic layer) to their labels, scored on the evaluated split. Training
  images are binarised once (fixed key) when the model was trained on dynamic binarisations."""
  statistics_fn = evaluation.make_posterior_statistics_fn(model)

  def features(split_images):
    statistics = evaluation.map_examples(statistics_fn, params, split_images,
                                         batch_size=batch_size, rng=jax.random.key(0))
    return evaluation.posterior_features(statistics)

  train = dataset.train.take(slice(0, num_train))
  train_images = (np.asarray(data.binarize(jax.random.key(0), train.images)) if binarize
                  else train.images)
  return evaluation.linear_probe(features(train_images), train.labels, features(images), labels)


def _split_arrays(dataset: data.Dataset, split: str):
  """The images and labels (None for unlabelled data) of a split."""
  if split == 'validation' and dataset.validation is None:
    raise app.UsageError('This run has no validation split (data.validation_size=0).')
  chosen = getattr(dataset, split)
  return chosen.images, chosen.labels


def _steps_per_epoch(config, dataset) -> int:
  return len(dataset.train) // config.batch_size


def format_report(report: dict) -> str:
  elbo = report['elbo']
  lines = [f"{report['workdir']}: step {report['step']} (epoch {report['epoch']:g}), "
           f"{report['split']} split, {report['num_examples']} examples"]
  if 'importance_sampled' in report:
    sampled = report['importance_sampled']
    lines.append(f"  log p(x)      {sampled['log_likelihood']:10.3f} ± {sampled['standard_error']:.3f}"
                 f" nats  (importance sampling, k = {sampled['num_samples']}, "
                 f"{report['seconds']['importance_sampled']:.0f} s)")
  if 'exact' in report:
    exact = report['exact']
    lines.append(f"  log p(x)      {exact['log_marginal']:10.3f} nats  exact: a sum over every z "
                 f"({report['seconds']['exact']:.0f} s)")
    lines.append(f"  ELBO (exact)  {exact['elbo']:10.3f} nats  gap KL(q ‖ p(z|x)) "
                 f"{exact['kl_to_posterior']:.3f}; H[p(z|x)] {exact['posterior_entropy']:.3f}, "
                 f"H[q(z|x)] {exact['q_entropy']:.3f} nats")
  if 'clusters' in report:
    clusters = report['clusters']
    lines.append(f"  clusters      accuracy {clusters['accuracy']:.3f}, purity "
                 f"{clusters['purity']:.3f} ({clusters['num_clusters_used']} values of z used)")
  lines.append(f"  ELBO          {elbo['elbo']:10.3f} nats  = E_q log p(x|z) "
               f"{elbo['log_likelihood']:.3f} − KL {elbo['kl']:.3f}")
  if 'linear_probe' in report:
    probe = report['linear_probe']
    lines.append(f"  linear probe  {100 * probe['accuracy']:.1f}% test accuracy of a logistic "
                 f"regression on posterior means ({probe['num_train_examples']} training images)")
  units = ', '.join(f'{layer} {count}/{len(report["posterior_mean_variance"][layer])}'
                    for layer, count in report['active_units'].items())
  lines.append(f'  active units  {units}')
  if 'kl_per_dimension' in report:
    kls = sorted(report['kl_per_dimension'], reverse=True)
    lines.append('  KL per unit   ' + ' '.join(f'{kl:.2f}' for kl in kls))
  paper = report['paper']
  if paper.get('test_log_likelihood') is not None:
    lines.append(f"  paper         {paper['test_log_likelihood']} nats, {paper['active_units']} "
                 f"active units ({paper['source']})")
  elif paper.get('source'):
    lines.append(f"  paper         no published number recorded ({paper['source']})")
  lines.append(f"  written to    {report['path']}")
  return '\n'.join(lines)


def main(argv):
  del argv
  options = flags.FLAGS
  report = evaluate_workdir(options.workdir, step=options.step, split=options.split,
                            num_importance_samples=options.num_importance_samples,
                            chunk_size=options.chunk_size, batch_size=options.batch_size,
                            seed=options.seed,
                            probe_train_examples=options.probe_train_examples,
                            data_dir=options.data_dir, data_path=options.data_path)
  print(format_report(report))


if __name__ == '__main__':
  define_flags()
  launch.run(main)
