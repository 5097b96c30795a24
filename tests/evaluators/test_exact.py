"""vae_jax/evaluators/exact.py: cluster scores (the exact terms themselves are tested against
brute-force enumeration in tests/models/test_discrete.py)."""

import numpy as np

from vae_jax.evaluators import exact as evaluation


def test_cluster_scores():
  labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
  clusters = np.array([5, 5, 1, 1, 1, 3, 3, 5])
  scores = evaluation.cluster_scores(clusters, labels)
  # Cluster 5 holds labels {0, 0, 2}, cluster 1 {0, 1, 1}, cluster 3 {2, 2}.
  assert scores['purity'] == (2 + 2 + 2) / 8
  assert scores['accuracy'] == (2 + 2 + 2) / 8  # 5->0, 1->1, 3->2
  assert scores['num_clusters_used'] == 3
  assert evaluation.cluster_scores(labels, labels)['accuracy'] == 1.0
