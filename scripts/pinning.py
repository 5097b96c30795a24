"""Pins a benchmark to `threads` cores with one XLA thread each; call before JAX's backend starts
(its first computation reads XLA_FLAGS), and before numpy is imported for BLAS to see it too."""

import os


def pin_threads(threads: int) -> None:
  """0: no pinning (all cores; on an accelerator, the accelerator)."""
  if not threads:
    return
  os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_multi_thread_eigen=false'
                             f' intra_op_parallelism_threads={threads}')
  for variable in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ[variable] = str(threads)
