"""vae_jax.convolutions: the CPU convolutions' values and gradients against JAX's own, the
transposed convolution against Flax's, and the compiled gradients in the order XLA:CPU runs
fast."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import assert_trees_close
from vae_jax import convolutions, networks

# (kernel, strides, padding, input dilation, image height and width): 1×1; the top-down blocks'
# odd 'SAME' kernels; even and non-square ones; the conv encoder's strided convolutions; the
# decoder's transposed ones (input dilation 2, padded as jax.lax.conv_transpose pads them);
# both at once; odd and even images.
_CASES = [
    ((1, 1), (1, 1), 'SAME', (1, 1), (7, 6)),
    ((3, 3), (1, 1), 'SAME', (1, 1), (7, 6)),
    ((3, 5), (1, 1), 'SAME', (1, 1), (8, 6)),
    ((4, 4), (1, 1), 'SAME', (1, 1), (7, 6)),
    ((3, 3), (2, 2), 'SAME', (1, 1), (8, 6)),
    ((3, 3), (2, 2), 'SAME', (1, 1), (7, 6)),
    ((4, 4), (2, 2), 'VALID', (1, 1), (8, 6)),
    ((3, 5), (1, 2), ((1, 0), (2, 1)), (1, 1), (7, 6)),
    ((1, 1), (2, 2), 'VALID', (1, 1), (8, 6)),
    ((3, 3), (1, 1), ((2, 1), (2, 1)), (2, 2), (7, 6)),
    ((3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2), (8, 6)),
    ((4, 4), (1, 1), ((2, 3), (1, 0)), (2, 2), (7, 6)),
    ((3, 3), (1, 1), ((3, 1), (0, 0)), (2, 2), (7, 6)),  # a padding beyond the kernel
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (2, 2), (8, 6)),
]


@pytest.mark.parametrize('kernel_size, strides, padding, lhs_dilation, image', _CASES)
def test_the_value_and_both_gradients_are_jaxs_own(kernel_size, strides, padding, lhs_dilation,
                                                   image):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, *image, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(*kernel_size, 3, 4)), jnp.float32)
  numbers = jax.lax.conv_dimension_numbers(x.shape, kernel.shape, convolutions.NHWC)
  conv_of = lambda conv: lambda x, k: conv(x, k, strides, padding, lhs_dilation, None, numbers)
  if isinstance(padding, str) and lhs_dilation != (1, 1):  # JAX refuses it, and so do we
    for conv in (jax.lax.conv_general_dilated, convolutions.conv_general_dilated):
      with pytest.raises(ValueError, match='String padding'):
        conv_of(conv)(x, kernel)
    return
  shape = conv_of(jax.lax.conv_general_dilated)(x, kernel).shape
  weights = jnp.asarray(rng.normal(size=shape), jnp.float32)  # a cotangent other than ones
  loss_of = lambda conv: lambda x, k: jnp.sum(weights * conv_of(conv)(x, k))
  ours = jax.value_and_grad(loss_of(convolutions.conv_general_dilated), argnums=(0, 1))(x, kernel)
  theirs = jax.value_and_grad(loss_of(jax.lax.conv_general_dilated), argnums=(0, 1))(x, kernel)
  assert_trees_close(ours, theirs, rtol=1e-5, atol=1e-5)
  # On a CPU the hand-written gradient is the one taken; a 1×1 convolution is a matrix product.
  program = str(jax.make_jaxpr(conv_of(convolutions.conv_general_dilated))(x, kernel))
  assert 'custom_vjp' in program
  pointwise = kernel_size == (1, 1) and strides == lhs_dilation == (1, 1)
  assert ('dot_general' in program, 'conv_general_dilated' in program) == (
      pointwise, not pointwise)


@pytest.mark.parametrize('strides, padding', [((2, 2), 'SAME'), ((2, 2), 'VALID'),
                                               ((1, 1), 'SAME'), ((3, 2), 'SAME')])
def test_the_transposed_convolution_is_flaxs_parameters_values_and_gradients(strides, padding):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 2, 7, 6, 3)), jnp.float32)
  ours = convolutions.ConvTranspose(4, (3, 3), strides, padding)
  theirs = nn.ConvTranspose(4, (3, 3), strides, padding)
  params = theirs.init(jax.random.key(0), x)
  assert_trees_close(ours.init(jax.random.key(0), x), params, rtol=0, atol=0)  # the same draws
  params = jax.tree.map(lambda p: p + 0.1, params)  # a bias other than zero
  loss_of = lambda module: lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))
  assert_trees_close(jax.value_and_grad(loss_of(ours), argnums=(0, 1))(params, x),
               jax.value_and_grad(loss_of(theirs), argnums=(0, 1))(params, x),
               rtol=1e-5, atol=1e-4)


def test_a_conv_nets_gradients_compile_to_convolutions_xla_cpu_runs_with_eigen():
  # XLA:CPU runs a convolution fast only in the NHWC/HWIO order and without a reversed kernel;
  # JAX's own gradients of the strided and transposed convolutions of a conv encoder and
  # decoder compiled, inside a scan, to other orders (2 s a step for configs/mnist.py:conv,
  # against 0.11 s now).
  encoder = networks.ConvEncoderTorso(channels=(8, 16), hidden_sizes=(32,))
  decoder = networks.ConvDecoderNet(output_shape=(28, 28, 1), channels=(16, 8))
  x = jnp.zeros((4, 28, 28, 1))
  params = (encoder.init(jax.random.key(0), x), decoder.init(jax.random.key(1), jnp.zeros((4, 5))))

  def loss(params, x):
    features = encoder.apply(params[0], x)
    return jnp.sum(decoder.apply(params[1], features[:, :5]) ** 2)

  def steps(params, x):
    return jax.lax.scan(lambda p, _: (jax.tree.map(lambda a, g: a - 1e-3 * g, p,
                                                   jax.grad(loss)(p, x)), None),
                        params, None, length=2)[0]

  program = jax.jit(steps).lower(params, x).compile().as_text()
  convolutions_compiled = re.findall(r'= f32\[[^\]]*\]\S* convolution\([^\n]*', program)
  assert len(convolutions_compiled) >= 10  # 2 encoder and 3 decoder layers: forward, gradients
  for line in convolutions_compiled:
    assert 'dim_labels=b01f_01io->b01f' in line and 'reversal' not in line, line
