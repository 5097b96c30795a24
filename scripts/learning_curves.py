r"""Plots a logged metric against epochs for several workdirs, marking each run's best evaluation
and, for runs that stopped early, where they stopped. Prints, per run, the epochs trained and the
best value with its epoch.

  python -m scripts.learning_curves --workdirs=runs/vamp/seed=0,runs/vamp/seed=1 \
      --metric=validation/elbo --output=docs/figures/vampprior_validation.png
  # against a learning-rate schedule: log epochs, each stage's end marked (the IWAE paper's)
  python -m scripts.learning_curves --workdirs=runs/iwae/seed=0 --metric=test/elbo \
      --log_epochs --mark_epochs=1,4,13,40,121,364,1093,3280 --output=curves.png
"""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from absl import app, flags  # pylint: disable=wrong-import-position

from vae_jax.engine import metric_writers  # pylint: disable=wrong-import-position

_WORKDIRS = flags.DEFINE_list('workdirs', [], 'Workdirs, comma-separated.')
_METRIC = flags.DEFINE_string('metric', 'validation/elbo', 'A metric logged during training.')
_MODE = flags.DEFINE_enum('mode', 'max', ['max', 'min'], 'The better direction of the metric.')
_OUTPUT = flags.DEFINE_string('output', None, 'PNG file to write (none: print only).')
_FROM_EPOCH = flags.DEFINE_float('from_epoch', 0, 'Plot epochs after this one only.')
_LOG_EPOCHS = flags.DEFINE_bool('log_epochs', False, 'A logarithmic epoch axis.')
_MARK_EPOCHS = flags.DEFINE_list('mark_epochs', [], 'Epochs to mark with a vertical line '
                                 '(a schedule\'s stage ends, say), comma-separated.')


def curve(workdir: str, metric: str) -> tuple[np.ndarray, np.ndarray, float | None]:
  """(epochs, values) of `metric`, and the epoch the run stopped early at (None if it did not)."""
  lines = metric_writers.read_metrics(workdir)
  steps_per_epoch = next((m['step'] / m['epoch'] for m in lines if m.get('epoch')), None)
  if steps_per_epoch is None:
    raise app.UsageError(f'{workdir} has not logged an epoch yet.')
  points = [(m['step'] / steps_per_epoch, m[metric]) for m in lines if metric in m]
  if not points:
    raise app.UsageError(f'{workdir} logged no {metric}.')
  stopped = next((m['step'] / steps_per_epoch for m in lines if 'early_stopping/best_step' in m),
                 None)
  epochs, values = map(np.asarray, zip(*points))
  return epochs, values, stopped


def run_names(workdirs: list[str]) -> list[str]:
  """Each workdir's last path component, or as many of its last components as tell it apart
  from the others (`vampprior_vamp/seed=0` beside `vampprior_standard/seed=0`)."""
  parts = [os.path.normpath(workdir).split(os.sep) for workdir in workdirs]
  for depth in range(1, max(map(len, parts)) + 1):
    names = ['/'.join(p[-depth:]) for p in parts]
    if len(set(names)) == len(names):
      return names
  return names


def main(argv):
  del argv
  if not _WORKDIRS.value:
    raise app.UsageError('Give --workdirs.')
  best_of = np.argmax if _MODE.value == 'max' else np.argmin
  figure, axes = plt.subplots(figsize=(7, 4))
  for workdir, name in zip(_WORKDIRS.value, run_names(_WORKDIRS.value)):
    epochs, values, stopped = curve(workdir, _METRIC.value)
    best = int(best_of(values))
    status = f'stopped early at epoch {stopped:g}' if stopped else 'training or not stopped'
    print(f'{name}: {epochs[-1]:g} epochs, best {_METRIC.value} {values[best]:.3f} at epoch '
          f'{epochs[best]:g}; {status}')
    shown = epochs > _FROM_EPOCH.value
    line, = axes.plot(epochs[shown], values[shown], lw=1, label=name)
    axes.plot(epochs[best], values[best], 'o', color=line.get_color())
    if stopped:
      axes.axvline(stopped, color=line.get_color(), ls=':', lw=1)
  for epoch in _MARK_EPOCHS.value:
    axes.axvline(float(epoch), color='0.8', lw=0.8, zorder=0)
  if _LOG_EPOCHS.value:
    axes.set_xscale('log')
  axes.set_xlabel('epoch' + (' (grey lines: ' + ', '.join(_MARK_EPOCHS.value) + ')'
                             if _MARK_EPOCHS.value else ''))
  axes.set_ylabel(_METRIC.value + ' (nats)')
  axes.set_title('dots: best evaluation; dotted lines: early stop')
  axes.legend(fontsize=8)
  figure.tight_layout()
  if _OUTPUT.value:
    os.makedirs(os.path.dirname(_OUTPUT.value) or '.', exist_ok=True)
    figure.savefig(_OUTPUT.value, dpi=110)
    print(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
