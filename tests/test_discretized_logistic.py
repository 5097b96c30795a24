"""vae_jax/discretized_logistic.py: the 256 probabilities of a pixel sum to 1 (by enumeration),
and match a SciPy reference in the middle, at the edge bins and far in the tails."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vae_jax import discretized_logistic as dl

LEVELS = np.arange(256) / 255.0


def _grey(logit_weights, means, log_scales):
  """A one-channel mixture at one pixel (`[1, 1, M]` parameters)."""
  m = len(logit_weights)
  as_array = lambda values, shape: jnp.asarray(values, jnp.float32).reshape(shape)
  return dl.DiscretizedLogisticMixture(as_array(logit_weights, (1, 1, m)),
                                       as_array(means, (1, 1, 1, m)),
                                       as_array(log_scales, (1, 1, 1, m)),
                                       jnp.zeros((1, 1, 3, m)))


def _scipy_log_prob(k, means, scales, weights):
  """log p(k) in float64 from SciPy's logistic: CDF differences on the bin around 2k/255 − 1,
  the tails in the edge bins; log-space differences so that far tails stay finite."""
  x = 2 * k / 255 - 1
  per_component = []
  for mean, scale in zip(means, scales):
    upper, lower = (x + 1 / 255 - mean) / scale, (x - 1 / 255 - mean) / scale
    if k == 0:
      value = stats.logistic.logcdf(upper)
    elif k == 255:
      value = stats.logistic.logsf(lower)
    elif x > mean:  # difference of survival functions, both small
      a, b = stats.logistic.logsf(lower), stats.logistic.logsf(upper)
      value = a + np.log1p(-np.exp(b - a))
    else:
      a, b = stats.logistic.logcdf(upper), stats.logistic.logcdf(lower)
      value = a + np.log1p(-np.exp(b - a))
    per_component.append(value)
  log_weights = np.log(weights / np.sum(weights))
  return special.logsumexp(np.asarray(per_component) + log_weights)


@pytest.mark.parametrize('means,log_scales', [
    ([0.0], [-2.0]), ([-0.999, 0.5], [-5.0, -1.0]), ([1.2, -0.3], [-7.0, 0.5]),
    ([0.0], [-7.0])])
def test_the_256_values_of_a_pixel_have_probabilities_summing_to_one(means, log_scales):
  distribution = _grey(np.linspace(-1, 1, len(means)), means, log_scales)
  images = jnp.asarray(LEVELS, jnp.float32).reshape(256, 1, 1, 1)
  log_probs = jax.vmap(lambda x: distribution.log_prob(x[None]))(images)
  np.testing.assert_allclose(special.logsumexp(np.asarray(log_probs, np.float64)), 0.0,
                             atol=2e-5)


@pytest.mark.parametrize('k', [0, 1, 2, 100, 127, 128, 200, 253, 254, 255])
def test_log_probabilities_match_scipy_in_the_middle_at_the_edges_and_in_the_tails(k):
  means, log_scales, logits = [-0.6, 0.1, 0.95], [-3.0, -1.5, -6.0], [0.3, -0.2, 1.0]
  distribution = _grey(logits, means, log_scales)
  ours = float(distribution.log_prob(jnp.full((1, 1, 1, 1), k / 255.0, jnp.float32))[0])
  expected = _scipy_log_prob(k, means, np.exp(log_scales), np.exp(logits))
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_a_far_tail_bin_stays_finite_and_accurate():
  # The bin at x = 0.9 is 45 scales away from the mean: σ(b+) − σ(b−) underflows in float32.
  distribution = _grey([0.0], [-0.9], [np.log(0.04)])
  k = round((0.9 + 1) * 127.5)
  ours = float(distribution.log_prob(jnp.full((1, 1, 1, 1), k / 255.0, jnp.float32))[0])
  expected = _scipy_log_prob(k, [-0.9], [0.04], np.ones(1))
  assert np.isfinite(ours)
  np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_colour_pixels_sum_to_one_over_all_256_cubed_values():
  rng = np.random.default_rng(0)
  m = 2
  # One pixel (H = W = 1): parameters [1, 1, M], [1, 1, 3, M]; values [1, 1, 3].
  distribution = dl.DiscretizedLogisticMixture(
      jnp.asarray(rng.normal(size=(1, 1, m)), jnp.float32),
      jnp.asarray(rng.uniform(-0.5, 0.5, size=(1, 1, 3, m)), jnp.float32),
      jnp.asarray(rng.uniform(-2.5, -1.5, size=(1, 1, 3, m)), jnp.float32),
      jnp.asarray(rng.uniform(-0.9, 0.9, size=(1, 1, 3, m)), jnp.float32))
  levels = jnp.asarray(LEVELS, jnp.float32)

  def log_probs_for_red(red):  # every green and blue with this red
    green, blue = jnp.meshgrid(levels, levels, indexing='ij')
    pixels = jnp.stack([jnp.full_like(green, red), green, blue], -1).reshape(-1, 1, 1, 3)
    return jax.scipy.special.logsumexp(jax.vmap(distribution.log_prob)(pixels))

  total = jax.scipy.special.logsumexp(jax.lax.map(log_probs_for_red, levels))
  np.testing.assert_allclose(float(total), 0.0, atol=1e-4)


def test_samples_follow_the_probabilities_and_the_mean():
  distribution = _grey([0.5, -0.5], [-0.2, 0.4], [-2.0, -2.5])
  shaped = jax.tree.map(lambda a: jnp.broadcast_to(a, (20_000, *a.shape)), distribution)
  samples = np.asarray(shaped.sample(jax.random.key(0)))[:, 0, 0, 0]
  assert set(np.round(samples * 255)).issubset(set(range(256)))
  probs = np.exp([float(distribution.log_prob(jnp.full((1, 1, 1, 1), k / 255, jnp.float32))[0])
                  for k in range(256)])
  counts = np.bincount(np.round(samples * 255).astype(int), minlength=256)
  # Grouped into 8 ranges of 32 values: within 5 standard errors of the expected counts.
  expected, observed = probs.reshape(8, 32).sum(1) * 20_000, counts.reshape(8, 32).sum(1)
  assert np.all(np.abs(observed - expected) < 5 * np.sqrt(expected + 1))
  np.testing.assert_allclose(float(distribution.mean[0, 0, 0]), samples.mean(), atol=0.01)


def test_the_likelihood_reads_its_raw_channels():
  likelihood = dl.DiscretizedLogisticMixtureLikelihood(num_components=3)
  assert likelihood.raw_channels(1) == 9 and likelihood.raw_channels(3) == 30
  for channels in (1, 3):
    raw = jax.ShapeDtypeStruct((2, 4, 4, likelihood.raw_channels(channels)), jnp.float32)
    x = jnp.full((2, 4, 4, channels), 0.5)
    shapes = jax.eval_shape(lambda raw: (  # shapes only: nothing is compiled
        lambda d: (d.means, d.log_prob(x), d.mean, d.sample(jax.random.key(1))))(
            likelihood.apply({}, raw)), raw)
    assert [value.shape for value in shapes] == [(2, 4, 4, channels, 3), (2,), x.shape, x.shape]


def _sharp_vdvae_output(seed, batch=2, size=8, nr_mix=10):
  """A sharp model's output in VDVAE's channel layout (log-scales within 1 of their floor −7,
  means anywhere), float32 values held in float64, and random 8-bit images."""
  rng = np.random.default_rng(seed)
  l = rng.normal(0, 1, (batch, size, size, nr_mix * 10))
  per_channel = l[..., nr_mix:].reshape(batch, size, size, 3, 3 * nr_mix)
  per_channel[..., nr_mix:2 * nr_mix] = rng.uniform(-8.0, -6.0, per_channel[..., :nr_mix].shape)
  l[..., nr_mix:] = per_channel.reshape(batch, size, size, -1)
  images = rng.integers(0, 256, (batch, size, size, 3)) / 255.0
  return l.astype(np.float32).astype(np.float64), images


def test_the_midpoint_density_branch_matches_vdvaes_loss_on_a_sharp_model():
  # VDVAE's discretized_mix_logistic_loss (tests/vdvae_reference.py, float64) against ours
  # (float32) on a sharp model, where most bins hold less than 1e-5 and the two conventions
  # differ by about log(sinh(a)/a) ≈ 2 nats per subpixel (a = bin half-width / scale).
  from tests import vdvae_reference  # pylint: disable=import-outside-toplevel
  from vae_jax.models import vdvae_checkpoints  # pylint: disable=import-outside-toplevel
  l, images = _sharp_vdvae_output(0)
  target = (np.round(images * 255) - 127.5) / 127.5
  theirs = vdvae_reference._dmol_log_prob(target, l, 10)  # pylint: disable=protected-access
  raw = jnp.asarray(l[..., vdvae_checkpoints.mixture_channel_order(10)], jnp.float32)
  x = jnp.asarray(images, jnp.float32)
  ours = {small_bins: np.asarray(dl.DiscretizedLogisticMixtureLikelihood(
      10, small_bins=small_bins).apply({}, raw).log_prob(x), np.float64)
          for small_bins in dl.SMALL_BINS}
  np.testing.assert_allclose(ours['midpoint_density'], theirs, rtol=1e-6)
  # The exact bin probability is larger (by sinh(a)/a per small bin): > 1 nat per pixel here.
  assert np.all(ours['exact'] - theirs > 1.0 * 8 * 8)


@pytest.mark.parametrize('k', [1, 2, 100, 200, 253, 254])
def test_the_midpoint_density_branch_scores_the_density_times_the_width_below_1e_5(k):
  # One sharp logistic (scale e^−7) at −0.2: bins far from it score pdf(x) · 2/255; the edge
  # bins keep their tails and a bin of probability above 1e-5 keeps its probability.
  mean, log_scale = -0.2, -7.0
  distribution = _grey([0.0], [mean], [log_scale])
  midpoint = dl.DiscretizedLogisticMixture(*jax.tree.leaves(distribution),
                                           small_bins='midpoint_density')
  x = jnp.full((1, 1, 1, 1), k / 255.0, jnp.float32)
  exact = _scipy_log_prob(k, [mean], [np.exp(log_scale)], np.ones(1))
  expected = (stats.logistic.logpdf(2 * k / 255 - 1, mean, np.exp(log_scale)) + np.log(2 / 255)
              if exact < np.log(1e-5) else exact)
  np.testing.assert_allclose(float(midpoint.log_prob(x)[0]), expected, rtol=1e-5)
  np.testing.assert_allclose(float(distribution.log_prob(x)[0]), exact, rtol=1e-5)


def test_five_bits_sum_to_one_and_score_the_top_bits_of_each_value():
  distribution = dl.DiscretizedLogisticMixture(*jax.tree.leaves(_grey([0.3, -0.2], [-0.4, 0.6],
                                                                      [-2.0, -3.0])),
                                               num_bits=5)
  images = jnp.asarray(np.arange(256) / 255.0, jnp.float32).reshape(256, 1, 1, 1)
  log_probs = np.asarray(jax.vmap(lambda x: distribution.log_prob(x[None]))(images)[:, 0])
  # every 8 values of k share their top five bits: one bin of the 32
  np.testing.assert_array_equal(log_probs.reshape(32, 8), log_probs[::8, None].repeat(8, 1))
  np.testing.assert_allclose(special.logsumexp(log_probs[::8].astype(np.float64)), 0.0,
                             atol=2e-5)
  samples = distribution.sample(jax.random.key(0))
  assert float(samples[0, 0, 0]) * 31 == pytest.approx(round(float(samples[0, 0, 0]) * 31))
