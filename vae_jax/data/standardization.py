"""Standardisation of vectors: `x_std = (x − mean) / scale` per feature, fitted on the training
split and saved with the run (`standardization.json` in the workdir), so that evaluation and
figures map the model's numbers back to the data's units.

A density over x_std is one over x by the change of variables
  log p(x) = log p(x_std) + Σ_d log |∂x_std,d / ∂x_d| = log p(x_std) − Σ_d log scale_d,
the `log_jacobian`.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from vae_jax import files

FILENAME = 'standardization.json'


@dataclasses.dataclass(frozen=True)
class Standardization:
  mean: np.ndarray  # [D] float64
  scale: np.ndarray  # [D] float64, positive (1 for a constant feature)
  feature_names: tuple[str, ...] = ()

  @classmethod
  def fit(cls, vectors: np.ndarray, feature_names=()) -> Standardization:
    """Each feature's mean and standard deviation over `vectors` `[N, D]`."""
    values = np.asarray(vectors, np.float64)
    scale = values.std(axis=0)
    return cls(values.mean(axis=0), np.where(scale > 0, scale, 1.0), tuple(feature_names))

  def apply(self, vectors: np.ndarray) -> np.ndarray:
    """`(x − mean) / scale` in float32."""
    return ((np.asarray(vectors, np.float64) - self.mean) / self.scale).astype(np.float32)

  def invert(self, standardized: np.ndarray) -> np.ndarray:
    """Back to the data's units: `x_std · scale + mean`."""
    return (np.asarray(standardized, np.float64) * self.scale + self.mean).astype(np.float32)

  @property
  def log_jacobian(self) -> float:
    """`−Σ_d log scale_d`: add it to a log-density of standardised vectors for one of x."""
    return float(-np.sum(np.log(self.scale)))

  def save(self, folder: str) -> None:
    files.write_text_atomically(os.path.join(folder, FILENAME), json.dumps(
        {'mean': self.mean.tolist(), 'scale': self.scale.tolist(),
         'feature_names': list(self.feature_names)}, indent=1))

  @classmethod
  def load(cls, folder: str) -> Standardization | None:
    """The standardisation saved in `folder`, or None where there is none."""
    path = os.path.join(folder, FILENAME)
    if not os.path.exists(path):
      return None
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
    return cls(np.asarray(saved['mean'], np.float64), np.asarray(saved['scale'], np.float64),
               tuple(saved.get('feature_names', ())))
