"""2-D convolutions whose gradients XLA:CPU runs at its matrix-product speed.

JAX's transpose rules write a convolution's two gradients as convolutions in other dimension
orders than NHWC/HWIO, with the kernel reversed by a flag. XLA:CPU runs a convolution with
Eigen only in the NHWC/HWIO order without reversal; it puts the other orders back in that order
in straight-line code, but not always (never inside a loop body, such as a scan's; and not for a
strided convolution's kernel gradient), and then falls back to a generic loop 10 to 100 times
slower: `configs/mnist.py:conv`'s step took 2 s inside the launcher's scan, 1 s of it one kernel
gradient (docs/results/speed.md). `conv_general_dilated` here is a drop-in for
`jax.lax.conv_general_dilated` (`nn.Conv(..., conv_general_dilated=...)`) that, on the CPU,
gives NHWC/HWIO convolutions a hand-written VJP whose gradients are plain NHWC/HWIO
convolutions, kernels flipped and transposed by hand, and computes 1×1 ones as matrix products;
`ConvTranspose` is `nn.ConvTranspose` (the same parameters) built on it. Elsewhere (GPU, TPU)
both are JAX's own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import dtypes

NHWC = ('NHWC', 'HWIO', 'NHWC')

Pads = tuple[tuple[int, int], ...]


def _dilated(size: int, dilation: int) -> int:
  return 0 if size == 0 else 1 + dilation * (size - 1)


@jax.custom_vjp
def _pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A 1×1, stride-1, unpadded convolution of NHWC images by a `[1, 1, C, O]` kernel, as the
  matrix product it is (a custom VJP, so that a scan body's `dots_saveable` policy recomputes
  it as it does the convolutions, instead of keeping every output: 69 % more memory)."""
  return jnp.einsum('bhwc,co->bhwo', x, kernel[0, 0])


def _pointwise_conv_forward(x, kernel):
  return _pointwise_conv(x, kernel), (x, kernel)


def _pointwise_conv_backward(saved, grad):
  x, kernel = saved
  dx = jnp.einsum('bhwo,co->bhwc', grad, kernel[0, 0])
  dkernel = jnp.einsum('bhwc,bhwo->co', x, grad)
  return dx, dkernel[None, None].astype(kernel.dtype)


_pointwise_conv.defvjp(_pointwise_conv_forward, _pointwise_conv_backward)


def _conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: Pads,
          lhs_dilation: tuple[int, int]) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, strides, pads, lhs_dilation,
                                      dimension_numbers=NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _nhwc_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: Pads,
               lhs_dilation: tuple[int, int]) -> jax.Array:
  """An NHWC/HWIO convolution (any strides, explicit padding, input dilation) whose gradients
  are NHWC/HWIO convolutions too: JAX's transpose rules, in the order Eigen runs."""
  return _conv(x, kernel, strides, pads, lhs_dilation)


def _nhwc_conv_forward(x, kernel, strides, pads, lhs_dilation):
  return _conv(x, kernel, strides, pads, lhs_dilation), (x, kernel)


def _nhwc_conv_backward(strides, pads, lhs_dilation, saved, grad):
  x, kernel = saved
  sizes = [(_dilated(x.shape[1 + i], lhs_dilation[i]), kernel.shape[i],
            _dilated(grad.shape[1 + i], strides[i]), pads[i][0]) for i in range(2)]
  # The input's gradient: the output's gradient convolved with the flipped kernel, its input
  # and output channels swapped (jax.lax's _conv_general_vjp_lhs_padding).
  dx_pads = tuple((size - low - 1, inputs + size - 1 - outputs - (size - low - 1))
                  for inputs, size, outputs, low in sizes)
  flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
  dx = _conv(grad, flipped, lhs_dilation, dx_pads, strides)
  dkernel = _kernel_gradient(x, kernel.shape, grad, strides, pads, lhs_dilation, sizes)
  return dx, dkernel.astype(kernel.dtype)


def _kernel_gradient(x, kernel_shape, grad, strides, pads, lhs_dilation, sizes):
  """`dkernel[i, j, c, o] = Σ_{b,h,w} x_dilated_padded[b, s·h + i, s·w + j, c] grad[b, h, w, o]`."""
  transposed_pads = tuple((size - 1 - low, size - 1 - high)
                          for size, (low, high) in zip(kernel_shape[:2], pads))
  if strides == (1, 1) and lhs_dilation != (1, 1) and min(min(transposed_pads)) >= 0:
    # A transposed convolution's (input dilated, stride 1): as the gradient convolved with the
    # input dilated as a kernel, the kernel's spatial axes reversed. The other form below has
    # an input dilation, which XLA:CPU rewrites into a reversed-kernel convolution that runs
    # in its generic loop (0.33 s of `mnist.py:conv`'s 0.53 s step on one core).
    flipped = jax.lax.conv_general_dilated(
        jnp.transpose(grad, (3, 1, 2, 0)), jnp.transpose(x, (1, 2, 0, 3)), (1, 1),
        transposed_pads, None, lhs_dilation, dimension_numbers=NHWC)  # [O, kh, kw, C]
    return jnp.transpose(flipped[:, ::-1, ::-1], (1, 2, 3, 0))
  # The input, channels as its batch, convolved with the output's gradient, batch as its input
  # channels (jax.lax's _conv_general_vjp_rhs_padding).
  dkernel_pads = tuple((low, outputs - inputs + size - low - 1)
                       for inputs, size, outputs, low in sizes)
  dkernel = jax.lax.conv_general_dilated(
      jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(grad, (1, 2, 0, 3)), (1, 1), dkernel_pads,
      lhs_dilation, strides, dimension_numbers=NHWC)
  return jnp.transpose(dkernel, (1, 2, 0, 3))


_nhwc_conv.defvjp(_nhwc_conv_forward, _nhwc_conv_backward)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None):
  """`jax.lax.conv_general_dilated`; on XLA:CPU, a 2-D NHWC/HWIO convolution (no kernel
  dilation, one feature group) takes `_nhwc_conv`'s gradients, and a 1×1 one is a matrix
  product (the top-down `mnist` step 9–19 % faster than Eigen's convolution)."""
  ones = (1,) * (lhs.ndim - 2)
  strides, lhs_dilation = tuple(window_strides), tuple(lhs_dilation or ones)
  if not (jax.default_backend() == 'cpu' and lhs.ndim == 4 and feature_group_count == 1
          and precision is None and tuple(rhs_dilation or ones) == ones
          and not (isinstance(padding, str) and lhs_dilation != ones)  # JAX refuses it
          and dimension_numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)):
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                        rhs_dilation, dimension_numbers, feature_group_count,
                                        precision=precision)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
  pads = tuple((int(low), int(high)) for low, high in padding)
  if rhs.shape[:2] == (1, 1) and strides == lhs_dilation == ones and pads == ((0, 0),) * 2:
    return _pointwise_conv(lhs, rhs)
  return _nhwc_conv(lhs, rhs, strides, pads, lhs_dilation)


def transpose_pads(kernel_size: Sequence[int], strides: Sequence[int], padding: str) -> Pads:
  """The padding `jax.lax.conv_transpose` gives its input-dilated convolution, for 'SAME' or
  'VALID' (jax.lax's `_conv_transpose_padding`)."""
  pads = []
  for k, s in zip(kernel_size, strides):
    if padding == 'SAME':
      total, before = k + s - 2, (k - 1 if s > k - 1 else -(-(k + s - 2) // 2))
    elif padding == 'VALID':
      total, before = k + s - 2 + max(k - s, 0), k - 1
    else:
      raise ValueError(f"padding must be 'SAME' or 'VALID', not {padding!r}.")
    pads.append((before, total - before))
  return tuple(pads)


class ConvTranspose(nn.Module):
  """`nn.ConvTranspose` (its parameters, their shapes and initialisers; the kernel not
  transposed, no kernel dilation) on NHWC images, by `conv_general_dilated` above."""

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: str = 'SAME'
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
    x, kernel, bias = dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    batch_shape = x.shape[:-3]
    y = conv_general_dilated(x.reshape((-1, *x.shape[-3:])), kernel, (1, 1),
                             transpose_pads(self.kernel_size, self.strides, self.padding),
                             lhs_dilation=self.strides,
                             dimension_numbers=jax.lax.conv_dimension_numbers(
                                 (1, 1, 1, 1), kernel.shape, NHWC))
    return y.reshape((*batch_shape, *y.shape[1:])) + bias
