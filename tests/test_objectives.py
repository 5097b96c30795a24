"""The ELBO against independent computations: quadrature, and a linear-Gaussian model whose
marginal likelihood and posterior are known in closed form."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from vae_jax import distributions, models, objectives, priors

# --- A linear-Gaussian model: p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I), so that
# p(x) = N(b, WWᵀ + σ²I). W has orthogonal columns, so the exact posterior is diagonal.
W = np.array([[1.0, 2.0], [2.0, -1.0], [0.0, 1.5]])  # columns are orthogonal: WᵀW is diagonal
B = np.array([0.3, -0.2, 0.5])
SIGMA = 0.7
X = np.array([[1.0, 2.0, -0.5], [-1.5, 0.0, 1.0]])


def exact_posterior(x, xp=np):
  """Mean and scale of p(z|x) = N(A Wᵀ(x − b)/σ², A), A = (I + WᵀW/σ²)⁻¹ (diagonal here)."""
  assert np.allclose(W.T @ W, np.diag(np.diag(W.T @ W)))
  precision = 1.0 + np.diag(W.T @ W) / SIGMA**2
  mean = ((x - B) @ W / SIGMA**2) / precision
  return mean, xp.broadcast_to(1.0 / np.sqrt(precision), mean.shape)


def exact_log_marginal(x):
  return stats.multivariate_normal(B, W @ W.T + SIGMA**2 * np.eye(3)).logpdf(x)


class LinearGaussianDecoder(nn.Module):

  def __call__(self, z):
    mean = z @ jnp.asarray(W.T, jnp.float32) + jnp.asarray(B, jnp.float32)
    return distributions.DiagonalGaussian(mean, jnp.full(mean.shape, SIGMA, jnp.float32))


class FixedGaussianEncoder(nn.Module):
  """Outputs the exact posterior, shifted by `mean_shift` (0: exact)."""

  mean_shift: float = 0.0

  def __call__(self, x):
    mean, scale = exact_posterior(x, xp=jnp)
    return distributions.DiagonalGaussian(mean + self.mean_shift, scale)


def _linear_gaussian_vae(mean_shift=0.0):
  model = models.VAE(FixedGaussianEncoder(mean_shift), LinearGaussianDecoder(),
                     priors.StandardNormalPrior(2))
  return model, model.init(jax.random.key(0), jnp.zeros((1, 3)))


def test_elbo_with_exact_posterior_equals_log_marginal_for_every_sample():
  # With q = p(z|x), log p(x, z) − log q(z|x) = log p(x) for every z: a single sample with the
  # sampled KL gives log p(x) exactly.
  model, params = _linear_gaussian_vae()
  terms = objectives.elbo_terms(model, params, jnp.asarray(X, jnp.float32), jax.random.key(1),
                                num_samples=1, analytic_kl=False)
  np.testing.assert_allclose(terms['elbo'], exact_log_marginal(X), rtol=1e-5)


def test_elbo_with_analytic_kl_converges_to_log_marginal():
  model, params = _linear_gaussian_vae()
  terms = objectives.elbo_terms(model, params, jnp.asarray(X, jnp.float32), jax.random.key(2),
                                num_samples=100_000)
  np.testing.assert_allclose(terms['elbo'], exact_log_marginal(X), atol=0.02)
  np.testing.assert_allclose(terms['elbo'], terms['reconstruction'] - terms['kl'], rtol=1e-6)


def test_gap_to_log_marginal_is_kl_from_the_exact_posterior():
  shift = 0.8
  model, params = _linear_gaussian_vae(mean_shift=shift)
  terms = objectives.elbo_terms(model, params, jnp.asarray(X, jnp.float32), jax.random.key(3),
                                num_samples=100_000)
  mean, scale = exact_posterior(X)
  kl_to_posterior = distributions.kl_divergence(
      distributions.DiagonalGaussian(jnp.asarray(mean + shift), jnp.asarray(scale)),
      distributions.DiagonalGaussian(jnp.asarray(mean), jnp.asarray(scale)))
  np.testing.assert_allclose(exact_log_marginal(X) - terms['elbo'], kl_to_posterior, atol=0.03)
  assert np.all(kl_to_posterior > 0.5)  # the gap is far above the Monte-Carlo error


def test_sampled_and_analytic_kl_agree_in_expectation():
  model, params = _linear_gaussian_vae(mean_shift=0.5)
  x = jnp.asarray(X, jnp.float32)
  analytic = objectives.elbo_terms(model, params, x, jax.random.key(4), num_samples=100_000)
  sampled = objectives.elbo_terms(model, params, x, jax.random.key(4), num_samples=100_000,
                                  analytic_kl=False)
  np.testing.assert_allclose(sampled['kl'], analytic['kl'], atol=0.02)


# --- A nonlinear model with a 1-D latent: log p(x) by quadrature.
DECODER_SCALE = np.array([3.0, -2.0, 1.5, 4.0])
DECODER_SHIFT = np.array([0.5, 0.0, -1.0, 1.0])
PIXELS = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])


class TanhBernoulliDecoder(nn.Module):

  def __call__(self, z):  # z [..., 1]
    logits = jnp.tanh(z) * jnp.asarray(DECODER_SCALE, jnp.float32) + jnp.asarray(DECODER_SHIFT,
                                                                               jnp.float32)
    return distributions.Bernoulli(logits)


class ConstantEncoder(nn.Module):
  """q(z|x) = N(0.3, 0.6²) for every x: a poor posterior, so the bound is loose."""

  def __call__(self, x):
    shape = x.shape[:-1] + (1,)
    return distributions.DiagonalGaussian(jnp.full(shape, 0.3), jnp.full(shape, 0.6))


def _log_likelihood_numpy(z, pixels):
  logits = np.tanh(z) * DECODER_SCALE + DECODER_SHIFT
  return np.sum(pixels * logits - np.logaddexp(0.0, logits))


def test_elbo_is_below_log_marginal_computed_by_quadrature():
  model = models.VAE(ConstantEncoder(), TanhBernoulliDecoder(), priors.StandardNormalPrior(1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 4)))
  terms = objectives.elbo_terms(model, params, jnp.asarray(PIXELS, jnp.float32),
                                jax.random.key(5), num_samples=200_000)
  for i, pixels in enumerate(PIXELS):
    log_marginal = np.log(integrate.quad(
        lambda z: stats.norm.pdf(z) * np.exp(_log_likelihood_numpy(z, pixels)), -12, 12)[0])
    expected_log_likelihood = integrate.quad(
        lambda z: stats.norm.pdf(z, 0.3, 0.6) * _log_likelihood_numpy(z, pixels), -12, 12)[0]
    expected_kl = np.log(1 / 0.6) + (0.6**2 + 0.3**2) / 2 - 0.5
    # The estimator matches the ELBO computed by quadrature, which is below log p(x).
    np.testing.assert_allclose(terms['reconstruction'][i], expected_log_likelihood, atol=0.01)
    np.testing.assert_allclose(terms['kl'][i], expected_kl, rtol=1e-5)
    assert terms['elbo'][i] < log_marginal - 0.05


def test_beta_weights_the_kl_in_the_training_loss():
  model, params = _linear_gaussian_vae(mean_shift=0.5)
  x, key = jnp.asarray(X, jnp.float32), jax.random.key(6)
  terms = objectives.elbo_terms(model, params, x, key, num_samples=3)
  for beta in (1.0, 0.3):
    loss, _ = objectives.training_loss(model, params, x, key, objective='elbo', num_samples=3,
                                       beta=beta, analytic_kl=True)
    np.testing.assert_allclose(loss, -np.mean(terms['reconstruction'] - beta * terms['kl']),
                               rtol=1e-6)


def test_single_sample_iwae_is_the_elbo_with_sampled_kl():
  model, params = _linear_gaussian_vae(mean_shift=0.5)
  x, key = jnp.asarray(X, jnp.float32), jax.random.key(7)
  iwae = objectives.iwae_terms(model, params, x, key, num_samples=1)
  elbo = objectives.elbo_terms(model, params, x, key, num_samples=1, analytic_kl=False)
  np.testing.assert_allclose(iwae['iwae'], elbo['elbo'], rtol=1e-6)


@pytest.mark.slow
def test_bounds_are_ordered_elbo_iwae5_iwae50_log_marginal():
  # In expectation ELBO ≤ IWAE_5 ≤ IWAE_50 ≤ log p(x) (Burda et al., Theorem 1); the
  # expectations are averages over 4,000 independent replicates.
  model, params = _linear_gaussian_vae(mean_shift=0.8)
  x = jnp.asarray(X, jnp.float32)

  def mean_and_error(num_samples):
    def replicate(key):
      return objectives.iwae_terms(model, params, x, key, num_samples=num_samples)['iwae']

    values = np.asarray(jax.vmap(replicate)(jax.random.split(jax.random.key(8), 4000)))
    return values.mean(0), values.std(0) / np.sqrt(len(values))

  (elbo, elbo_se), (iwae5, iwae5_se), (iwae50, iwae50_se) = map(mean_and_error, (1, 5, 50))
  log_marginal = exact_log_marginal(X)
  assert np.all(elbo + 4 * elbo_se < iwae5 - 4 * iwae5_se)
  assert np.all(iwae5 + 4 * iwae5_se < iwae50 - 4 * iwae50_se)
  assert np.all(iwae50 < log_marginal)
  assert np.all(log_marginal - iwae50 < log_marginal - iwae5)


def test_bits_per_dim():
  np.testing.assert_allclose(objectives.bits_per_dim(-784 * np.log(2.0), 784), 1.0, rtol=1e-6)
