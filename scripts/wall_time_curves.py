r"""The test ELBO of runs against the wall-clock time they trained, in one figure.

  python -m scripts.wall_time_curves --workdirs=/tmp/a,/tmp/b --labels=MLP,top-down \
      --output=docs/figures/wall_time.png

A run's time at an evaluation is the sum of the `interval_seconds` logged up to that step
(training, evaluations and checkpoints included; the first interval includes compilation),
interpolated between the logs around it.
Prints each run's points as JSON lines.
"""

import json

import numpy as np
from absl import app, flags

from vae_jax import figures, images
from vae_jax.engine import metric_writers

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'Training workdirs.', required=True)
_LABELS = flags.DEFINE_list('labels', None, 'One label per workdir (default: the workdirs).')
_OUTPUT = flags.DEFINE_string('output', None, 'Where to write the PNG figure.', required=True)


def elbo_against_time(metrics: list[dict]) -> list[tuple[float, float]]:
  """`(seconds, test ELBO)` at each evaluation; a resumed run's repeated steps count once.
  An evaluation between two logs takes the time interpolated between them."""
  elapsed, seconds_at, evaluations = 0.0, {0: 0.0}, {}
  for line in metrics:
    if 'interval_seconds' in line and line['step'] not in seconds_at:
      elapsed += line['interval_seconds']
      seconds_at[line['step']] = elapsed
    if 'test/elbo' in line:
      evaluations[line['step']] = line['test/elbo']
  logged = sorted(seconds_at)
  return [(float(np.interp(step, logged, [seconds_at[s] for s in logged])), evaluations[step])
          for step in sorted(evaluations) if step <= logged[-1]]


def main(argv):
  del argv
  labels = _LABELS.value or _WORKDIRS.value
  if len(labels) != len(_WORKDIRS.value):
    raise app.UsageError('Give one --labels entry per --workdirs entry.')
  figure, axis = figures.subplots(figsize=(7, 4.5), dpi=100)
  for workdir, label in zip(_WORKDIRS.value, labels):
    points = elbo_against_time(metric_writers.read_metrics(workdir))
    print(json.dumps({'run': label, 'points': points}))
    minutes, elbo = np.asarray(points).T
    axis.plot(minutes / 60, elbo, marker='.', label=label)
  axis.set_xlabel('wall-clock minutes of training')
  axis.set_ylabel('test ELBO (nats)')
  axis.grid(alpha=0.3)
  axis.legend()
  figure.tight_layout()
  images.save_png(_OUTPUT.value, figures.figure_to_array(figure))


if __name__ == '__main__':
  app.run(main)
