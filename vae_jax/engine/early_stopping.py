"""Early stopping on a metric of the training-time evaluations, with patience (in epochs).

The record of a run — its best value, the step of its best evaluation, the step it stopped at
— is a pure function of the metric's logged history (`WORKDIR/metrics.jsonl`), which a resumed
run truncates to its checkpoint's step: so a resumed run continues with exactly the best value
and patience it had there, and the record needs no checkpoint of its own. The training loop
keeps the checkpoint of the best evaluation in `WORKDIR/checkpoints_best/` (see
`vae_jax.engine.training`).

Criterion (as Tomczak & Welling's code counts it): the run stops at the first evaluation at
which more than `patience_epochs` epochs have passed since its best evaluation, or since
`start_epoch` when that is later (no patience is spent during, say, a KL warm-up).
"""

from __future__ import annotations

import dataclasses

import ml_collections

from vae_jax import options, registries
from vae_jax.options import Option


@dataclasses.dataclass(frozen=True)
class Criterion:
  metric: str  # e.g. 'validation/elbo'
  mode: str  # 'max' or 'min': the better direction
  patience_steps: int
  start_step: int
  min_delta: float  # an improvement must exceed this

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict,
                  steps_per_epoch: int) -> Criterion | None:
    """The config's criterion, or None when early stopping is off (`early_stopping.metric=''`)."""
    options = config.early_stopping
    if not options.metric:
      return None
    return cls(options.metric, options.mode, int(options.patience_epochs * steps_per_epoch),
               int(options.start_epoch * steps_per_epoch), float(options.min_delta))

  def improves(self, value: float, best: float | None) -> bool:
    if best is None:
      return value == value  # a NaN never improves
    return (value > best + self.min_delta if self.mode == 'max'
            else value < best - self.min_delta)


@dataclasses.dataclass(frozen=True)
class Record:
  best_value: float | None = None
  best_step: int | None = None
  stopped_step: int | None = None  # None while the run trains

  @property
  def stopped(self) -> bool:
    return self.stopped_step is not None


def update(record: Record, criterion: Criterion, step: int, value: float) -> Record:
  """The record after an evaluation at `step` that measured `value`."""
  if record.stopped:
    return record
  if criterion.improves(value, record.best_value):
    return Record(value, step, None)
  waited_since = max(record.best_step or 0, criterion.start_step)
  if step - waited_since > criterion.patience_steps:
    return dataclasses.replace(record, stopped_step=step)
  return record


def replay(criterion: Criterion, history: list[dict], up_to_step: int) -> Record:
  """The record after the logged evaluations (metrics.jsonl lines) at steps <= `up_to_step`."""
  record = Record()
  for line in history:
    if criterion.metric in line and line['step'] <= up_to_step:
      record = update(record, criterion, line['step'], line[criterion.metric])
  return record


def _early_stopping_problems(config):
  settings = config.early_stopping
  if not settings.metric:
    return
  split, _, name = settings.metric.partition('/')
  if split not in ('validation', 'test') or not name:
    yield (f"early_stopping.metric={settings.metric!r} must be '<split>/<name>' of a "
           "training-time evaluation, e.g. 'validation/elbo'.")
  elif split == 'test':
    yield (f'early_stopping.metric={settings.metric!r} would choose the checkpoint on the test '
           "set; stop on the validation split ('validation/...', with data.validation_size > 0).")
  if settings.patience_epochs < config.eval_every_epochs:
    yield (f'early_stopping.patience_epochs={settings.patience_epochs} is shorter than '
           f'eval_every_epochs={config.eval_every_epochs}: evaluate at least once per patience.')


# The run stops at the first evaluation at which more than patience_epochs epochs have passed
# since its best one (or since start_epoch, if later); the best evaluation's checkpoint is kept
# in WORKDIR/checkpoints_best/, apart from the latest ones. num_epochs stays the upper limit.
registries.add(registries.Component('run', 'early_stopping', None, options.at(
    'early_stopping',
    metric=Option('', "'<split>/<name>' of an evaluation during training, e.g. "
                  "'validation/elbo'; '': off"),
    mode=Option('max', "'max' | 'min': the better direction of the metric",
                options.one_of('max', 'min')),
    patience_epochs=Option(50, 'epochs without improvement before stopping',
                           options.non_negative),
    start_epoch=Option(0, 'patience is spent only after this epoch (e.g. the KL warm-up\'s end)',
                       options.non_negative),
    min_delta=Option(0.0, 'an improvement must exceed this', options.non_negative)),
    (_early_stopping_problems,)))
