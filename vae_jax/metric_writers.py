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

METRICS_FILENAME = 'metrics.jsonl'


class MetricWriter:
  """Appends `{"step": ..., **scalars}` lines to `WORKDIR/metrics.jsonl` and mirrors them to
  TensorBoard. On resume, pass the restored step as `resume_step`: TensorBoard then drops the
  events a killed run wrote after its last checkpoint."""

  def __init__(self, workdir: str, resume_step: int | None = None):
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, METRICS_FILENAME), 'a', encoding='utf-8')
    self._tensorboard = tensorboardX.SummaryWriter(
        logdir=os.path.join(workdir, 'tensorboard'), purge_step=resume_step, flush_secs=30)

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    scalars = {name: float(value) for name, value in scalars.items()}
    self._jsonl.write(json.dumps({'step': int(step), **scalars}) + '\n')
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, global_step=step)
    logging.info('[%d] %s', step, ', '.join(f'{k}={v:.4g}' for k, v in scalars.items()))

  def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
    """Images are uint8 `[H, W, C]` arrays."""
    for name, image in images.items():
      self._tensorboard.add_image(name, image, global_step=step, dataformats='HWC')

  def write_text(self, step: int, name: str, text: str) -> None:
    self._tensorboard.add_text(name, text, global_step=step)

  def flush(self) -> None:
    self._jsonl.flush()
    self._tensorboard.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._tensorboard.close()

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def read_metrics(workdir: str) -> list[dict]:
  """The JSON lines of `WORKDIR/metrics.jsonl`, in the order written."""
  with open(os.path.join(workdir, METRICS_FILENAME), encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]
