"""Learned priors: mixture densities against scipy, the VampPrior against its definition, and
the Monte-Carlo KL against quadrature."""

import jax
import jax.numpy as jnp
import pytest
import numpy as np
from scipy import integrate, special, stats

from vae_jax import distributions, encoders, likelihoods, networks, objectives, priors
from vae_jax.models import VAE, Decoder


def _mixture(logits, means, scales):
  return distributions.MixtureOfDiagonalGaussians(
      jnp.asarray(logits, jnp.float32), jnp.asarray(means, jnp.float32),
      jnp.asarray(scales, jnp.float32))


def test_mixture_log_prob_matches_scipy():
  logits, means, scales = [0.3, -1.0, 0.5], [[0.0, 1.0], [2.0, -1.0], [-1.5, 0.5]], [[1.0, 0.5],
                                                                                   [0.3, 0.8],
                                                                                   [1.2, 1.0]]
  z = np.random.default_rng(0).normal(size=(5, 2))
  weights = np.exp(logits) / np.exp(logits).sum()
  expected = np.log(sum(
      w * stats.multivariate_normal(m, np.diag(np.square(s))).pdf(z)
      for w, m, s in zip(weights, means, scales)))
  np.testing.assert_allclose(_mixture(logits, means, scales).log_prob(jnp.asarray(z, jnp.float32)),
                             expected, rtol=1e-5)


def test_mixture_log_prob_and_gradients_match_the_broadcast_formula_for_any_leading_shape():
  # log_prob has a hand-written gradient (for speed); autodiff of the textbook [..., K, D]
  # broadcast of jax.scipy's logpdf is the reference, values and gradients of a weighted sum
  # (a cotangent other than ones), at z of shape [S, B, D].
  rng = np.random.default_rng(1)
  logits, means = rng.normal(size=7), rng.normal(size=(7, 3))
  scales, z = rng.uniform(0.2, 2.0, size=(7, 3)), rng.normal(size=(4, 5, 3))

  def reference(logits, means, scales, z):
    per_component = jax.scipy.stats.norm.logpdf(z[..., None, :], means, scales).sum(-1)
    return jax.scipy.special.logsumexp(jax.nn.log_softmax(logits) + per_component, axis=-1)

  ours = lambda *args: _mixture(*args[:3]).log_prob(args[3])
  args = [jnp.asarray(a, jnp.float32) for a in (logits, means, scales, z)]
  np.testing.assert_allclose(ours(*args), reference(*args), rtol=1e-6, atol=1e-6)
  assert ours(*args).shape == (4, 5)
  cotangent = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
  total = lambda fn: jax.grad(lambda *a: jnp.sum(cotangent * fn(*a)), argnums=(0, 1, 2, 3))
  for got, want in zip(total(ours)(*args), total(reference)(*args)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_mixture_samples_have_the_mixture_moments():
  mixture = _mixture([0.0, np.log(3.0)], [[-2.0], [2.0]], [[0.5], [0.5]])
  z = np.asarray(mixture.sample(jax.random.key(0), (200_000,)))[:, 0]
  np.testing.assert_allclose(z.mean(), -2 * 0.25 + 2 * 0.75, atol=0.02)
  np.testing.assert_allclose(np.mean(z > 0), 0.75, atol=0.005)


def test_sampled_kl_to_a_mixture_prior_is_unbiased():
  # No closed form for KL(q ‖ mixture); the Monte-Carlo estimate log q(z) − log p(z) with
  # z ~ q is unbiased because its expectation under q *is* the KL's definition. Check the
  # average of many estimates against the KL integrated numerically in 1-D.
  q = distributions.DiagonalGaussian(jnp.array([0.4]), jnp.array([0.7]))
  p = _mixture([0.0, 1.0], [[-1.0], [1.5]], [[0.6], [0.9]])
  z = q.sample(jax.random.key(1), (400_000,))
  estimates = np.asarray(q.log_prob(z) - p.log_prob(z), np.float64)

  def integrand(value):
    log_q = stats.norm.logpdf(value, 0.4, 0.7)
    weights = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    log_p = np.log(weights[0] * stats.norm.pdf(value, -1.0, 0.6)
                   + weights[1] * stats.norm.pdf(value, 1.5, 0.9))
    return np.exp(log_q) * (log_q - log_p)

  exact = integrate.quad(integrand, -10, 10)[0]
  assert abs(estimates.mean() - exact) < 4 * estimates.std() / np.sqrt(len(estimates))


@pytest.mark.slow
def test_vamp_prior_is_the_mean_of_the_encoder_posteriors_at_its_pseudo_inputs():
  encoder = encoders.GaussianEncoder(networks.MLP((8,), 'tanh', flatten_ndims=2), latent_dim=3)
  prior = priors.VampPrior(num_pseudo_inputs=4, data_shape=(2, 3))
  decoder = Decoder(networks.MLPDecoderNet((2, 3), (8,)), likelihoods.BernoulliLikelihood(2))
  model = VAE(encoder, decoder, prior)
  params = model.init(jax.random.key(0), jnp.zeros((1, 2, 3)))
  pseudo_inputs = params['params']['prior']['pseudo_inputs']
  assert pseudo_inputs.shape == (4, 2, 3)
  z = jax.random.normal(jax.random.key(1), (6, 3))
  posteriors = model.apply(params, jnp.clip(pseudo_inputs, 0, 1), method='encode')
  means, scales = np.asarray(posteriors.mean, np.float64), np.asarray(posteriors.scale, np.float64)
  per_component = np.stack([stats.norm.logpdf(np.asarray(z)[:, None, :], means, scales).sum(-1)
                            [:, k] for k in range(4)], axis=1)  # [6, 4]: log q(z | u_k)
  expected = special.logsumexp(per_component, axis=1) - np.log(4)  # the mean of the 4 densities
  actual = model.apply(params, method='prior_distribution').log_prob(z)
  np.testing.assert_allclose(actual, expected, rtol=1e-5)
  # The ELBO falls back to the sampled KL, and gradients reach the pseudo-inputs.
  assert model.apply(params, jnp.zeros((2, 2, 3)), method='analytic_kl') is None

  def loss(params):
    terms = objectives.log_weight_terms(model, params, jnp.full((2, 2, 3), 0.5),
                                        jax.random.key(2), 1)
    return jnp.mean(terms['log_prior'])

  assert np.any(jax.grad(loss)(params)['params']['prior']['pseudo_inputs'] != 0)
