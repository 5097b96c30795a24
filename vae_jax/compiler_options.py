"""`jax.jit`'s compiler options for a run's programs: LLVM's optimisation level on XLA:CPU.

XLA:CPU compiles each fused kernel with LLVM at level 3 unless told otherwise. The top-down
family's training step has some two thousand kernels: at level 2 it compiles 20 % (cifar10) to
37 % (mnist) faster, runs as fast and gave the same bits in our tests; the MLP's step runs about
8 % slower at 2 (docs/results/speed.md). Hence a run option, `cpu_optimization_level`, which
configs/top_down.py sets to 2 and which is left to XLA elsewhere; the engine passes it to the
model's init and the training programs, the evaluators to theirs (`evaluators/batched.py`). It
has no effect on other backends: their code generators are not measured here.
"""

from __future__ import annotations

import jax

OPTIMIZATION_LEVEL = 'xla_backend_optimization_level'  # XLA's DebugOptions field
LEVELS = (0, 1, 2, 3)


def for_level(level: int | None) -> dict:
  """`compiler_options` that compile at LLVM level `level` on XLA:CPU; {} for None (XLA's own
  level) or another backend."""
  if level is None or jax.default_backend() != 'cpu':
    return {}
  return {OPTIMIZATION_LEVEL: int(level)}


def for_run(config) -> dict:
  """The run's `compiler_options` (its `cpu_optimization_level`)."""
  return for_level(getattr(config, 'cpu_optimization_level', None))
