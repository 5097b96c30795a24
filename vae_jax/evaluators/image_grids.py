"""Image grids of what the model generates and reconstructs (`figures.model_image_grids`)."""

from __future__ import annotations

import dataclasses

from vae_jax import figures
from vae_jax.evaluators import registry


@dataclasses.dataclass
class ImageGridsEvaluator:
  """`samples`, `reconstructions` of the split's first images and, for one categorical
  variable, `categories`: uint8 grids of `num_images` tiles. The same `rng` every time shows
  how the decoding of fixed z changes during training."""
  model: object
  num_images: int

  def __call__(self, params, split, rng) -> dict:
    return figures.model_image_grids(self.model, params, rng, split.images,
                                     count=self.num_images)


@registry.register('images')
def create(model, config, dataset) -> ImageGridsEvaluator | None:
  del dataset
  if not config.evals.images.num_images:
    return None
  return ImageGridsEvaluator(model, config.evals.images.num_images)
