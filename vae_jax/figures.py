"""Figures of what a model learned, as uint8 image arrays `[H, W, C]` (save with
`images.save_png`). Model outputs are computed here; files are written by the launcher
(`experiments.visualize`).
"""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions, images, models

if TYPE_CHECKING:
  from matplotlib.figure import Figure

TILE = 28  # smaller images are enlarged to at least this many pixels


def model_image_grids(model, params, key, test_images: np.ndarray,
                      count: int) -> dict[str, np.ndarray]:
  """The grids training writes at every evaluation and `experiments.visualize` writes once:
  `samples`, the decoder mean at `count` draws z ~ p(z) (from `key`); `reconstructions`, the
  first `count` test images (odd rows) above their reconstructions; and, for a single
  categorical latent, `categories`, the decoding of each of its values. Grids of
  ceil(sqrt(count)) columns."""
  columns = int(np.ceil(np.sqrt(count)))
  inputs = test_images[:count]
  samples = np.asarray(prior_samples(model, params, key, num_samples=count))
  recons = np.asarray(reconstructions(model, params, inputs))
  grids = {
      'samples': images.make_grid(samples, columns, min_tile_size=TILE),
      'reconstructions': images.make_grid(images.interleave_rows(inputs, recons, columns),
                                          columns, min_tile_size=TILE),
  }
  if isinstance(model, models.CategoricalLatents) and model.num_variables == 1:
    means = np.asarray(category_means(model, params))
    grids['categories'] = images.make_grid(means, min(len(means), 10), min_tile_size=TILE)
  return grids


@functools.partial(jax.jit, static_argnames=('model', 'num_samples'))
def prior_samples(model, params, rng: jax.Array, *, num_samples: int) -> jax.Array:
  """Mean of `p(x|z)` for `num_samples` draws `z ~ p(z)`: `[num_samples, *data_shape]`."""
  return model.apply(params, rng, num_samples, method='generate')


@functools.partial(jax.jit, static_argnames=('model',))
def category_means(model, params) -> jax.Array:
  """For a single categorical latent: the mean of p(x|z) for each of its K values `[K, ...]`."""
  z = jnp.eye(model.num_categories)[:, None, :]  # [K, 1, K]
  return model.apply(params, z, method='decode').mean


@functools.partial(jax.jit, static_argnames=('model',))
def reconstructions(model, params, images: jax.Array) -> jax.Array:
  """Mean of `p(x|z)` at the posterior mean, for each image."""
  return model.apply(params, images, method='reconstruct')


def _decode_mean(model, params, z) -> np.ndarray:
  return np.asarray(model.apply(params, jnp.asarray(z), method='decode').mean)


def _posterior_mean(model, params, x) -> np.ndarray:
  """E_q[z|x] of the latent the decoder reads (h1 for a hierarchy)."""
  return np.asarray(model.apply(params, jnp.asarray(x), method='encode').mean)


def traversals(model, params, image: np.ndarray, dims: list[int],
               values: np.ndarray) -> np.ndarray:
  """One row per latent unit in `dims`: the decoding of `image`'s posterior mean with that unit
  set to each of `values` and the others fixed."""
  z = _posterior_mean(model, params, image[None])[0]
  rows = np.repeat(z[None, None], len(dims), 0).repeat(len(values), 1)  # [dims, values, D]
  for row, dim in enumerate(dims):
    rows[row, :, dim] = values
  decoded = _decode_mean(model, params, rows.reshape(-1, z.shape[-1]))
  return images.make_grid(decoded, len(values), min_tile_size=TILE)


def interpolations(model, params, starts: np.ndarray, ends: np.ndarray,
                   num_steps: int = 10) -> np.ndarray:
  """One row per pair (start, end): the decodings along the straight line between their
  posterior means, with the two images themselves at the ends of the row."""
  z_start, z_end = _posterior_mean(model, params, starts), _posterior_mean(model, params, ends)
  weights = np.linspace(0.0, 1.0, num_steps)[None, :, None]
  path = (1 - weights) * z_start[:, None] + weights * z_end[:, None]  # [pairs, steps, D]
  decoded = _decode_mean(model, params, path.reshape(-1, path.shape[-1]))
  decoded = decoded.reshape(len(starts), num_steps, *starts.shape[1:])
  rows = np.concatenate([starts[:, None], decoded, ends[:, None]], axis=1)
  return images.make_grid(rows.reshape(-1, *starts.shape[1:]), num_steps + 2, min_tile_size=TILE)


def manifold(model, params, num_per_axis: int = 20) -> np.ndarray:
  """For a 2-D Gaussian latent (Kingma & Welling 2013, Figure 4): the decodings of a grid of
  the prior's quantiles, from 5% to 95% along each axis."""
  prior = model.apply(params, method='prior_distribution')
  if not isinstance(prior, distributions.DiagonalGaussian) or prior.mean.shape[-1] != 2:
    raise ValueError('The manifold figure needs a 2-D latent with a Gaussian prior.')
  from scipy import stats  # pylint: disable=import-outside-toplevel  # 0.4 s: only here
  quantiles = stats.norm.ppf(np.linspace(0.05, 0.95, num_per_axis))
  grid = np.stack(np.meshgrid(quantiles, quantiles[::-1]), axis=-1).reshape(-1, 2)
  z = np.asarray(prior.mean) + np.asarray(prior.scale) * grid
  return images.make_grid(_decode_mean(model, params, z), num_per_axis, padding=0,
                          min_tile_size=TILE)


def project_2d(means: np.ndarray, method: str = 'pca', seed: int = 0) -> tuple[np.ndarray, str]:
  """2-D coordinates of the posterior means: themselves when 2-D, else PCA or t-SNE."""
  if means.shape[1] == 2:
    return means, 'posterior mean'
  if method == 'pca':
    centred = means - means.mean(0)
    _, singular_values, basis = np.linalg.svd(centred, full_matrices=False)
    explained = singular_values[:2]**2 / np.sum(singular_values**2)
    return centred @ basis[:2].T, f'PCA of posterior means ({100 * explained.sum():.0f}% of variance)'
  if method == 'tsne':
    from sklearn import manifold as sk_manifold  # pylint: disable=import-outside-toplevel
    return (sk_manifold.TSNE(2, init='pca', random_state=seed).fit_transform(means),
            't-SNE of posterior means')
  raise ValueError(f'Unknown projection {method!r}; choose pca or tsne.')


def latent_scatter(means: np.ndarray, labels: np.ndarray | None, method: str = 'pca') -> np.ndarray:
  """The test set's posterior means in 2-D, coloured by label."""
  points, title = project_2d(means, method)
  figure, axes = subplots(figsize=(6, 6), dpi=100)
  scatter = axes.scatter(points[:, 0], points[:, 1], c=labels if labels is not None else 'C0',
                         cmap='tab10', s=3, alpha=0.7)
  if labels is not None:
    figure.colorbar(scatter, ax=axes, ticks=np.unique(labels))
  axes.set_title(title)
  return figure_to_array(figure)


def feature_reconstructions(data: np.ndarray, recons: np.ndarray, names: list[str],
                            count: int = 8) -> np.ndarray:
  """For the first `count` features, each test vector's value against its reconstruction
  (the diagonal is a perfect one), in the data's units."""
  count = min(count, data.shape[1])
  columns = min(count, 4)
  rows = -(-count // columns)
  figure, axes = subplots(rows, columns, figsize=(3 * columns, 3 * rows), dpi=80)
  for index, axis in enumerate(np.asarray(axes).reshape(-1)):
    if index >= count:
      axis.set_axis_off()
      continue
    axis.scatter(data[:, index], recons[:, index], s=4, alpha=0.6)
    low, high = np.min(data[:, index]), np.max(data[:, index])
    axis.plot([low, high], [low, high], color='grey', linewidth=0.8)
    axis.set_title(names[index], fontsize=9)
    axis.set_xlabel('data', fontsize=8)
    axis.set_ylabel('reconstruction', fontsize=8)
  figure.tight_layout()
  return figure_to_array(figure)


def pairwise_marginals(data: np.ndarray, samples: np.ndarray, names: list[str],
                       count: int = 4) -> np.ndarray:
  """Pairs of the first `count` features: the test data (blue) against `samples` (orange;
  visualize passes decoder means at z ~ p(z), which leave out p(x|z)'s own spread);
  histograms of both on the diagonal."""
  count = min(count, data.shape[1])
  figure, axes = subplots(count, count, figsize=(2.5 * count, 2.5 * count), dpi=80)
  axes = np.asarray(axes).reshape(count, count)
  for row in range(count):
    for column in range(count):
      axis = axes[row, column]
      if row == column:
        bins = np.histogram_bin_edges(np.concatenate([data[:, row], samples[:, row]]), 20)
        axis.hist(data[:, row], bins=bins, alpha=0.5, density=True, label='data')
        axis.hist(samples[:, row], bins=bins, alpha=0.5, density=True,
                  label='decoder means, z ~ p(z)')
      else:
        axis.scatter(data[:, column], data[:, row], s=3, alpha=0.5)
        axis.scatter(samples[:, column], samples[:, row], s=3, alpha=0.5)
      if row == count - 1:
        axis.set_xlabel(names[column], fontsize=8)
      if column == 0:
        axis.set_ylabel(names[row], fontsize=8)
  axes[0, 0].legend(fontsize=7)
  figure.tight_layout()
  return figure_to_array(figure)


def training_curves(metrics: list[dict]) -> np.ndarray:
  """ELBO, its reconstruction term E_q log p(x|z) and KL, and active units against epochs, for the training
  batches (logged means) and the evaluated splits."""
  epochs = {}
  for line in metrics:
    if 'epoch' in line:
      epochs[line['step']] = line['epoch']
  steps_per_epoch = next((step / epoch for step, epoch in epochs.items() if epoch), 1.0)
  panels = [('elbo', 'ELBO (nats)'), ('reconstruction', 'E_q log p(x|z) (nats)'),
            ('kl', 'KL(q ‖ p) (nats)'), ('active_units', 'active units')]
  figure, axes = subplots(1, 4, figsize=(18, 4), dpi=90)
  for axis, (term, title) in zip(axes, panels):
    for split in ('train', 'validation', 'test'):
      # active units: the sum over layers; other terms: the total (not kl/<group>)
      matches = ((lambda name, t=term, s=split: name.startswith(f'{s}/{t}/'))
                 if term == 'active_units' else (lambda name, t=term, s=split: name == f'{s}/{t}'))
      points = sorted((line['step'] / steps_per_epoch, value) for line in metrics
                      for name, value in line.items() if matches(name) and np.isfinite(value))
      if points:
        axis.plot(*zip(*points), label=split, marker='.' if split != 'train' else None)
    axis.set_title(title)
    axis.set_xlabel('epoch')
    axis.grid(alpha=0.3)
    if axis.has_data():
      axis.legend()
  figure.tight_layout()
  return figure_to_array(figure)


def temperature_samples(model, params, key, temperatures, per_row: int = 8) -> np.ndarray:
  """One row of prior samples per temperature (a hierarchy's priors with their scales
  multiplied by it), the same noise in every row."""
  rows = [np.asarray(model.apply(params, key, per_row, float(t), method='generate'))
          for t in temperatures]
  return images.make_grid(np.concatenate(rows), per_row, min_tile_size=TILE)


def group_kl_bars(kl_per_group: dict[str, float], title: str) -> np.ndarray:
  """The KL of each latent group (nats per example), coarse to fine: where the model puts its
  information, and which groups it leaves unused."""
  figure, axis = subplots(figsize=(max(6, 0.35 * len(kl_per_group)), 3.5), dpi=90)
  axis.bar(range(len(kl_per_group)), list(kl_per_group.values()))
  axis.set_xticks(range(len(kl_per_group)), list(kl_per_group), rotation=90, fontsize=7)
  axis.set_ylabel('KL (nats)')
  axis.set_title(title)
  figure.tight_layout()
  return figure_to_array(figure)


def subplots(nrows: int = 1, ncols: int = 1, **figure_kwargs) -> tuple['Figure', object]:
  """`pyplot.subplots` without pyplot: a figure with its own Agg canvas, so that drawing one
  changes no global matplotlib state (the backend a notebook uses, pyplot's open figures).
  matplotlib is imported here, not with the module: training never draws a figure."""
  # pylint: disable=import-outside-toplevel
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  figure = Figure(**figure_kwargs)
  FigureCanvasAgg(figure)
  return figure, figure.subplots(nrows, ncols)


def figure_to_array(figure: 'Figure') -> np.ndarray:
  """Renders a matplotlib figure to a uint8 RGB array."""
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png')
  buffer.seek(0)
  from PIL import Image  # pylint: disable=import-outside-toplevel
  return np.asarray(Image.open(buffer).convert('RGB'))


def most_informative_units(model, params, x: np.ndarray, count: int) -> list[int]:
  """The `count` latent units with the largest variance of the posterior mean across `x`
  (the active units first)."""
  variances = np.var(_posterior_mean(model, params, x), axis=0)
  return [int(unit) for unit in np.argsort(-variances)[:count]]

