"""A run's `cpu_optimization_level` reaches XLA:CPU's compiler, which computes the same numbers at
the levels the configs use; and it is nothing on another backend."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import compiler_options


def _conv_block(x, kernel):
  h = jax.lax.conv_general_dilated(jax.nn.gelu(x), kernel, (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return jnp.sum(jnp.tanh(h) ** 2 + jnp.exp(-h * h))


def test_each_level_compiles_and_levels_1_to_3_give_the_same_bits():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
  kernel = rng.normal(size=(3, 3, 4, 4)).astype(np.float32)
  grad = jax.grad(_conv_block, argnums=(0, 1))
  results = {}
  for level in (None, *compiler_options.LEVELS):
    options = compiler_options.for_level(level)
    assert options == ({} if level is None else {'xla_backend_optimization_level': level})
    # XLA refuses an option it does not know: this compiles only if the name is XLA's.
    results[level] = jax.jit(grad, compiler_options=options)(x, kernel)
  for level in (1, 2, 3):
    for a, b in zip(results[level], results[None]):
      np.testing.assert_array_equal(a, b)
  # Level 0's code rounds differently (by up to 5e-6 here; where in LLVM's code generation was
  # not examined), one reason no config uses it.
  for a, b in zip(results[0], results[None]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_an_unknown_compiler_option_is_refused_by_xla():
  # What the test above relies on: a misspelt option is an error, not silently ignored.
  with pytest.raises(Exception, match='xla_backend_optimisation_level'):
    jax.jit(jnp.sin, compiler_options={'xla_backend_optimisation_level': 2})(1.0)


def test_the_level_is_for_xla_cpu_only(monkeypatch):
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert compiler_options.for_level(2) == {}
  monkeypatch.setattr(jax, 'default_backend', lambda: 'cpu')
  assert compiler_options.for_level(2) == {'xla_backend_optimization_level': 2}
