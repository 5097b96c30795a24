"""Writes metrics to JSON lines, TensorBoard event files and the log, in one call.

TensorBoard files are written with tensorboardX (protobuf only, no TensorFlow), readable by a
stock `tensorboard --logdir WORKDIR`.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorboardX
from absl import logging

from vae_jax import files

METRICS_FILENAME = 'metrics.jsonl'


class MetricWriter:
  """Appends `{"step": ..., **scalars}` lines to `WORKDIR/metrics.jsonl` and mirrors them to
  TensorBoard. `resume_step` is the step training starts from (0 for a fresh run): what a
  killed run logged after it — lines in metrics.jsonl, a half-written last line, events in
  TensorBoard — is dropped, so the files read as if the run had never stopped. With
  `enabled=False` (every process but the first of a multi-host job) it writes nothing. `name`
  (a sweep's run name) starts each logged line, so that interleaved runs can be told apart."""

  def __init__(self, workdir: str, resume_step: int = 0, enabled: bool = True,
               name: str | None = None):
    self._enabled = enabled
    self._log_prefix = f'{name} ' if name else ''
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, METRICS_FILENAME)
    _drop_lines_after(path, resume_step)
    self._jsonl = open(path, 'a', encoding='utf-8')
    self._tensorboard = tensorboardX.SummaryWriter(
        logdir=os.path.join(workdir, 'tensorboard'), purge_step=resume_step or None, flush_secs=30)

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    if not self._enabled:
      return
    scalars = {name: float(value) for name, value in scalars.items()}
    self._jsonl.write(json.dumps({'step': int(step), **scalars}) + '\n')
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, global_step=step)
    logging.info('%s[%d] %s', self._log_prefix, step,
                 ', '.join(f'{k}={v:.4g}' for k, v in scalars.items()))

  def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
    """Images are uint8 `[H, W, C]` arrays."""
    if not self._enabled:
      return
    for name, image in images.items():
      self._tensorboard.add_image(name, image, global_step=step, dataformats='HWC')

  def write_text(self, step: int, name: str, text: str) -> None:
    if not self._enabled:
      return
    self._tensorboard.add_text(name, text, global_step=step)

  def flush(self) -> None:
    if not self._enabled:
      return
    self._jsonl.flush()
    self._tensorboard.flush()

  def close(self) -> None:
    if not self._enabled:
      return
    self._jsonl.close()
    self._tensorboard.close()

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _drop_lines_after(path: str, step: int) -> None:
  """Rewrites `path` (atomically) without lines for steps after `step` or cut short by a kill."""
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    lines = f.readlines()
  kept = [line for line in lines if _complete_line_at_or_before(line, step)]
  if len(kept) == len(lines):
    return
  logging.info('%s: dropping %d line(s) written after step %d by an interrupted run.', path,
               len(lines) - len(kept), step)
  files.write_text_atomically(path, ''.join(kept))


def _complete_line_at_or_before(line: str, step: int) -> bool:
  if not line.endswith('\n'):
    return False
  try:
    return json.loads(line)['step'] <= step
  except (ValueError, KeyError):
    return False


def first_value(workdir: str, name: str) -> float | None:
  """The first logged value of metric `name` in the workdir, None if there is none."""
  if not os.path.exists(os.path.join(workdir, METRICS_FILENAME)):
    return None
  return next((m[name] for m in read_metrics(workdir) if name in m), None)


def read_metrics(workdir: str) -> list[dict]:
  """The JSON lines of `WORKDIR/metrics.jsonl`, in the order written; a last line cut short
  (a job killed while writing it, which its resumed run rewrites) is left out."""
  with open(os.path.join(workdir, METRICS_FILENAME), encoding='utf-8') as f:
    lines = [line for line in f if line.strip()]
  metrics = [json.loads(line) for line in lines[:-1]]
  try:
    return metrics + [json.loads(lines[-1])] if lines else metrics
  except json.JSONDecodeError:
    return metrics


# Names of one evaluation's numbers renamed on 2026-11-29 (README changelog), old -> new, as
# '/'-joined paths: E_q log p(x|z) was the ELBO's `log_likelihood`, and the exact log p(x)
# `exact/log_marginal`. Reports of then also nested the ELBO's terms under 'elbo'.
RENAMED_METRICS = {'log_likelihood': 'reconstruction',
                   'exact/log_marginal': 'exact/log_likelihood'}


def with_current_names(evaluation: dict, prefix: str = '') -> dict:
  """One evaluation's numbers under today's names (`RENAMED_METRICS`): an `experiments.evaluate`
  report (nested dicts), or one split's metrics without their `<split>/` prefix (flat
  '/'-joined names); as written today, or by a run from before the renaming."""
  if not prefix and isinstance(evaluation.get('elbo'), dict):
    evaluation = {**{key: value for key, value in evaluation.items() if key != 'elbo'},
                  **evaluation['elbo']}
  current = {}
  for key, value in evaluation.items():
    path = RENAMED_METRICS.get(prefix + key, prefix + key)
    current[path.removeprefix(prefix)] = (with_current_names(value, f'{path}/')
                                          if isinstance(value, dict) else value)
  return current


def split_metrics(line: dict, split: str) -> dict:
  """The metrics of one split in a metrics line, without their `<split>/` prefix."""
  return {name.removeprefix(f'{split}/'): value for name, value in line.items()
          if name.startswith(f'{split}/')}
