"""vae_jax/evaluators/linear_probe.py: a separable representation scores 1, noise near chance."""

import numpy as np

from vae_jax.evaluators import linear_probe as evaluation


def test_linear_probe_scores_the_representation():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 600)
  separable = np.eye(3)[labels] * 5 + rng.normal(size=(600, 3)) * 0.1
  noise = rng.normal(size=(600, 3))
  assert evaluation.linear_probe(separable[:400], labels[:400], separable[400:],
                                 labels[400:])['accuracy'] == 1.0
  assert evaluation.linear_probe(noise[:400], labels[:400], noise[400:],
                                 labels[400:])['accuracy'] < 0.5
