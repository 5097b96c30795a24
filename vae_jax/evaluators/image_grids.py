"""Image grids of what the model generates and reconstructs (`figures.model_image_grids`)."""

from __future__ import annotations

import dataclasses

from vae_jax import data, figures, options
from vae_jax.options import Option
from vae_jax.evaluators import registry


@dataclasses.dataclass
class ImageGridsEvaluator:
  """`samples`, `reconstructions` of the split's first images and, for one categorical
  variable, `categories`: uint8 grids of `num_images` tiles. The same `rng` every time shows
  how the decoding of fixed z changes during training."""
  model: object
  num_images: int
  draws_from_separate_key = True  # steps.RunKeys.for_evaluator: z of their own, run after run

  def work(self, num_examples: int) -> float:
    del num_examples  # a fixed number of tiles
    return 2 * self.num_images

  def __call__(self, params, split, rng) -> dict:
    return figures.model_image_grids(self.model, params, rng, split.images,
                                     count=self.num_images)


@registry.register(
    'images', during_training=True, applies_to='num_images > 0, images',
    num_images=Option(64, 'tiles in the sample and reconstruction grids (0: none)',
                      options.non_negative),
    splits=Option(('test',), 'the splits whose reconstructions are drawn during training',
                  lambda splits: None if set(splits) <= {'validation', 'test'} else
                  "may hold only 'validation' and 'test'."))
def create(model, config, dataset) -> ImageGridsEvaluator | None:
  if not config.evals.images.num_images or (dataset is not None and
                                            dataset.kind == data.VECTORS):  # no grids of vectors
    return None
  return ImageGridsEvaluator(model, config.evals.images.num_images)
