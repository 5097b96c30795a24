"""vae_jax/networks.py: gated layers (joint or separate kernels), kernel and bias initialisers,
bfloat16 computation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vampprior
from tests.helpers import small_model_config as _model_config
from vae_jax import models, networks, objectives, optimizers


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


def test_separate_gate_kernels_are_two_layers_h_times_sigmoid_g():
  """gate_kernels='separate' (the VampPrior code's GatedDense): two layers `h`, `g` of n units."""
  mlp = networks.MLP((4,), activation='gated', gate_kernels='separate')
  x = jax.random.normal(jax.random.key(0), (3, 5))
  params = mlp.init(jax.random.key(1), x)['params']
  assert set(params) == {'dense_0_h', 'dense_0_g'}
  assert params['dense_0_h']['kernel'].shape == params['dense_0_g']['kernel'].shape == (5, 4)
  h, g = (x @ params[name]['kernel'] + params[name]['bias'] for name in ('dense_0_h', 'dense_0_g'))
  np.testing.assert_allclose(mlp.apply({'params': params}, x), h * jax.nn.sigmoid(g), rtol=1e-5)


def test_normalized_gradients_treat_separate_gates_as_separate_tensors():
  """AdamNormGrad's division by the norm: each of h's and g's kernels has a unit-norm update with
  separate kernels; with one joint kernel only the whole has (its value half less)."""
  x = jax.random.normal(jax.random.key(0), (16, 5))
  normalize = optimizers.normalize_each_tensor()
  for gate_kernels in ('joint', 'separate'):
    mlp = networks.MLP((4,), activation='gated', gate_kernels=gate_kernels)
    params = mlp.init(jax.random.key(1), x)
    grads = jax.grad(lambda p: jnp.sum(mlp.apply(p, x) ** 2))(params)
    normalized, _ = normalize.update(grads, normalize.init(params), params)
    norms = {'/'.join(str(k.key) for k in path): float(np.linalg.norm(leaf))
             for path, leaf in jax.tree_util.tree_leaves_with_path(normalized)}
    expected = {name: np.linalg.norm(g) / (np.linalg.norm(g) + optimizers.GRADIENT_NORM_EPS)
                for name, g in zip(norms, jax.tree.leaves(grads))}
    np.testing.assert_allclose(list(norms.values()), list(expected.values()), rtol=1e-5)
    if gate_kernels == 'separate':
      assert len(norms) == 4  # h and g: kernel and bias each
    else:
      kernel = normalized['params']['dense_0']['kernel']
      assert np.linalg.norm(kernel[:, :4]) < 0.99  # the value half: only part of the unit norm


def test_torch_uniform_biases_lie_within_the_fan_in_bound_with_a_uniform_variance():
  """PyTorch's nn.Linear default: uniform(±1/√fan_in). Over n = 20,000 biases the sample
  variance of U(−c, c), c²/3, has a standard error of c²·√(4/45/n); the mean c/√(3n)."""
  fan_in, n = 784, 20_000
  mlp = networks.MLP((n // 2,), activation='gated', gate_kernels='separate',
                     bias_init='torch_uniform')
  params = mlp.init(jax.random.key(0), jnp.zeros((1, fan_in)))['params']
  biases = np.concatenate([params[name]['bias'] for name in ('dense_0_h', 'dense_0_g')])
  bound = 1 / np.sqrt(fan_in)
  assert np.abs(biases).max() <= bound
  assert np.abs(biases).max() > 0.99 * bound  # P(max < 0.99 c) = 0.995^20000: never
  assert abs(biases.mean()) < 4 * bound / np.sqrt(3 * n)
  assert abs(biases.var() - bound**2 / 3) < 4 * bound**2 * np.sqrt(4 / 45 / n)
  default = networks.MLP((3,)).init(jax.random.key(0), jnp.zeros((1, 5)))['params']['dense_0']
  assert not np.any(default['bias'])  # the default stays zero


def test_untruncated_he_normal_has_gaussian_tails():
  """The VampPrior code's he_init is normal(0, √(2/fan_in)) untruncated; Flax's he_normal draws a
  normal truncated at ±2 and rescales it to the same variance (÷ 0.8796), so no weight lies
  beyond t = 2/0.8796 σ, where a normal puts erfc(t/√2) = 2.3 % (binomial standard error
  0.017 % over 784·1000)."""
  shape, std = (784, 1000), np.sqrt(2 / 784)
  cut = 2 / 0.87962566103423978  # jax's truncated-normal rescaling
  gaussian_tail = math.erfc(cut / math.sqrt(2))
  for name, expected_tail in (('he_normal_untruncated', gaussian_tail), ('he_normal', 0.0)):
    weights = np.asarray(networks.get_kernel_init(name)(jax.random.key(0), shape))
    np.testing.assert_allclose(weights.std(), std, rtol=0.005)  # standard error 0.08 %
    tail = np.mean(np.abs(weights) > cut * std)
    assert abs(tail - expected_tail) < 4 * math.sqrt(gaussian_tail / weights.size)


def test_the_vampprior_config_gives_every_dense_layer_torch_biases_and_separate_gates():
  config = vampprior.get_config('standard').model
  model = models.build_model(config, (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']
  layers = [leaf for _, leaf in jax.tree_util.tree_flatten_with_path(
      params, is_leaf=lambda node: isinstance(node, dict) and 'bias' in node)[0]]
  assert len(layers) == 11  # 2 × 2 gated layers × (h, g), the mean and log-variance heads, output
  for layer in layers:
    bound = 1 / np.sqrt(layer['kernel'].shape[0])
    assert 0 < np.abs(layer['bias']).max() <= bound


# Computed before the options existed (commit 65e2302) by the same code: the parameters' sum of
# |values| and a 2-sample ELBO of 4 images, for configs/vampprior.py:standard as it was then.
BEFORE_THE_OPTIONS = (65497.303955078125, [-736.0968017578125, -680.8278198242188,
                                           -658.8220825195312, -682.0307006835938])


def test_with_the_options_off_the_vampprior_model_is_the_one_before_them():
  config = vampprior.get_config('standard').model
  config.kernel_init = 'he_normal'
  for part in (config.encoder, config.decoder):
    part.gate_kernels, part.bias_init = 'joint', 'zeros'
  model = models.build_model(config, (28, 28, 1))
  x = (jax.random.uniform(jax.random.key(3), (4, 28, 28, 1)) > 0.5).astype(jnp.float32)
  params = model.init(jax.random.key(0), x[:1])
  torso = params['params']['encoder']['torso']
  assert set(torso) == {'dense_0', 'dense_1'} and torso['dense_0']['kernel'].shape == (784, 600)
  elbo = objectives.elbo_terms(model, params, x, jax.random.key(2), num_samples=2,
                               analytic_kl=False)['elbo']
  total = sum(float(jnp.abs(leaf).sum()) for leaf in jax.tree.leaves(params))
  np.testing.assert_allclose(total, BEFORE_THE_OPTIONS[0], rtol=1e-6)
  np.testing.assert_allclose(elbo, BEFORE_THE_OPTIONS[1], rtol=1e-5)
