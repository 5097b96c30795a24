r"""The accelerator check: the figures a GPU or TPU should reach, measured in one short run.

  pip install -e '.[test]' "jax[cuda12]==$(python -c 'import jax; print(jax.__version__)')"
  python -m scripts.accelerator_check                 # on the accelerator: about 5 minutes
  python -m scripts.accelerator_check --scale=smoke   # anywhere, in a minute: small counts
  python -m scripts.accelerator_check --only=top_down_step,cifar10_step   # some parts

Prints one JSON line per measurement, then a table against the targets for one modern GPU:
  mnist_epoch     one epoch (600 steps of 100) of configs/mnist.py after compilation
                  (target: under 0.25 s)
  iwae_eval       log p(x) by importance sampling, k = 5000, of 10,000 test images
                  (target: under 30 s)
  sweep_N         N = 1, 4, 16 models of configs/mnist.py vmapped in one program, against N
                  runs one after another (target: 16 vmapped at least 8× faster);
                  sweep_map_N the same looped with lax.map (sweep_execution='map')
  top_down_step   one training step of configs/top_down.py:mnist (batch 32)
  cifar10_step    one training step of configs/top_down.py:cifar10 (batch 32 per device), and
                  cifar10_step_remat with model.top_down.remat: seconds and program memory
  cifar10_throughput[_bfloat16]
                  20 steps of the same in one compiled loop: steps/s, XLA's FLOPs per step,
                  TFLOP/s achieved and, with --peak_tflops, the fraction of the device's peak;
                  in float32 and (not on a CPU) bfloat16 (part deep_throughput)
  mnist_efficient_vdvae_epoch, mnist_nvae_epoch
                  one epoch of configs/top_down.py:mnist_efficient_vdvae and :mnist_nvae
                  (steps of their batch over 50,000 images), timed on a few steps
  mixed_precision the MNIST epoch with model.compute_dtype=bfloat16 against float32
  memory          peak device memory (where the backend reports it) and peak host memory
Measurements that mean nothing on a CPU (bfloat16 is emulated there) are skipped, saying so;
`--scale=smoke` runs every other one with small counts and extrapolates, saying so. The data
is real MNIST when TFDS finds it (`--data_dir`), else random binary images of MNIST's shape
(the timings do not depend on the pixel values; the log-likelihoods do, and are not reported).
"""

import copy
import functools
import json
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from configs import mnist, top_down
from scripts import timing
from vae_jax import data, models, optimizers
from vae_jax.engine import compilation_cache, runners, steps
from vae_jax.evaluators import batched, importance_sampling

_SCALE = flags.DEFINE_enum('scale', 'full', ['full', 'smoke'],
                           'full: the real counts (an accelerator); smoke: small counts.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'A TFDS data dir holding MNIST.')
_ONLY = flags.DEFINE_list('only', None, 'Run only these parts (default: all), e.g. '
                          '--only=top_down_step,cifar10_step; names in PART_NAMES.')
_COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache', None, "JAX's persistent compilation cache, as the launchers' flag "
    "(default: $JAX_COMPILATION_CACHE_DIR, else ~/.cache/vae_jax/jax_compilation; '' off).")

_PEAK_TFLOPS = flags.DEFINE_list(
    'peak_tflops', None, "The device's peak dense TFLOP/s per compute dtype, from its "
    'datasheet, as DTYPE:TFLOPS pairs (--peak_tflops=float32:X,bfloat16:Y): deep_throughput '
    'then reports the fraction of it achieved.')

TARGETS = {'mnist_epoch': ('seconds', 0.25, 'below'), 'iwae_eval': ('seconds', 30.0, 'below'),
           'sweep_16': ('speedup', 8.0, 'above')}


def emit(results: dict, name: str, **values) -> None:
  results[name] = values
  print(json.dumps({'check': name, **values, 'device': jax.devices()[0].device_kind}),
        flush=True)


def timed(fn) -> tuple[float, float]:
  """(seconds of a first call, compilation included; seconds of a second call)."""
  first, (second,) = timing.seconds_of_calls(lambda _: fn(), 1)
  return first, second


def mnist_images(num_train: int) -> tuple[np.ndarray, np.ndarray, str]:
  """(train, test) images in [0, 1] and where they came from."""
  config = mnist.get_config().data
  if _DATA_DIR.value:
    config.tfds_data_dir = _DATA_DIR.value
  config.download = False
  try:
    dataset = data.load_dataset(config)
    return dataset.train.images[:num_train], dataset.test.images, 'MNIST'
  except Exception as error:  # pylint: disable=broad-except
    print(f'# MNIST not found ({type(error).__name__}); using random binary images of its shape')
    rng = np.random.default_rng(0)
    draw = lambda n: (rng.uniform(size=(n, 28, 28, 1)) < 0.13).astype(np.float32)
    return draw(num_train), draw(10_000), 'random binary images of MNIST shape'


class Trainer:
  """A config's model, optimizer and compiled `steps_per_call`-step scan over device data."""

  def __init__(self, config, data_shape, num_train: int):
    self.config = config
    self.model = models.build_model(config.model, data_shape)
    self.optimizer = optimizers.create_optimizer(config.optimizer, 10**6)
    settings = steps.StepSettings.from_config(config, self.model)
    self.hyperparams = steps.LossHyperparams.from_config(config, 1)
    self.step_fn = functools.partial(steps.train_step, model=self.model,
                                     optimizer=self.optimizer, settings=settings)
    self.steps_per_epoch = num_train // config.batch_size
    self.data_shape = data_shape

  def initial_state(self, seed: int = 0):
    return steps.create_train_state(self.model, self.optimizer, self.data_shape,
                                    steps.RunKeys.from_seed(seed).init)

  def scan_fn(self, num_steps: int, num_runs: int | None = None, execution: str = 'vmap'):
    """A jitted `(state, images, order, train_key, hyperparams) -> (state, metrics)`, over
    `num_runs` stacked runs if given (`execution`: 'vmap' or 'map', as in a sweep)."""
    fn = functools.partial(steps.run_steps, step_fn=self.step_fn,
                           steps_per_epoch=self.steps_per_epoch,
                           batch_size=self.config.batch_size, num_steps=num_steps)
    if num_runs is not None:
      fn = runners.over_runs(fn, (0, None, 0, 0, 0), execution)
    return jax.jit(fn, donate_argnums=0)


def check_epoch(results, name, config, train_images, steps_per_call: int, epoch_steps: int):
  trainer = Trainer(config, train_images.shape[1:], len(train_images))
  run = trainer.scan_fn(steps_per_call)
  keys = steps.RunKeys.from_seed(0)
  images = jax.device_put(train_images)
  order = steps.epoch_order(keys.data_order, 0, len(train_images))
  holder = {'state': trainer.initial_state()}

  def epoch():
    for _ in range(epoch_steps // steps_per_call):
      holder['state'], metrics = run(holder['state'], images, order, keys.train,
                                     trainer.hyperparams)
    return metrics

  first, seconds = timed(epoch)
  scale = trainer.steps_per_epoch / epoch_steps
  emit(results, name, seconds=seconds * scale, compile_seconds=first - seconds,
       steps_timed=epoch_steps, extrapolated=scale != 1)
  return seconds * scale


def check_sweeps(results, config, train_images, num_steps: int, sizes=(1, 4, 16)):
  trainer = Trainer(config, train_images.shape[1:], len(train_images))
  images = jax.device_put(train_images)
  single_seconds = None
  for size in sizes:
    for execution in ('vmap', 'map') if size > 1 else ('vmap',):
      run_keys = jax.vmap(steps.RunKeys.from_seed)(jnp.arange(size))
      run = trainer.scan_fn(num_steps, num_runs=size, execution=execution)
      stacked = lambda tree: jax.tree.map(lambda x: jnp.stack([x] * size), tree)
      holder = {'state': jax.vmap(trainer.initial_state)(jnp.arange(size))}
      orders = jax.vmap(steps.epoch_order, in_axes=(0, None, None))(run_keys.data_order, 0,
                                                                   len(train_images))

      def sweep():
        holder['state'], metrics = run(holder['state'], images, orders, run_keys.train,
                                       stacked(trainer.hyperparams))
        return metrics

      _, seconds = timed(sweep)
      single_seconds = seconds if size == 1 else single_seconds
      name = f'sweep_{size}' if execution == 'vmap' else f'sweep_map_{size}'
      emit(results, name, seconds=seconds, models=size, steps=num_steps,
           speedup=size * single_seconds / seconds)


def check_iwae_eval(results, config, test_images, num_images: int):
  model = models.build_model(config.model, test_images.shape[1:])
  params = model.init(jax.random.key(0), jnp.zeros((1, *test_images.shape[1:])))
  chunk = 1000 if jax.default_backend() != 'cpu' else 100
  fn = importance_sampling.make_importance_sampling_fn(model, num_samples=5000, chunk_size=chunk)
  chosen = test_images[:num_images]
  batch = min(num_images, 500)
  first, seconds = timed(lambda: batched.map_examples(fn, params, chosen, batch_size=batch,
                                                      rng=jax.random.key(1)))
  emit(results, 'iwae_eval', seconds=seconds * 10_000 / num_images,
       compile_seconds=max(first - seconds, 0.0), images_timed=num_images,
       extrapolated=num_images != 10_000, chunk_size=chunk)


def time_top_down_steps(train_images, variant: str, steps_timed: int):
  """`(config, first, seconds)`: `steps_timed` training steps of `configs/top_down.py:<variant>`
  on MNIST batches, timed with and (second) without compilation."""
  config = top_down.get_config(variant)
  trainer = Trainer(config, train_images.shape[1:], len(train_images))
  step = jax.jit(trainer.step_fn, donate_argnums=0)
  batch = jnp.asarray(train_images[:config.batch_size])
  keys = steps.RunKeys.from_seed(0)
  holder = {'state': trainer.initial_state()}

  def run():
    for _ in range(steps_timed):
      holder['state'], metrics = step(holder['state'], batch, keys.train, trainer.hyperparams)
    return metrics

  return (config, *timed(run))


def check_top_down_step(results, train_images, variant: str):
  config, first, seconds = time_top_down_steps(train_images, variant, 1)
  emit(results, 'top_down_step', seconds=seconds, compile_seconds=first - seconds,
       config=f'configs/top_down.py:{variant}', batch_size=config.batch_size)


def check_deep_mnist_epoch(results, train_images, variant: str, steps_timed: int):
  """Seconds per epoch of `configs/top_down.py:<variant>` (50,000 training images in steps of
  its batch), from `steps_timed` steps after compilation."""
  config, first, seconds = time_top_down_steps(train_images, variant, steps_timed)
  steps_per_epoch = 50_000 // config.batch_size
  emit(results, f'{variant.removesuffix("_small")}_epoch',
       seconds=seconds / steps_timed * steps_per_epoch, step_seconds=seconds / steps_timed,
       compile_seconds=max(first - seconds, 0.0), steps_timed=steps_timed, extrapolated=True,
       config=f'configs/top_down.py:{variant}', batch_size=config.batch_size)


def check_cifar10_step(results, variant: str, batch_per_device: int):
  """One training step of `configs/top_down.py:<variant>` on random 8-bit images, without and
  with `remat`: seconds after compilation and the compiled program's memory (XLA's estimate of
  its temporaries, arguments and outputs)."""
  for remat in (False, True):
    config = top_down.get_config(variant)
    config.model.top_down.remat = remat
    config.batch_size = batch_per_device * jax.device_count()
    levels = np.random.default_rng(0).integers(0, 256, (config.batch_size, 32, 32, 3))
    trainer = Trainer(config, (32, 32, 3), config.batch_size)
    keys = steps.RunKeys.from_seed(0)
    holder = {'state': trainer.initial_state()}
    batch = jnp.asarray(levels / 255.0, jnp.float32)
    step = jax.jit(trainer.step_fn, donate_argnums=0)
    start = time.perf_counter()
    memory = step.lower(holder['state'], batch, keys.train,
                        trainer.hyperparams).compile().memory_analysis()
    compile_seconds = time.perf_counter() - start

    def one():
      holder['state'], metrics = step(holder['state'], batch, keys.train, trainer.hyperparams)
      return metrics

    _, seconds = timed(one)
    program_mb = (None if memory is None else
                  (memory.temp_size_in_bytes + memory.argument_size_in_bytes +
                   memory.output_size_in_bytes) / 2**20)
    emit(results, 'cifar10_step_remat' if remat else 'cifar10_step', seconds=seconds,
         compile_seconds=compile_seconds, program_mb=program_mb,
         config=f'configs/top_down.py:{variant}', batch_size=config.batch_size)


def peak_tflops(pairs: list[str]) -> dict[str, float]:
  """`['float32:67', ...]` -> `{'float32': 67.0, ...}`."""
  peaks = {}
  for pair in pairs:
    dtype, _, value = pair.partition(':')
    try:
      peaks[dtype] = float(value)
    except ValueError:
      raise SystemExit(f'error: --peak_tflops={pair!r}: give DTYPE:TFLOPS, e.g. '
                       'bfloat16:900.') from None
  return peaks


def flops_per_step(config, data_shape, batch) -> float:
  """XLA's count of one training step's floating-point operations, from the step lowered with
  every block unrolled (`model.top_down.scan=False`): its cost analysis counts a loop's body
  once, so the scanned program would under-count. Lowered only, not compiled."""
  unrolled = copy.deepcopy(config)
  unrolled.model.top_down.scan = False
  trainer = Trainer(unrolled, data_shape, len(batch))
  state = jax.eval_shape(trainer.initial_state)
  lowered = jax.jit(trainer.step_fn).lower(state, batch, steps.RunKeys.from_seed(0).train,
                                           trainer.hyperparams)
  return float(lowered.cost_analysis()['flops'])


def check_deep_throughput(results, variant: str, batch_per_device: int, num_steps: int,
                          dtypes: tuple[str, ...]):
  """Steps per second of `configs/top_down.py:<variant>` over `num_steps` steps in one compiled
  loop (`lax.scan` over device data, as training runs them), XLA's FLOPs per step, the rate
  achieved, and its fraction of --peak_tflops when given; per compute dtype."""
  for dtype in dtypes:
    config = top_down.get_config(variant)
    config.model.compute_dtype = dtype
    config.batch_size = batch_per_device * jax.device_count()
    images = np.random.default_rng(0).integers(0, 256, (2 * config.batch_size, 32, 32, 3))
    images = jax.device_put(jnp.asarray(images / 255.0, jnp.float32))
    trainer = Trainer(config, (32, 32, 3), len(images))
    run = trainer.scan_fn(num_steps)
    keys = steps.RunKeys.from_seed(0)
    order = steps.epoch_order(keys.data_order, 0, len(images))
    holder = {'state': trainer.initial_state()}

    def loop():
      holder['state'], metrics = run(holder['state'], images, order, keys.train,
                                     trainer.hyperparams)
      return metrics

    first, seconds = timed(loop)
    flops = flops_per_step(config, (32, 32, 3), images[:config.batch_size])
    achieved = flops * num_steps / seconds / 1e12
    peak = peak_tflops(_PEAK_TFLOPS.value or []).get(dtype)
    emit(results, f'{variant}_throughput' + ('' if dtype == 'float32' else f'_{dtype}'),
         steps_per_second=num_steps / seconds, steps_timed=num_steps,
         compile_seconds=first - seconds, flops_per_step=flops, achieved_tflops=achieved,
         fraction_of_peak=(achieved / peak if peak else
                           'not computed: pass --peak_tflops=DTYPE:TFLOPS (the datasheet)'),
         config=f'configs/top_down.py:{variant}', batch_size=config.batch_size,
         compute_dtype=dtype)


def summary(results: dict, data_source: str) -> str:
  lines = [f'device: {jax.devices()[0].device_kind} ({jax.default_backend()}), data: '
           f'{data_source}', '', '| check | measured | target | verdict |', '|---|---|---|---|']
  for name, values in results.items():
    if 'skipped' in values:
      lines.append(f'| {name} | skipped: {values["skipped"]} | — | — |')
      continue
    quantity, target, direction = TARGETS.get(name, (None, None, None))
    shown = ', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                      for k, v in values.items())
    if quantity is None:
      lines.append(f'| {name} | {shown} | — | — |')
      continue
    value = values[quantity]
    met = value < target if direction == 'below' else value >= target
    lines.append(f'| {name} | {shown} | {quantity} {direction} {target:g} | '
                 f'{"met" if met else "NOT met"} |')
  return '\n'.join(lines)


def parts(smoke: bool, on_cpu: bool, train_images, test_images) -> dict:
  """The checks by name, each a function of the results so far (run in this order)."""
  config = mnist.get_config()
  epoch_steps = 100 if smoke else 600

  def mixed_precision(results):
    if on_cpu:
      emit(results, 'mixed_precision', skipped='bfloat16 is emulated on a CPU: not meaningful')
      return
    if 'mnist_epoch' not in results:
      check_epoch(results, 'mnist_epoch', config, train_images, 100, epoch_steps)
    half = mnist.get_config()
    half.model.compute_dtype = 'bfloat16'
    bfloat16 = check_epoch(results, 'mnist_epoch_bfloat16', half, train_images, 100, epoch_steps)
    emit(results, 'mixed_precision', speedup=results['mnist_epoch']['seconds'] / bfloat16)

  def efficient_vdvae(results):
    if smoke:  # the same code path as mnist_nvae_epoch; its compilation alone takes ~40 s here
      emit(results, 'mnist_efficient_vdvae_epoch', skipped='smoke run: timed on the accelerator')
    else:
      check_deep_mnist_epoch(results, train_images, 'mnist_efficient_vdvae', 20)

  return {
      'mnist_epoch': lambda r: check_epoch(r, 'mnist_epoch', config, train_images, 100,
                                           epoch_steps),
      'iwae_eval': lambda r: check_iwae_eval(r, config, test_images, 20 if smoke else 10_000),
      'sweeps': lambda r: check_sweeps(r, config, train_images, 5 if smoke else 600),
      'top_down_step': lambda r: check_top_down_step(r, train_images,
                                                     'mnist_small' if smoke else 'mnist'),
      # VDVAE's CIFAR-10 model at its batch of 32 per device; a CPU smoke run takes the small one.
      'cifar10_step': lambda r: check_cifar10_step(r, 'cifar10_small' if smoke else 'cifar10',
                                                   2 if smoke else 32),
      'deep_throughput': lambda r: check_deep_throughput(
          r, 'cifar10_small' if smoke else 'cifar10', 2 if smoke else 32, 3 if smoke else 20,
          ('float32',) if on_cpu else ('float32', 'bfloat16')),
      'mnist_nvae_epoch': lambda r: check_deep_mnist_epoch(
          r, train_images, 'mnist_nvae_small' if smoke else 'mnist_nvae', 2 if smoke else 20),
      'mnist_efficient_vdvae_epoch': efficient_vdvae,
      'mixed_precision': mixed_precision,
      'memory': memory,
  }


def memory(results) -> None:
  stats = jax.devices()[0].memory_stats() or {}
  values = {'peak_host_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  if 'peak_bytes_in_use' in stats:
    values['peak_device_mb'] = stats['peak_bytes_in_use'] / 2**20
  else:
    values['peak_device_mb'] = 'not reported by this backend'
  emit(results, 'memory', **values)


PART_NAMES = ('mnist_epoch', 'iwae_eval', 'sweeps', 'top_down_step', 'cifar10_step',
              'deep_throughput', 'mnist_nvae_epoch', 'mnist_efficient_vdvae_epoch', 'mixed_precision', 'memory')


def main(argv):
  del argv
  unknown = sorted(set(_ONLY.value or ()) - set(PART_NAMES))
  if unknown:
    raise app.UsageError(f'--only names {unknown}; choose from {", ".join(PART_NAMES)}.')
  compilation_cache.use(_COMPILATION_CACHE.value)
  smoke = _SCALE.value == 'smoke'
  results = {}
  train_images, test_images, source = mnist_images(60_000)
  checks = parts(smoke, jax.default_backend() == 'cpu', train_images, test_images)
  for name in PART_NAMES:
    if not _ONLY.value or name in _ONLY.value:
      checks[name](results)  # each prints its JSON line as it finishes
  print()
  print(summary(results, source))


if __name__ == '__main__':
  app.run(main)
