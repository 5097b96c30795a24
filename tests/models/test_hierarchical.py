"""vae_jax/models/hierarchical.py: stacked Gaussian layers, against a linear-Gaussian chain
whose marginal and posterior are known in closed form."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tests.helpers import small_model_config as _model_config
from vae_jax import distributions, models, objectives, priors


# --- Two stochastic layers, linear-Gaussian: h2 ~ N(0, 1), h1 | h2 ~ N(A h2 + a, s1² I),
# x | h1 ~ N(B h1 + b, s2² I). The chain h2 → h1 → x makes p(h1, h2 | x) = p(h1|x) p(h2|h1),
# which is exactly the form of the encoders q(h1|x) q(h2|h1).
A, A_OFFSET, S1 = np.array([[1.5], [0.0]]), np.array([0.2, -0.3]), 0.6


B, B_OFFSET, S2 = np.array([[1.0, 2.0], [2.0, -1.0], [0.0, 1.5]]), np.array([0.1, 0.0, -0.2]), 0.5


class LinearGaussian(nn.Module):
  """`N(matrix · u + offset, diag(scale²))`."""

  matrix: tuple
  offset: tuple
  scale: tuple

  def __call__(self, u):
    mean = u @ jnp.asarray(self.matrix, jnp.float32).T + jnp.asarray(self.offset, jnp.float32)
    return distributions.DiagonalGaussian(
        mean, jnp.broadcast_to(jnp.asarray(self.scale, jnp.float32), mean.shape))


def _as_tuple(array):
  return tuple(map(tuple, array)) if np.ndim(array) == 2 else tuple(np.ravel(array))


def _exact_two_layer_model():
  h1_cov = A @ A.T + S1**2 * np.eye(2)  # diagonal: A has one non-zero row
  posterior_precision = np.linalg.inv(h1_cov) + B.T @ B / S2**2  # diagonal: BᵀB is
  posterior_cov = np.linalg.inv(posterior_precision)
  q_h1 = LinearGaussian(_as_tuple(posterior_cov @ B.T / S2**2),
                        _as_tuple(posterior_cov @ (np.linalg.inv(h1_cov) @ A_OFFSET
                                                   - B.T @ B_OFFSET / S2**2)),
                        _as_tuple(np.sqrt(np.diag(posterior_cov))))
  h2_precision = 1.0 + (A.T @ A)[0, 0] / S1**2
  q_h2 = LinearGaussian(_as_tuple(A.T / S1**2 / h2_precision),
                        _as_tuple(-(A.T @ A_OFFSET) / S1**2 / h2_precision),
                        _as_tuple([1 / np.sqrt(h2_precision)]))
  model = models.HierarchicalVAE(
      encoders=(q_h1, q_h2),
      conditional_priors=(LinearGaussian(_as_tuple(A), _as_tuple(A_OFFSET), (S1, S1)),),
      decoder=LinearGaussian(_as_tuple(B), _as_tuple(B_OFFSET), (S2,) * 3),
      prior=priors.StandardNormalPrior(1))
  marginal = stats.multivariate_normal(B @ A_OFFSET + B_OFFSET, B @ h1_cov @ B.T + S2**2 * np.eye(3))
  return model, model.init(jax.random.key(0), jnp.zeros((1, 3))), marginal


def test_two_layer_log_weights_with_the_exact_posterior_equal_log_marginal():
  model, params, marginal = _exact_two_layer_model()
  x = np.random.default_rng(0).normal(size=(4, 3))
  terms = objectives.elbo_terms(model, params, jnp.asarray(x, jnp.float32), jax.random.key(1),
                                num_samples=3, analytic_kl=True)  # no closed form: sampled KL
  np.testing.assert_allclose(terms['elbo'], marginal.logpdf(x), rtol=1e-5)


@pytest.mark.slow  # compile-heavy: over 9 s on 2 cores
def test_two_layer_model_from_config():
  config = _model_config()
  config.upper_layers.latent_dims = (2,)
  config.upper_layers.hidden_sizes = (5,)
  model = models.build_model(config, (4, 4, 1))
  assert isinstance(model, models.HierarchicalVAE)
  params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))['params']
  assert params['encoders_1']['mean']['kernel'].shape == (5, 2)  # q(h2|h1): 3 -> 5 -> 2
  assert params['conditional_priors_0']['mean']['kernel'].shape == (5, 3)  # p(h1|h2): 2 -> 5 -> 3
  variables = {'params': params}
  x = jnp.zeros((6, 4, 4, 1))
  terms = model.apply(variables, x, jax.random.key(1), method='sample_log_weight_terms')
  assert all(value.shape == (6,) for value in terms.values())
  assert model.apply(variables, x, method='analytic_kl') is None
  assert set(model.apply(variables, x, method='posterior_means')) == {'h1', 'h2'}
  assert model.apply(variables, jax.random.key(2), 5, method='generate').shape == (5, 4, 4, 1)
  assert model.apply(variables, x, method='reconstruct').shape == (6, 4, 4, 1)
