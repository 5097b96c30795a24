r"""Seconds per training step of any config, compiled, on random data of the config's shape.

  python -m scripts.step_time --config=configs/vampprior.py:vamp
  python -m scripts.step_time --config=configs/mnist.py --config.batch_size=500 --steps=200
  python -m scripts.step_time --config=configs/top_down.py:mnist --threads=0 --steps=3
  python -m scripts.step_time --config=configs/images.py:32 --data_shape=32,32,3   # no folder

The step is the one training runs (`steps.standalone_step`: the config's model, objective,
optimizer and compiler options), on one fixed batch of random 8-bit values k/255 (the data's
shape as its source declares it, or `--data_shape` for a folder or file that is not at hand:
no data is read). Prints one JSON line: the seconds to build
the state, to compile, the median of `--steps` timed steps after a warm-up, examples per second
and XLA's FLOPs per step. `--threads=1` (the default) pins one core with one XLA thread, so
that figures from one session compare; 0 uses every core (or the accelerator).

`--profile=N` then traces `--steps` more steps (`jax.profiler`) and prints the N kernels that
took the most time, a JSON line each: milliseconds a step, share of the step, and the JAX
operation the kernel computes (from the compiled program's metadata). A kernel far above its
share of the FLOPs is where to look (docs/results/speed.md: a VampPrior gradient, the
convolutions' gradients).
"""

import collections
import glob
import gzip
import json
import re
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from scripts import pinning, timing
from vae_jax import data
from vae_jax.engine import steps as train_steps

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A config file[:variant].',
                                          lock_config=True)
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps, after one warm-up step.')
_THREADS = flags.DEFINE_integer('threads', 1, 'Cores to pin, one XLA thread each (0: all).')
_PROFILE = flags.DEFINE_integer('profile', 0, 'Also print this many of the costliest kernels.')
_DATA_SHAPE = flags.DEFINE_list('data_shape', None, "One example's shape, e.g. 32,32,3 "
                                '(default: as the data source declares it).')
flags.mark_flags_as_required(['config'])


def kernel_seconds(trace_events: list[dict]) -> collections.Counter:
  """Seconds per kernel name in a Perfetto trace's complete events, leaving out the runtime's
  own spans (its executors, the dispatch of a jitted function, the Python functions JAX
  records, named with a '$')."""
  seconds = collections.Counter()
  for event in trace_events:
    name = event.get('name', '')
    if (event.get('ph') == 'X' and 'Execute' not in name and not name.startswith('$')
        and not name.startswith('PjitFunction')):
      seconds[name] += event.get('dur', 0) / 1e6
  return seconds


def operations(hlo_text: str) -> dict[str, str]:
  """{instruction name: the JAX operation in its metadata} of a compiled program's text."""
  pattern = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = .*?op_name="([^"]*)"', re.MULTILINE)
  return {name: op for name, op in pattern.findall(hlo_text)}


def profile(call, count: int, hlo_text: str, top: int) -> list[dict]:
  """The `top` kernels by time over `count` calls of `call`, traced."""
  with tempfile.TemporaryDirectory() as folder:
    jax.profiler.start_trace(folder, create_perfetto_trace=True)
    for index in range(count):
      jax.block_until_ready(call(index))
    jax.profiler.stop_trace()
    [path] = glob.glob(f'{folder}/plugins/profile/*/perfetto_trace.json.gz')
    with gzip.open(path) as file:
      trace = json.load(file)
  seconds = kernel_seconds(trace['traceEvents'] if isinstance(trace, dict) else trace)
  total, ops = sum(seconds.values()), operations(hlo_text)
  return [{'kernel': name, 'ms_per_step': 1000 * value / count, 'share': value / total,
           'op': ops.get(name, '')} for name, value in seconds.most_common(top)]


def data_shape(config) -> tuple[int, ...]:
  """`--data_shape`, else the shape the config's data source declares without reading data."""
  if _DATA_SHAPE.value:
    return tuple(int(size) for size in _DATA_SHAPE.value)
  try:
    shape = data.declared_shape(config.data)
  except data.DataError as error:  # a folder or file source reads its data to know the shape
    shape, reason = None, f'{error} '
  else:
    reason = ''
  if shape is None:
    raise app.UsageError(f'{reason}step_time reads no data, and the source of '
                         f'data.name={config.data.name!r} needs its data to tell the shape: give '
                         'it as --data_shape=H,W,C.')
  return tuple(shape)


def measure(config, steps: int, top: int = 0) -> tuple[dict, list[dict]]:

  shape = data_shape(config)
  start = time.perf_counter()
  state, step, hyperparams = train_steps.standalone_step(config, tuple(shape))
  jax.block_until_ready(state)
  built = time.perf_counter()
  uniform = np.random.default_rng(0).uniform(size=(config.batch_size, *shape))
  images = (np.round(uniform * 255) / 255).astype(np.float32)  # 8-bit values, as images load
  compiled = step.lower(state, images, jax.random.key(1), hyperparams).compile()
  compiled_at = time.perf_counter()
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, list) else cost) or {}
  holder = {'state': state}

  def one_step(index):
    key = jax.random.key(0 if index is None else index + 1)
    holder['state'], metrics = compiled(holder['state'], images, key, hyperparams)
    return holder['state'], metrics

  _, seconds = timing.seconds_of_calls(one_step, steps)
  median = float(np.median(seconds))
  kernels = profile(one_step, steps, compiled.as_text(), top) if top else []
  return {'batch_size': config.batch_size, 'data_shape': list(shape),
          'init_seconds': built - start, 'compile_seconds': compiled_at - built,
          'seconds_per_step': median, 'examples_per_sec': config.batch_size / median,
          'xla_flops_per_step': cost.get('flops'), 'steps': steps,
          'device': jax.devices()[0].device_kind}, kernels


def main(argv):
  del argv
  pinning.pin_threads(_THREADS.value)  # before JAX's backend starts, which reads XLA_FLAGS
  result, kernels = measure(_CONFIG.value, _STEPS.value, _PROFILE.value)
  config = config_flags.get_config_filename(flags.FLAGS['config'])
  print(json.dumps({'benchmark': 'step_time', 'config': config, 'threads': _THREADS.value,
                    **result}), flush=True)
  for kernel in kernels:
    print(json.dumps({'benchmark': 'step_time_kernel', 'config': config, **kernel}), flush=True)


if __name__ == '__main__':
  app.run(main)
