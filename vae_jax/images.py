"""Image grids as uint8 arrays and PNG files."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image


def make_grid(images: np.ndarray, num_columns: int | None = None, padding: int = 1,
              min_tile_size: int = 1) -> np.ndarray:
  """Tiles images `[N, H, W, C]` with values in [0, 1] into one uint8 image `[H', W', C]`.

  Images fill the grid row by row; cells that no image fills, and the padding, are white.
  Images smaller than `min_tile_size` pixels are enlarged by an integer factor (nearest
  neighbour), so that 8×8 digits stay legible.
  """
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  zoom = max(1, -(-min_tile_size // min(images.shape[1:3])))
  images = images.repeat(zoom, axis=1).repeat(zoom, axis=2)
  count, height, width, channels = images.shape
  num_columns = num_columns or math.ceil(math.sqrt(count))
  num_rows = math.ceil(count / num_columns)
  cell_height, cell_width = height + padding, width + padding
  grid = np.ones((num_rows * cell_height + padding, num_columns * cell_width + padding, channels),
                 np.float32)
  for index, image in enumerate(images):
    row, column = divmod(index, num_columns)
    top, left = padding + row * cell_height, padding + column * cell_width
    grid[top:top + height, left:left + width] = image
  return np.round(grid * 255).astype(np.uint8)


def interleave_rows(first: np.ndarray, second: np.ndarray, num_columns: int) -> np.ndarray:
  """Alternates rows of `num_columns` images from `first` and `second` (e.g. inputs and their
  reconstructions), so each image sits directly above its counterpart."""
  rows = []
  for start in range(0, len(first), num_columns):
    rows += [first[start:start + num_columns], second[start:start + num_columns]]
  return np.concatenate(rows)


def save_png(path: str, grid: np.ndarray) -> None:
  """Writes a uint8 `[H, W, 1 or 3]` array as a PNG, creating the folder if needed."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
