"""Exact log p(x) by quadrature over a latent of one or two dimensions: the oracle that the
estimators (importance sampling, AIS) are measured against, and an evaluator for small-latent
models.

    log p(x) = log ∫ p(x|z) p(z) dz ≈ log Σ_cells p(x|z_c) p(z_c) |cell|

by the midpoint rule on a uniform grid over a box that holds the prior's draws and every
evaluated example's posterior (mean ± `posterior_widths` standard deviations of q(z|x)). The
grid is refined (points per dimension doubled) until no example's value moves by more than
`tolerance` nats. A value counts as converged only if it moved by less than that at the last
doubling and the box's edge band (its outer 1/32 on every side) holds less than that share
of p(x, z) (a larger share says the box may cut off mass beyond it, up to about
log(1 + share) nats, which no refinement reveals).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import models, progress
from vae_jax.evaluators import batched, registry
from vae_jax.options import Option

PRIOR_DRAWS = 4096  # prior draws that place the box, widened by a quarter on each side
MAX_POINTS_PER_CHUNK = 4096  # grid points decoded at a time (memory: examples × this)
EDGE_BAND = 1 / 32  # of the box's width on each side: where mass says the box may cut off more


def grid_cells(box: np.ndarray, points_per_dim: int) -> tuple[np.ndarray, float, np.ndarray]:
  """Midpoints `[n^d, d]` of a uniform grid of `points_per_dim` cells per dimension over `box`
  `[d, 2]`, the log of one cell's volume, and whether each cell lies in the edge band: the
  outer `EDGE_BAND` of the box's width on every side (at least one cell), the same band at
  every resolution (a ring one cell wide would hold less of a tail the finer the grid)."""
  axes = [lo + (np.arange(points_per_dim) + 0.5) * (hi - lo) / points_per_dim for lo, hi in box]
  mesh = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, len(box))
  index = np.stack(np.meshgrid(*[np.arange(points_per_dim)] * len(box), indexing='ij'),
                   axis=-1).reshape(-1, len(box))
  band = math.ceil(EDGE_BAND * points_per_dim)
  on_edge = np.any((index < band) | (index >= points_per_dim - band), axis=-1)
  log_volume = float(np.sum(np.log((box[:, 1] - box[:, 0]) / points_per_dim)))
  return mesh.astype(np.float32), log_volume, on_edge


def pairwise_log_likelihood(likelihood, x: jax.Array) -> jax.Array:
  """`log p(x_b | z_p)` `[B, P]` for a likelihood with batch `[P]`: one matrix product where the
  distribution offers it, else a vmap over examples."""
  if isinstance(likelihood, models.PairwiseLogProb):
    return likelihood.pairwise_log_prob(x)
  return jax.vmap(lambda image: likelihood.log_prob(image[None]))(x)


def make_level_fn(model, num_points: int):
  """A jitted `(params, images [B, ...], cells [P, d], on_edge [P], log_volume) ->
  (log p(x) [B], log share of the edge band's cells [B])`, decoding the P cells in chunks."""
  chunk = min(num_points, MAX_POINTS_PER_CHUNK)
  num_chunks = math.ceil(num_points / chunk)

  @batched.jit_at_full_precision
  def level_fn(params, images, cells, on_edge, log_volume):
    padded = num_chunks * chunk - num_points
    cells = jnp.concatenate([cells, jnp.repeat(cells[:1], padded, axis=0)])
    real = jnp.arange(num_chunks * chunk) < num_points
    on_edge = jnp.concatenate([on_edge, jnp.zeros(padded, bool)])
    prior = model.apply(params, method='prior_distribution')  # once, not per chunk

    def add_chunk(carry, inputs):
      log_total, log_edge = carry
      z, is_real, is_edge = inputs
      log_joint = (pairwise_log_likelihood(model.apply(params, z, method='decode'), images)
                   + prior.log_prob(z)[None])
      log_joint = jnp.where(is_real[None], log_joint, -jnp.inf)
      edge_joint = jnp.where(is_edge[None], log_joint, -jnp.inf)
      return (jnp.logaddexp(log_total, jax.scipy.special.logsumexp(log_joint, axis=1)),
              jnp.logaddexp(log_edge, jax.scipy.special.logsumexp(edge_joint, axis=1))), None

    start = jnp.full(images.shape[0], -jnp.inf)
    (log_total, log_edge), _ = jax.lax.scan(
        add_chunk, (start, start),
        (cells.reshape(num_chunks, chunk, -1), real.reshape(num_chunks, chunk),
         on_edge.reshape(num_chunks, chunk)))
    return log_total + log_volume, log_edge - log_total

  return level_fn


def placement_box(model, params, images: np.ndarray, *, posterior_widths: float,
                  batch_size: int) -> np.ndarray:
  """`[d, 2]`: the hull of the prior's draws (widened by a quarter each side) and of every
  example's posterior mean ± `posterior_widths` standard deviations."""
  draws = np.asarray(model.apply(params, jax.random.key(0), None, PRIOR_DRAWS, True,
                                 method='draw_latents'))
  if draws.shape[-1] > 2:
    raise ValueError(f'Quadrature integrates over 1 or 2 latent units; this model has '
                     f'{draws.shape[-1]}.')
  lo, hi = draws.min(axis=0), draws.max(axis=0)
  lo, hi = lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo)
  encode = jax.jit(lambda params, x: model.apply(params, x, method='encode_context'))
  for start in range(0, len(images), batch_size):
    mean, scale = map(np.asarray, posterior_mean_scale(encode(params,
                                                              images[start:start + batch_size])))
    lo = np.minimum(lo, (mean - posterior_widths * scale).min(axis=0))
    hi = np.maximum(hi, (mean + posterior_widths * scale).max(axis=0))
  return np.stack([lo, hi], axis=-1)


def posterior_mean_scale(posterior):
  """The Gaussian (or a flow's base Gaussian) that places the grid."""
  base = getattr(posterior, 'base', posterior)
  return base.mean, base.scale


def integrate(model, params, images: np.ndarray, *, points_per_dim: int, max_refinements: int,
              tolerance: float, posterior_widths: float, batch_size: int) -> dict:
  """Refines the grid until every example's log p(x) moves by less than `tolerance`; returns the
  per-example values of the finest level and the convergence record."""
  box = placement_box(model, params, images, posterior_widths=posterior_widths,
                      batch_size=batch_size)
  previous, history = None, []
  for refinement in range(max_refinements + 1):
    n = points_per_dim * 2**refinement
    cells, log_volume, on_edge = grid_cells(box, n)
    level_fn = make_level_fn(model, len(cells))
    progress.start_pass(len(images))  # one pass per grid
    parts = []
    for start in range(0, len(images), batch_size):
      parts.append(jax.device_get(
          level_fn(params, images[start:start + batch_size], cells, on_edge, log_volume)))
      progress.advance(min(start + batch_size, len(images)))
    values = np.concatenate([np.asarray(p[0], np.float64) for p in parts])
    edge_share = np.concatenate([np.asarray(p[1], np.float64) for p in parts])
    change = np.abs(values - previous) if previous is not None else None
    history.append({'points_per_dim': n,
                    'log_likelihood': float(np.mean(values)),
                    'max_change': None if change is None else float(change.max())})
    if change is not None and change.max() < tolerance:
      break
    previous = values
  return {'per_example': values, 'change': change, 'edge_share': edge_share, 'box': box,
          'history': history}


def unconverged(change: np.ndarray | None, log_edge_share: np.ndarray,
                tolerance: float) -> tuple[np.ndarray, np.ndarray]:
  """Which examples `[B]` are not settled: those that moved by `tolerance` nats or more at the
  last doubling (all, before any), and those whose edge band holds `tolerance` or more of p(x)
  (as much may lie beyond the box where p(x, z) decays over the band: log(1 + share) nats)."""
  moved = np.ones(len(log_edge_share), bool) if change is None else change >= tolerance
  return moved, np.log1p(np.exp(log_edge_share)) >= tolerance


@dataclasses.dataclass
class QuadratureEvaluator:
  """`{'quadrature': {log_likelihood, converged, max_change, ..., per_example_log_likelihood}}`."""
  model: object
  options: dict
  num_dims: int = 2
  computes_log_likelihood = 'exact'

  def work(self, num_examples: int) -> float:
    """At most: every grid, up to the last refinement."""
    return num_examples * sum((self.options['points_per_dim'] * 2**level)**self.num_dims
                              for level in range(self.options['max_refinements'] + 1))

  def __call__(self, params, split, rng) -> dict:
    del rng  # deterministic
    result = integrate(self.model, params, split.images, **self.options)
    change = result['change']
    moved, at_edge = unconverged(change, result['edge_share'], self.options['tolerance'])
    return {'quadrature': {
        'log_likelihood': float(np.mean(result['per_example'])),
        'converged': not bool(np.any(moved | at_edge)),
        'max_change': None if change is None else float(change.max()),
        'num_unconverged': int(np.sum(moved | at_edge)),
        'num_mass_at_edge': int(np.sum(at_edge)),
        'max_edge_share': float(np.exp(result['edge_share'].max())),
        'box': result['box'].tolist(),
        'refinements': result['history'],
        'per_example_log_likelihood': result['per_example'].tolist(),
        **{key: value for key, value in self.options.items() if key != 'batch_size'},
    }}


def option_problems(config) -> list[str]:
  options, problems = config.evals.quadrature, []
  for key in ('points_per_dim', 'batch_size'):
    if options[key] < 1:
      problems.append(f'evals.quadrature.{key}={options[key]} must be at least 1.')
  for key in ('tolerance', 'posterior_widths'):
    if options[key] <= 0:
      problems.append(f'evals.quadrature.{key}={options[key]} must be positive.')
  if options.max_refinements < 0:
    problems.append(f'evals.quadrature.max_refinements={options.max_refinements} must be '
                    'non-negative.')
  return problems


def report_lines(report: dict, seconds: float) -> list[str]:
  result = report['quadrature']
  points = result['refinements'][-1]['points_per_dim']
  if result['converged']:
    status = (f"converged: no example moved by more than {result['max_change']:.1e} at the last "
              'doubling')
  else:
    status = (f"NOT converged: {result['num_unconverged']} examples unsettled (changes up to "
              f"{result['max_change'] if result['max_change'] is not None else float('nan'):.3g}"
              f" nats at {points} points per dimension; {result['num_mass_at_edge']} with "
              f"{result['tolerance']} or more of p(x) in the edge band, where the box may cut "
              'off mass: widen evals.quadrature.posterior_widths)')
  return [f"  log p(x)      {result['log_likelihood']:10.3f} nats  exact by quadrature "
          f"({points} points per dimension, {seconds:.0f} s); {status}; the edge band (outer "
          f"1/32) holds at most {result['max_edge_share']:.1e} of any p(x)"]


# Exact log p(x) by quadrature over z, for one-layer models with 1 or 2 latent units.
@registry.register(
    'quadrature', during_training=False, checks=(option_problems,),
    report_lines=report_lines, report_rank=0,
    applies_to='1 or 2 latent units of the one-layer family',
    points_per_dim=Option(256, 'of the first grid; each refinement doubles it'),
    max_refinements=Option(3, 'grids after the first, each twice as fine'),
    tolerance=Option(0.01, 'nats: refinement stops once no example moves by more'),
    posterior_widths=Option(10.0, 'the box holds each posterior mean ± this many q standard '
                            'deviations'),
    batch_size=Option(10_000, 'examples per pass over the grid (memory: this × 4096 floats)'))
def create(model, config, dataset) -> QuadratureEvaluator | None:
  del dataset
  if not models.can_integrate(model) or config.model.latent_dim > 2:
    return None  # a grid over more than two dimensions costs too much to be the oracle
  options = config.evals.quadrature
  if option_problems(config):
    raise ValueError(' '.join(option_problems(config)))
  return QuadratureEvaluator(model, dict(
      points_per_dim=int(options.points_per_dim), max_refinements=int(options.max_refinements),
      tolerance=float(options.tolerance), posterior_widths=float(options.posterior_widths),
      batch_size=int(options.batch_size)), num_dims=int(config.model.latent_dim))
