"""vae_jax/networks.py: gated layers, kernel initialisers, bfloat16 computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import small_model_config as _model_config
from vae_jax import models, networks, objectives


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


def test_clipped_log_variance_encoder_bounds_the_posterior_scale():
  """log σ² = clip(W h + b, -6, 2) (the VampPrior code's hard tanh): σ from the layer's own
  numbers, and no gradient reaches a unit whose log-variance is clipped."""
  config = _model_config()
  config.encoder.log_variance_range = (-6.0, 2.0)
  model = models.build_model(config, (4, 4, 1))
  x = jax.random.uniform(jax.random.key(0), (5, 4, 4, 1))
  params = model.init(jax.random.key(1), x)
  encoder_params = params['params']['encoder']
  # Scale the layer so that some units land outside [-6, 2].
  encoder_params['log_variance']['kernel'] = encoder_params['log_variance']['kernel'] * 30.0
  hidden = networks.MLP(config.encoder.hidden_sizes, config.encoder.activation,
                        flatten_ndims=3).apply({'params': encoder_params['torso']}, x)
  raw = hidden @ encoder_params['log_variance']['kernel'] + encoder_params['log_variance']['bias']
  assert (raw < -6).any() and (raw > 2).any() and ((raw > -6) & (raw < 2)).any()
  posterior = model.apply(params, x, method=lambda m, x: m.encoder(x))
  np.testing.assert_allclose(posterior.scale, np.exp(0.5 * np.clip(raw, -6, 2)), rtol=1e-5)

  def total_log_scale(bias):
    changed = jax.tree.map(lambda v: v, params)
    changed['params']['encoder']['log_variance']['bias'] = bias
    return jnp.log(model.apply(changed, x, method=lambda m, x: m.encoder(x)).scale).sum()

  gradient = jax.grad(total_log_scale)(encoder_params['log_variance']['bias'])
  inside = ((raw > -6) & (raw < 2)).sum(0)  # examples per unit where the clip passes gradient
  np.testing.assert_allclose(gradient, 0.5 * inside, rtol=1e-6)


def test_the_precision_option_reaches_every_matrix_product_of_the_lowered_program():
  """`model.matmul_precision='highest'` must reach XLA's precision config (on GPUs 'default'
  means TF32 products, on TPUs bfloat16 passes); checked in the lowered program, since a CPU
  computes float32 products either way."""
  from configs import quickstart  # pylint: disable=import-outside-toplevel
  model = models.build_model(quickstart.get_config().model, (8, 8, 1))
  x = jnp.zeros((2, 8, 8, 1))
  params = model.init(jax.random.key(0), x)
  terms = jax.jit(lambda params, x: model.apply(params, x, jax.random.key(1),
                                                method='sample_log_weight_terms'))

  def lowered(name):
    with networks.matmul_precision(name):
      return terms.lower(params, x).as_text()

  highest, default = lowered('highest'), lowered('default')
  products = highest.count('stablehlo.dot_general')
  assert products >= 6 and highest.count('HIGHEST') >= products  # every product, both operands
  assert 'HIGHEST' not in default
