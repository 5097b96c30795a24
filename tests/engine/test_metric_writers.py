"""Metrics reach the JSON lines file and TensorBoard event files that stock TensorBoard reads."""

import numpy as np
import pytest

from vae_jax.engine import metric_writers


def test_scalars_images_and_text_are_readable(tmp_path):
  event_accumulator = pytest.importorskip(
      'tensorboard.backend.event_processing.event_accumulator',
      reason='the `tensorboard` package (test extra) reads the event files')
  with metric_writers.MetricWriter(str(tmp_path)) as writer:
    writer.write_scalars(1, {'train/elbo': -100.0, 'epoch': 0.5})
    writer.write_scalars(2, {'train/elbo': -90.0})
    writer.write_images(2, {'samples': np.zeros((5, 6, 1), np.uint8)})
    writer.write_text(0, 'config', 'seed: 0')
  assert metric_writers.read_metrics(str(tmp_path)) == [
      {'step': 1, 'train/elbo': -100.0, 'epoch': 0.5}, {'step': 2, 'train/elbo': -90.0}]

  events = event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard'),
                                              size_guidance={'scalars': 0, 'images': 0})
  events.Reload()
  assert [(e.step, e.value) for e in events.Scalars('train/elbo')] == [(1, -100.0), (2, -90.0)]
  image = events.Images('samples')[0]
  assert (image.step, image.width, image.height) == (2, 6, 5)
  assert 'config/text_summary' in events.Tags()['tensors']
