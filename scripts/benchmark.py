r"""Training and evaluation throughput, against the machine's own matmul rate.

  python -m scripts.benchmark                  # one thread pinned to one core (repeatable)
  python -m scripts.benchmark --threads=0      # all cores; on an accelerator, the accelerator

Prints one JSON line per measurement. The model is the 784-400-20 MLP VAE (tanh, Bernoulli
logits, closed-form KL, Adam) at batch 128 on MNIST-sized random images, binarised dynamically
inside the step:
  matmul_rate          the best of a few float32 matmuls at this model's layer shapes (FLOP/s)
  train_flops          the model's matmul FLOPs per training example (forward, and backward
                       to weights and to every activation but the input), and XLA's count
  host_loop            one jitted step per batch fed from the host (input_pipeline='host')
  device_scan          steps in a compiled lax.scan on device-resident data ('device')
  sweep_N              N models vmapped in one program (examples/s summed over the models)
  sweep_map_N          N models looped (lax.map) in one program: the other sweep_execution
  iwae_eval            importance-sampled log p(x) with k = 5000, images per second
  streaming            the host-fed step on a synthetic TFDS dataset (scripts/synthetic_tfds.py)
                       of each --streaming_records size, read into memory ('host') or streamed
                       by grain ('grain'): examples/s and the process's peak host memory, each
                       measured in a fresh process
Each throughput is also given as `fraction_of_matmul_bound`: examples/s × FLOPs per example /
matmul FLOP/s. Medians over --repeats; compile times are reported separately.
"""

import json
import os
import resource
import subprocess
import sys
import time

from absl import flags

from scripts import pinning, timing

flags.DEFINE_integer('threads', 1, 'Pin to this many cores with one XLA thread each (0: no '
                     'pinning).')
flags.DEFINE_integer('repeats', 5, 'Timed repetitions per measurement.')
flags.DEFINE_integer('steps', 200, 'Training steps per timed repetition.')
flags.DEFINE_string('sweep_sizes', '1,4,16', 'Vectorised sweep sizes.')
flags.DEFINE_integer('eval_images', 20, 'Images in the IWAE evaluation.')
flags.DEFINE_string('only', '', 'Comma-separated measurements to run (default all).')
flags.DEFINE_string('streaming_records', '60000,360000',
                    'Training records of the synthetic datasets of the streaming measurement.')
flags.DEFINE_string('streaming_data_root', '/tmp/vae_jax_synthetic_tfds',
                    'Where the synthetic datasets are prepared (once; reused after).')
flags.DEFINE_enum('input_child', None, ['host', 'grain'],
                  'Internal: measure one input pipeline on --input_child_data_dir and exit.')
flags.DEFINE_string('input_child_data_dir', None, 'Internal: see --input_child.')
FLAGS = flags.FLAGS
FLAGS(sys.argv)  # parsed before jax is imported: the thread settings must precede it

pinning.pin_threads(FLAGS.threads)  # must precede importing jax

# pylint: disable=wrong-import-position
import functools

import jax
import jax.numpy as jnp
import numpy as np

from configs import default
from vae_jax import models, optimizers
from vae_jax.engine import runners, steps
from vae_jax.evaluators import batched, importance_sampling

BATCH_SIZE, DATA_SHAPE, HIDDEN, LATENT = 128, (28, 28, 1), 400, 20


def emit(name: str, **values) -> None:
  print(json.dumps({'benchmark': name, **values, 'device': jax.devices()[0].device_kind,
                    'threads': FLAGS.threads or os.cpu_count()}), flush=True)


def timed(fn, repeats: int) -> tuple[float, float]:
  """(seconds of the first call, median seconds of the next `repeats` calls)."""
  first, seconds = timing.seconds_of_calls(lambda _: fn(), repeats)
  return first, float(np.median(seconds))


def matmul_rate() -> float:
  """The best FLOP/s of float32 matmuls shaped like this model's layers (and a square one)."""
  best = 0.0
  for m, k, n in ((BATCH_SIZE, 784, HIDDEN), (BATCH_SIZE, HIDDEN, 784), (HIDDEN, BATCH_SIZE, 784),
                  (1024, 1024, 1024)):
    a = jax.random.normal(jax.random.key(0), (m, k))
    b = jax.random.normal(jax.random.key(1), (k, n))
    repeat = max(1, int(2e9 // (2 * m * k * n)))  # about 2 GFLOP per timed call

    @jax.jit
    def many(a, b, repeat=repeat):
      return jax.lax.fori_loop(0, repeat, lambda i, acc: acc + (a + i) @ b,
                               jnp.zeros((m, n), a.dtype))

    _, seconds = timed(lambda: many(a, b), FLAGS.repeats)
    rate = 2 * m * k * n * repeat / seconds
    emit('matmul', shape=[m, k, n], flops_per_sec=rate)
    best = max(best, rate)
  return best


def model_config():
  config = default.get_config()
  config.model.latent_dim = LATENT
  for part in (config.model.encoder, config.model.decoder):
    part.update(kind='mlp', hidden_sizes=(HIDDEN,), activation='tanh')
  config.batch_size = BATCH_SIZE
  return config


def matmul_flops_per_example() -> int:
  """Training matmul FLOPs per example: forward (all layers), backward to the weights (all
  layers) and to the activations (all layers but the first, whose input needs no gradient)."""
  layers = [784 * HIDDEN, HIDDEN * 2 * LATENT, LATENT * HIDDEN, HIDDEN * 784]  # MACs
  return 2 * (2 * sum(layers) + sum(layers[1:]))


def peak_rss_mb() -> float:
  """This process's peak resident memory: VmHWM, which (unlike ru_maxrss) starts afresh at
  exec instead of carrying over the parent's peak."""
  with open('/proc/self/status', encoding='ascii') as status:
    for line in status:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) / 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def input_pipeline_child(pipeline: str, data_dir: str) -> None:
  """Trains --steps steps fed by `pipeline` from the synthetic dataset in `data_dir`; emits the
  examples/s and this process's peak host memory."""
  from vae_jax import data  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import streaming
  config = default.get_config()
  config.data.update(name='synthetic_digits', tfds_data_dir=data_dir, validation_size=0)
  model = models.build_model(model_config().model, DATA_SHAPE)
  optimizer = optimizers.create_optimizer(model_config().optimizer, 10**6)
  step_fn = jax.jit(functools.partial(
      steps.train_step, model=model, optimizer=optimizer,
      settings=steps.StepSettings.from_config(model_config(), model)), donate_argnums=0)
  hyperparams = steps.LossHyperparams.from_config(model_config(), 1)
  keys = steps.RunKeys.from_seed(0)
  start = time.perf_counter()
  dataset = data.load_dataset(config.data, stream_train=pipeline == 'grain')
  load_seconds = time.perf_counter() - start
  steps_per_epoch = len(dataset.train) // BATCH_SIZE
  if pipeline == 'host':
    batches = steps.HostBatches(dataset.train.images, keys.data_order,
                                steps_per_epoch=steps_per_epoch, batch_size=BATCH_SIZE)
    next_batch = lambda step: batches(step)
  else:
    iterator = streaming.iterator(streaming.training_batches(
        dataset.train, seed=streaming.shuffle_seed(keys.data_order),
        steps_per_epoch=steps_per_epoch, batch_size=BATCH_SIZE, num_epochs=2,
        binarization='dynamic', binarization_seed=0), config.streaming)
    next_batch = lambda step: next(iterator)
  state = steps.create_train_state(model, optimizer, DATA_SHAPE, keys.init)
  state, _ = step_fn(state, next_batch(0), keys.train, hyperparams)  # compiles
  jax.block_until_ready(state)
  start = time.perf_counter()
  for step in range(1, FLAGS.steps + 1):
    state, _ = step_fn(state, next_batch(step), keys.train, hyperparams)
  jax.block_until_ready(state)
  seconds = time.perf_counter() - start
  emit(f'streaming_{pipeline}', train_records=len(dataset.train),
       examples_per_sec=FLAGS.steps * BATCH_SIZE / seconds, load_seconds=load_seconds,
       peak_host_rss_mb=peak_rss_mb(),
       read_threads=config.streaming.read_threads if pipeline == 'grain' else 0)


def streaming() -> None:
  """Runs `input_pipeline_child` in a fresh process per (dataset size, pipeline): peak memory
  is a per-process maximum."""
  from scripts import synthetic_tfds  # pylint: disable=import-outside-toplevel
  for records in map(int, FLAGS.streaming_records.split(',')):
    data_dir = synthetic_tfds.prepare(os.path.join(FLAGS.streaming_data_root, str(records)),
                                      train_records=records, test_records=10_000)
    for pipeline in ('host', 'grain'):
      result = subprocess.run(
          [sys.executable, '-m', 'scripts.benchmark', f'--threads={FLAGS.threads}',
           f'--steps={FLAGS.steps}', f'--input_child={pipeline}',
           f'--input_child_data_dir={data_dir}'], capture_output=True, text=True, check=False)
      if result.returncode:
        raise RuntimeError(f'The {pipeline} measurement failed:\n{result.stderr[-3000:]}')
      print(result.stdout.strip().splitlines()[-1], flush=True)


def main() -> None:
  if FLAGS.input_child:
    input_pipeline_child(FLAGS.input_child, FLAGS.input_child_data_dir)
    return
  only = set(filter(None, FLAGS.only.split(',')))
  wanted = lambda name: not only or name in only
  config = model_config()
  model = models.build_model(config.model, DATA_SHAPE)
  optimizer = optimizers.create_optimizer(config.optimizer, 10**6)
  settings = steps.StepSettings.from_config(config, model)
  hyperparams = steps.LossHyperparams.from_config(config, 1)
  step_fn = functools.partial(steps.train_step, model=model, optimizer=optimizer,
                              settings=settings)
  keys = steps.RunKeys.from_seed(0)
  state = steps.create_train_state(model, optimizer, DATA_SHAPE, keys.init)
  images = np.random.default_rng(0).uniform(size=(60_000, *DATA_SHAPE)).astype(np.float32)
  steps_per_epoch = len(images) // BATCH_SIZE

  rate = matmul_rate()
  flops = matmul_flops_per_example()
  jitted_step = jax.jit(step_fn, donate_argnums=0)
  xla_flops = jitted_step.lower(state, images[:BATCH_SIZE], keys.train,
                                hyperparams).compile().cost_analysis()
  xla_flops = (xla_flops[0] if isinstance(xla_flops, list) else xla_flops).get('flops', 0.0)
  emit('train_flops', matmul_flops_per_example=flops,
       xla_flops_per_example=xla_flops / BATCH_SIZE, matmul_rate_flops_per_sec=rate,
       matmul_bound_examples_per_sec=rate / flops)

  def report(name, seconds, compile_seconds, examples, **extra):
    examples_per_sec = examples / seconds
    emit(name, examples_per_sec=examples_per_sec, compile_seconds=compile_seconds,
         fraction_of_matmul_bound=examples_per_sec * flops / rate, **extra)

  if wanted('host_loop'):
    batches = steps.HostBatches(images, keys.data_order, steps_per_epoch=steps_per_epoch,
                                batch_size=BATCH_SIZE)
    holder = {'state': steps.create_train_state(model, optimizer, DATA_SHAPE, keys.init)}

    def host_loop():
      state = holder['state']
      for step in range(int(state.step), int(state.step) + FLAGS.steps):
        state, metrics = jitted_step(state, batches(step), keys.train, hyperparams)
      holder['state'] = state
      return metrics

    first, seconds = timed(host_loop, FLAGS.repeats)
    report('host_loop', seconds, first - seconds, FLAGS.steps * BATCH_SIZE)

  device_images = jax.device_put(images)
  run_fn = jax.jit(functools.partial(steps.run_steps, step_fn=step_fn,
                                     steps_per_epoch=steps_per_epoch, batch_size=BATCH_SIZE),
                   static_argnames='num_steps', donate_argnums=0)
  if wanted('device_scan'):
    holder = {'state': steps.create_train_state(model, optimizer, DATA_SHAPE, keys.init)}

    order = steps.epoch_order(keys.data_order, 0, len(images))

    def device_scan():
      holder['state'], metrics = run_fn(holder['state'], device_images, order, keys.train,
                                        hyperparams, num_steps=FLAGS.steps)
      return metrics

    first, seconds = timed(device_scan, FLAGS.repeats)
    report('device_scan', seconds, first - seconds, FLAGS.steps * BATCH_SIZE,
           steps_per_call=FLAGS.steps)

  if wanted('sweep'):
    for size in map(int, FLAGS.sweep_sizes.split(',')):
      for execution in ('vmap', 'map'):
        run_keys = jax.vmap(steps.RunKeys.from_seed)(jnp.arange(size))
        stack = lambda tree: jax.tree.map(lambda x: jnp.stack([x] * size), tree)
        sweep_fn = jax.jit(runners.over_runs(functools.partial(
            steps.run_steps, step_fn=step_fn, steps_per_epoch=steps_per_epoch,
            batch_size=BATCH_SIZE, num_steps=FLAGS.steps), (0, None, 0, 0, 0), execution),
                           donate_argnums=0)
        holder = {'state': jax.vmap(lambda key: steps.create_train_state(
            model, optimizer, DATA_SHAPE, key))(run_keys.init)}
        orders = jax.vmap(steps.epoch_order, in_axes=(0, None, None))(run_keys.data_order, 0,
                                                                     len(images))

        def sweep():
          holder['state'], metrics = sweep_fn(holder['state'], device_images, orders,
                                              run_keys.train, stack(hyperparams))
          return metrics

        first, seconds = timed(sweep, FLAGS.repeats)
        name = f'sweep_{size}' if execution == 'vmap' else f'sweep_map_{size}'
        report(name, seconds, first - seconds, size * FLAGS.steps * BATCH_SIZE, models=size,
               execution=execution)

  if wanted('iwae_eval'):
    fn = importance_sampling.make_importance_sampling_fn(model, num_samples=5000, chunk_size=100)
    eval_images = (images[:FLAGS.eval_images] > 0.5).astype(np.float32)
    first, seconds = timed(lambda: batched.map_examples(
        fn, state.params, eval_images, batch_size=FLAGS.eval_images, rng=keys.eval),
                           max(1, FLAGS.repeats // 2))
    emit('iwae_eval', images_per_sec=FLAGS.eval_images / seconds, importance_samples=5000,
         compile_seconds=first - seconds,
         seconds_for_10000_images=10_000 * seconds / FLAGS.eval_images)

  if wanted('streaming'):
    streaming()

  memory = {'peak_host_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    memory['peak_device_mb'] = stats['peak_bytes_in_use'] / 2**20
  emit('memory', **memory)


if __name__ == '__main__':
  main()
