r"""Step time, compile time, parameters and compiled memory of the top-down configs, with and
without rematerialisation.

  python -m scripts.benchmark_top_down                          # every variant, 1 pinned core
  python -m scripts.benchmark_top_down --variants=cifar10 --steps=0   # memory only
  python -m scripts.benchmark_top_down --threads=0              # all cores / an accelerator
  taskset -c 0 python -m scripts.benchmark_top_down --variants=cifar10,mnist --remat=false \
      --steps=1                                                 # compile times, old vs new
  python -m scripts.benchmark_top_down --variants=mnist --remat=false --levels=none,2
                                      # LLVM's level on XLA:CPU: XLA's own (3) against the config's

Prints one JSON line per (variant, remat, scan, level): the seconds to build the model and its
fresh state (`init_seconds`: one compiled `model.init`), to trace and lower the training step
(`lower_seconds`) and to compile it (`compile_seconds`), and their sum (`startup_seconds`);
parameters; the train step's compiled memory from XLA's memory analysis (`temp_mb`:
activations and other temporaries; `argument_mb`, `output_mb`: state and batch, the same with
or without remat), at the config's batch size on random data of the config's shape; and, with --steps, the median seconds per step and the
examples per second (compile time apart).
"""

import json
import resource
import sys
import time

from absl import flags

from scripts import pinning, timing

flags.DEFINE_integer('threads', 1, 'Pin to this many cores with one XLA thread each (0: no '
                     'pinning).')
flags.DEFINE_list('variants', ['mnist_small', 'mnist', 'mnist_8bit', 'cifar10_small', 'cifar10'],
                  'Variants of configs/top_down.py.')
flags.DEFINE_integer('steps', 3, 'Timed steps per variant (0: memory only).')
flags.DEFINE_list('remat', ['false', 'true'], 'Rematerialisation settings to measure.')
flags.DEFINE_list('scan', [], "model.top_down.scan settings to measure ('true', 'false'); empty: "
                  "the config's (and code from before the option: PYTHONPATH=<old checkout>).")
flags.DEFINE_list('levels', [], "cpu_optimization_level settings to measure ('3', '2', ...; "
                  "'none': XLA's own); empty: the config's.")
FLAGS = flags.FLAGS
FLAGS(sys.argv)  # parsed before jax is imported: the thread settings must precede it

pinning.pin_threads(FLAGS.threads)  # must precede importing jax

# pylint: disable=wrong-import-position
import jax
import numpy as np

from configs import top_down
from vae_jax.engine import steps

MB = 2**20


def measure(variant: str, remat: bool, scan: str, level: str) -> dict:
  config = top_down.get_config(variant)
  config.model.top_down.remat = remat
  if level:
    config.cpu_optimization_level = None if level == 'none' else int(level)
  if scan:
    config.model.top_down.scan = scan == 'true'

  shape = (28, 28, 1) if variant.startswith('mnist') else (32, 32, 3)
  start = time.perf_counter()
  state, step, hyperparams = steps.standalone_step(config, shape)
  jax.block_until_ready(state)
  init = time.perf_counter()
  images = np.round(np.random.default_rng(0).uniform(size=(config.batch_size, *shape)) * 255) / 255
  lowered = step.lower(state, images, jax.random.key(1), hyperparams)
  lower = time.perf_counter()
  compiled = lowered.compile()
  end = time.perf_counter()
  result = {'benchmark': 'top_down_step', 'variant': variant, 'remat': remat,
            'scan': config.model.top_down.get('scan'),
            'cpu_optimization_level': config.get('cpu_optimization_level'),
            'batch_size': config.batch_size,
            'parameters': int(sum(x.size for x in jax.tree.leaves(state.params))),
            'init_seconds': init - start, 'lower_seconds': lower - init,
            'compile_seconds': end - lower, 'startup_seconds': end - start}
  memory = compiled.memory_analysis()
  if memory is not None:
    result.update(temp_mb=memory.temp_size_in_bytes / MB,
                  argument_mb=memory.argument_size_in_bytes / MB,
                  output_mb=memory.output_size_in_bytes / MB)
  if FLAGS.steps:
    holder = {'state': state}

    def step_with_key(index):  # the warm-up (index None) with key 1, as before
      holder['state'], metrics = compiled(holder['state'], images,
                                          jax.random.key(1 if index is None else index),
                                          hyperparams)
      return holder['state'], metrics

    _, seconds = timing.seconds_of_calls(step_with_key, FLAGS.steps)
    seconds = float(np.median(seconds))
    result.update(seconds_per_step=seconds, examples_per_sec=config.batch_size / seconds)
  return result


def main():
  for variant in FLAGS.variants:
    for remat in FLAGS.remat:
      for scan in FLAGS.scan or ['']:
        for level in FLAGS.levels or ['']:
          result = measure(variant, remat == 'true', scan, level)
          result.update(device=jax.devices()[0].device_kind, threads=FLAGS.threads,
                        peak_host_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
          print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main()
