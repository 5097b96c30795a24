"""Model building: shapes for every encoder, decoder, likelihood and prior, any batch axes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import default
from vae_jax import distributions, models, networks, objectives, priors


def _model_config(encoder='mlp', decoder='mlp', likelihood='bernoulli', scale='decoded',
                  prior='standard_normal'):
  config = default.get_config().model
  config.latent_dim = 3
  config.encoder.kind, config.decoder.kind = encoder, decoder
  config.encoder.hidden_sizes = config.decoder.hidden_sizes = (8,)
  config.encoder.conv_channels, config.decoder.conv_channels = (4, 8), (8, 4)
  config.likelihood.kind, config.likelihood.scale = likelihood, scale
  config.prior.kind = prior
  return config


@pytest.mark.parametrize('data_shape', [(28, 28, 1), (28, 20, 1), (8, 8, 1)])
@pytest.mark.parametrize('encoder,decoder', [('mlp', 'mlp'), ('conv', 'conv'), ('conv', 'mlp')])
def test_encode_decode_shapes(data_shape, encoder, decoder):
  model = models.build_model(_model_config(encoder, decoder), data_shape)
  params = model.init(jax.random.key(0), jnp.zeros((1, *data_shape)))
  x = jnp.zeros((5, *data_shape))
  posterior = model.apply(params, x, method='encode')
  assert posterior.mean.shape == posterior.scale.shape == (5, 3)
  assert np.all(posterior.scale > 0)
  z = posterior.sample(jax.random.key(1), (2,))  # [S, B, D]: samples of a batch
  likelihood = model.apply(params, z, method='decode')
  assert likelihood.logits.shape == (2, 5, *data_shape)
  assert likelihood.log_prob(x).shape == (2, 5)


@pytest.mark.parametrize('scale,num_outputs', [('decoded', 2), ('learned', 1), ('fixed', 1)])
def test_gaussian_likelihood_scales(scale, num_outputs):
  model = models.build_model(_model_config(likelihood='gaussian', scale=scale), (4, 4, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
  output_kernel = params['params']['decoder']['net']['output']['kernel']
  assert output_kernel.shape == (8, 16 * num_outputs)
  assert ('raw_scale' in params['params']['decoder'].get('likelihood', {})) == (scale == 'learned')
  likelihood = model.apply(params, jnp.zeros((7, 3)), method='decode')
  assert isinstance(likelihood, distributions.DiagonalGaussian)
  assert likelihood.mean.shape == likelihood.scale.shape == (7, 4, 4, 1)
  assert np.all((likelihood.mean > 0) & (likelihood.mean < 1))  # sigmoid mean
  assert np.all(likelihood.scale >= 1e-3)


def test_priors():
  fixed = models.build_model(_model_config(prior='standard_normal'), (4, 4, 1))
  learned = models.build_model(_model_config(prior='learned_gaussian'), (4, 4, 1))
  for model, has_params in ((fixed, False), (learned, True)):
    params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
    assert ('prior' in params['params']) == has_params
    prior = model.apply(params, method='prior_distribution')
    np.testing.assert_allclose(prior.mean, np.zeros(3))
    np.testing.assert_allclose(prior.scale, np.ones(3), rtol=1e-3)


def test_unknown_kinds_name_the_choices():
  with pytest.raises(ValueError, match="Unknown encoder kind 'resnet'.*'mlp', 'conv'"):
    config = _model_config()
    config.encoder.kind = 'resnet'
    models.build_model(config, (4, 4, 1))


@pytest.mark.parametrize('latent_kind,upper,family,cls,enumerable,categorical', [
    ('gaussian', (), 'vae', models.VAE, False, False),
    ('gaussian', (2,), 'hierarchical', models.HierarchicalVAE, False, False),
    ('categorical', (), 'discrete', models.DiscreteVAE, True, True),
])
def test_each_family_is_built_by_name_with_its_capabilities(latent_kind, upper, family, cls,
                                                            enumerable, categorical):
  config = _model_config(prior='uniform' if latent_kind == 'categorical' else 'standard_normal')
  config.latent_kind, config.upper_layers.latent_dims = latent_kind, upper
  assert models.family_name(config) == family
  model = models.build_model(config, (4, 4, 1))
  assert type(model) is cls and isinstance(model, models.LatentVariableModel)
  assert models.can_enumerate(model) == enumerable
  assert isinstance(model, models.CategoricalLatents) == categorical
  assert objectives.resolve_gradient_estimator('auto', model) == (
      'exact' if enumerable else 'reparameterized')


def test_a_discrete_space_too_large_to_list_is_not_enumerated():
  config = _model_config(prior='uniform')
  config.latent_kind, config.latent_dim, config.max_enumeration = 'categorical', 20, 1000
  model = models.build_model(config, (4, 4, 1))
  assert isinstance(model, models.Enumerable) and not models.can_enumerate(model)
  assert objectives.resolve_gradient_estimator('auto', model) == 'gumbel_softmax'


def test_the_registry_refuses_a_second_family_of_one_name_and_a_model_without_the_interface(
    monkeypatch):
  with pytest.raises(ValueError, match="'vae' is registered twice"):
    models.register('vae')(lambda config, shape: None)
  with pytest.raises(ValueError, match="'exact' is registered twice"):
    models.registry.register_estimator('exact')(lambda *args, **kwargs: None)
  assert models.registry.ESTIMATORS['score_function'] is models.discrete.score_function_loss
  assert objectives.gradient_estimators() == ('auto', 'reparameterized', 'exact',
                                              'gumbel_softmax', 'straight_through',
                                              'score_function')
  monkeypatch.setitem(models.registry.BUILDERS, 'vae', lambda config, shape: nn.Dense(3))
  with pytest.raises(TypeError, match="'vae' built a Dense that lacks"):
    models.build_model(_model_config(), (4, 4, 1))


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


def test_gated_layers_are_linear_units_times_sigmoid_gates():
  mlp = networks.MLP((4,), activation='gated')
  x = jax.random.normal(jax.random.key(0), (3, 5))
  params = mlp.init(jax.random.key(1), x)
  kernel, bias = (params['params']['dense_0'][name] for name in ('kernel', 'bias'))
  assert kernel.shape == (5, 8)  # 4 values and 4 gates
  pre = x @ kernel + bias
  np.testing.assert_allclose(mlp.apply(params, x), pre[:, :4] * jax.nn.sigmoid(pre[:, 4:]),
                             rtol=1e-5)


def test_kernel_init_reaches_every_layer():
  config = _model_config()
  config.kernel_init = 'glorot_uniform'
  config.encoder.hidden_sizes = (200,)
  model = models.build_model(config, (28, 28, 1))
  kernel = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']['encoder'][
      'torso']['dense_0']['kernel']
  bound = np.sqrt(6 / (784 + 200))  # Glorot & Bengio's uniform limit
  assert np.abs(kernel).max() <= bound
  np.testing.assert_allclose(np.std(kernel), bound / np.sqrt(3), rtol=0.02)


@pytest.mark.slow
def test_bfloat16_computation_keeps_float32_parameters_and_likelihoods():
  config = _model_config()
  config.compute_dtype = 'bfloat16'
  model = models.build_model(config, (8, 8, 1))
  x = (jax.random.uniform(jax.random.key(1), (16, 8, 8, 1)) > 0.5).astype(jnp.float32)
  params = model.init(jax.random.key(0), x[:1])
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  terms = objectives.elbo_terms(model, params, x, jax.random.key(2), num_samples=4)
  assert all(value.dtype == jnp.float32 for value in terms.values())
  config.compute_dtype = 'float32'
  reference = objectives.elbo_terms(models.build_model(config, (8, 8, 1)), params, x,
                                    jax.random.key(2), num_samples=4)
  # The same parameters give nearly the same bound; bfloat16 has an 8-bit mantissa.
  np.testing.assert_allclose(terms['elbo'], reference['elbo'], rtol=0.02)
