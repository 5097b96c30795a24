"""How linearly the posterior means separate the labels: a logistic-regression probe."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from vae_jax import data, options
from vae_jax.options import Option
from vae_jax.evaluators import batched, posterior, registry


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, test_labels: np.ndarray) -> dict[str, float]:
  """Test accuracy of a logistic regression from features (e.g. posterior means) to labels,
  fitted on the training features: how linearly the representation separates the classes."""
  from sklearn import linear_model, pipeline, preprocessing  # pylint: disable=import-outside-toplevel
  probe = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                 linear_model.LogisticRegression(max_iter=2000))
  probe.fit(train_features, train_labels)
  return {'accuracy': float(probe.score(test_features, test_labels)),
          'train_accuracy': float(probe.score(train_features, train_labels)),
          'num_train_examples': int(len(train_labels))}


@dataclasses.dataclass
class LinearProbeEvaluator:
  """`{'linear_probe': {accuracy, train_accuracy, num_train_examples}}`: a probe fitted on the
  first-layer posterior means of the first `train_examples` training images, scored on the
  split. Nothing for an unlabelled split."""
  statistics_fn: object
  train: data.Split
  batch_size: int

  def work(self, num_examples: int) -> float:
    return num_examples + len(self.train.images)

  def __call__(self, params, split, rng) -> dict:
    del rng  # posterior means are deterministic
    if split.labels is None:
      return {}
    features = lambda images: posterior.posterior_features(batched.map_examples(
        self.statistics_fn, params, images, batch_size=self.batch_size, rng=jax.random.key(0)))
    return {'linear_probe': linear_probe(features(self.train.images), self.train.labels,
                                         features(split.images), split.labels)}


def report_lines(report: dict, seconds: float) -> list[str]:
  del seconds
  probe = report['linear_probe']
  return [f"  linear probe  {100 * probe['accuracy']:.1f}% test accuracy of a logistic "
          f"regression on posterior means ({probe['num_train_examples']} training images)"]


@registry.register(
    'linear_probe', during_training=False,  # logistic regression from posterior means to labels
    report_lines=report_lines, report_rank=6, applies_to='labels and train_examples > 0',
    train_examples=Option(10_000, 'training images the probe is fitted on (0: no probe)',
                          options.non_negative))
def create(model, config, dataset) -> LinearProbeEvaluator | None:
  num_train = config.evals.linear_probe.train_examples
  if not num_train or dataset.train.labels is None:
    return None
  train = dataset.train.take(slice(0, num_train))
  if config.data.binarization == 'dynamic':
    # Trained on fresh binarisations: probe on one, drawn with a fixed key.
    train = data.Split(np.asarray(data.binarize(jax.random.key(0), train.images)), train.labels)
  return LinearProbeEvaluator(posterior.make_posterior_statistics_fn(model), train,
                              config.eval_batch_size)
