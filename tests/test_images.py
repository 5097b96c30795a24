"""Image grids and PNG files."""

import numpy as np
from PIL import Image

from vae_jax import images


def test_grid_layout_and_values(tmp_path):
  tiles = np.stack([np.full((3, 2, 1), value) for value in (0.0, 0.5, 1.0)])
  grid = images.make_grid(tiles, num_columns=2, padding=1)
  assert grid.shape == (2 * 4 + 1, 2 * 3 + 1, 1) and grid.dtype == np.uint8
  assert grid[1, 1, 0] == 0 and grid[1, 4, 0] == 128 and grid[5, 1, 0] == 255
  assert np.all(grid[0] == 255)  # padding is white
  path = tmp_path / 'sub' / 'grid.png'
  images.save_png(str(path), grid)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), grid[..., 0])


def test_interleave_rows_puts_each_input_above_its_counterpart():
  first, second = np.arange(6)[:, None], -np.arange(6)[:, None]
  rows = images.interleave_rows(first, second, num_columns=3)
  np.testing.assert_array_equal(rows[:, 0], [0, 1, 2, 0, -1, -2, 3, 4, 5, -3, -4, -5])


def test_small_images_are_enlarged_to_the_minimum_tile_size():
  tiles = np.random.default_rng(0).uniform(size=(4, 8, 8, 1))
  grid = images.make_grid(tiles, num_columns=2, padding=1, min_tile_size=28)
  assert grid.shape == (2 * 33 + 1, 2 * 33 + 1, 1)  # 8 px × 4 = 32 px tiles
  np.testing.assert_array_equal(grid[1:33, 1:33, 0],
                                np.round(tiles[0, ..., 0] * 255).astype(np.uint8).repeat(4, 0)
                                .repeat(4, 1))
