r"""Is the input pipeline or the model the bottleneck? Images per second read from a folder of
JPEGs through the training input pipeline (grain: decode, EXIF, resize, centre-crop), against
images per second through the training step of configs/images.py at the same size.

  python -m scripts.image_input_rate                      # 300 JPEGs of 300-600 px, at 64×64
  python -m scripts.image_input_rate --folder=paintings/ --image_size=32 --workers=0,2

Without --folder it writes --num_files JPEGs (random crops and scales, 300-600 px a side, one in
ten grey) of scikit-learn's two sample photos to a temporary folder. Prints one JSON line per
pipeline setting (`images_per_sec` read, with `worker_processes`) and one for the step
(`images_per_sec` trained, compile time apart), then which is the bottleneck.
"""

import json
import os
import sys
import tempfile
import time

from absl import flags

flags.DEFINE_string('folder', '', 'A folder of images ("": make JPEGs from sklearn\'s photos).')
flags.DEFINE_integer('num_files', 300, 'JPEGs to make when no --folder is given.')
flags.DEFINE_integer('image_size', 64, 'data.image_size, and the variant of configs/images.py.')
flags.DEFINE_list('workers', ['0', '2'], 'streaming.worker_processes settings to measure.')
flags.DEFINE_integer('batches', 20, 'Batches read (after one to start) per pipeline setting.')
flags.DEFINE_integer('steps', 5, 'Timed training steps (after one to compile).')
FLAGS = flags.FLAGS

# pylint: disable=wrong-import-position
import numpy as np


def make_jpegs(folder: str, count: int) -> None:
  """`count` JPEGs, 300-600 px a side, cut at random places and scales from sklearn's photos."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from sklearn.datasets import load_sample_images  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  photos = [Image.fromarray(photo) for photo in load_sample_images().images]
  for index in range(count):
    photo = photos[index % len(photos)]
    width, height = (int(side) for side in rng.integers(300, 601, 2))
    scale = rng.uniform(max(width / photo.width, height / photo.height), 1.6)
    big = photo.resize((round(photo.width * scale), round(photo.height * scale)),
                       Image.Resampling.BICUBIC)
    left = int(rng.integers(0, big.width - width + 1))
    top = int(rng.integers(0, big.height - height + 1))
    crop = big.crop((left, top, left + width, top + height))
    (crop.convert('L') if index % 10 == 3 else crop).save(
        os.path.join(folder, f'{index:04d}.jpg'), quality=90)


def input_rate(config, workers: int) -> dict:
  from vae_jax import data  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import streaming  # pylint: disable=import-outside-toplevel
  dataset = data.load_dataset(config.data, stream_train=True)
  steps_per_epoch = len(dataset.train) // config.batch_size
  batches = streaming.training_batches(
      dataset.train, seed=0, steps_per_epoch=steps_per_epoch, batch_size=config.batch_size,
      num_epochs=FLAGS.batches // steps_per_epoch + 2, binarization='none', binarization_seed=0)
  config.streaming.worker_processes = workers
  iterator = streaming.iterator(batches, config.streaming)
  next(iterator)  # workers started, the read-ahead begun
  start = time.perf_counter()
  for _ in range(FLAGS.batches):
    batch = next(iterator)
  seconds = time.perf_counter() - start
  return {'measured': 'input', 'worker_processes': workers, 'read_threads':
          config.streaming.read_threads, 'batch_shape': list(np.shape(batch)),
          'images_per_sec': FLAGS.batches * config.batch_size / seconds}


def step_rate(config) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import steps  # pylint: disable=import-outside-toplevel
  shape = (FLAGS.image_size, FLAGS.image_size, 3)
  state, step, hyperparams = steps.standalone_step(config, shape)
  images = np.round(np.random.default_rng(0).uniform(
      size=(config.batch_size, *shape)) * 255).astype(np.float32) / 255
  start = time.perf_counter()
  state, metrics = step(state, images, jax.random.key(1), hyperparams)
  jax.block_until_ready(metrics)
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    state, metrics = step(state, images, jax.random.key(1), hyperparams)
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  return {'measured': 'train_step', 'batch_size': config.batch_size, 'parameters':
          int(sum(x.size for x in jax.tree.leaves(state.params))),
          'compile_seconds': compile_seconds,
          'images_per_sec': FLAGS.steps * config.batch_size / seconds,
          'device': jax.devices()[0].device_kind}


def main():
  FLAGS(sys.argv)
  from configs import images  # pylint: disable=import-outside-toplevel
  config = images.get_config(str(FLAGS.image_size))
  with tempfile.TemporaryDirectory() as scratch:
    folder = FLAGS.folder
    if not folder:
      folder = os.path.join(scratch, 'jpegs')
      os.makedirs(folder)
      make_jpegs(folder, FLAGS.num_files)
    config.data.name = os.path.abspath(folder) + '/'
    results = [input_rate(config, int(workers)) for workers in FLAGS.workers]
    results.append(step_rate(config))
  for result in results:
    print(json.dumps(result), flush=True)
  fastest_input = max(r['images_per_sec'] for r in results if r['measured'] == 'input')
  trained = results[-1]['images_per_sec']
  print(f'input {fastest_input:.0f} images/s (best setting) vs training step {trained:.0f} '
        f'images/s: the {"pipeline" if fastest_input < trained else "model"} is the bottleneck.')


if __name__ == '__main__':
  main()
