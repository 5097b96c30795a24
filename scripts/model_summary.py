r"""Prints a config's parameters per module, and their total on the last line.

  python -m scripts.model_summary --config=configs/top_down.py:cifar10
  python -m scripts.model_summary --config=configs/top_down.py:ffhq1024 --data_shape=1024,1024,3
  python -m scripts.model_summary --config=configs/mnist.py --depth=3

The model is built from the config as training builds it; its parameters are only shaped
(`jax.eval_shape`), never allocated, so the largest layouts print in seconds. Without
`--data_shape` the shape is the one the data source declares, which needs no data on disk for
TFDS datasets (their builders declare it); other sources are opened to read it (as training
would: `--data_dir`, `--data_path`), so a folder of images that is not there needs
`--data_shape`.
"""

import collections
import math

import jax
import jax.numpy as jnp
from absl import flags
from ml_collections import config_flags

from experiments import launch
from vae_jax import data, models

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A config file[:variant].',
                                          lock_config=True)
_DATA_SHAPE = flags.DEFINE_list('data_shape', None, 'H,W,C of the images (default: read from '
                                'the dataset).')
_DEPTH = flags.DEFINE_integer('depth', 2, 'Module levels to group the parameters by.')
flags.mark_flags_as_required(['config'])


def parameter_shapes(model, data_shape: tuple[int, ...]) -> dict:
  """The shapes of the model's parameters (a pytree of `jax.ShapeDtypeStruct`)."""
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *data_shape)))


def counts_by_module(shapes, depth: int) -> dict[str, int]:
  """{'encoder/torso', ...: parameters}: every leaf's size, summed under its first `depth`
  path components (the top collection, 'params', left out)."""
  counts = collections.Counter()
  for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
    names = [str(getattr(key, 'key', key)) for key in path]
    if names and names[0] == 'params':
      names = names[1:]
    counts['/'.join(names[:depth])] += math.prod(leaf.shape)
  return dict(counts)


def summary_lines(counts: dict[str, int]) -> list[str]:
  width = max([len(name) for name in counts] + [6])
  lines = [f'{"module":<{width}}  {"parameters":>12}']
  lines += [f'{name:<{width}}  {count:>12,}' for name, count in sorted(counts.items())]
  lines.append(f'total parameters: {sum(counts.values())}')
  return lines


def main(argv):
  del argv
  config = launch.with_imports(_CONFIG.value)
  if _DATA_SHAPE.value:
    data_shape = tuple(int(size) for size in _DATA_SHAPE.value)
  else:
    launch.set_data_location(config.data, launch.DATA_DIR.value, launch.DATA_PATH.value)
    # The source's declared shape needs no data on disk (TFDS's builders know theirs).
    data_shape = data.declared_shape(config.data) or data.load_dataset(config.data).data_shape
  model = models.build_model(config.model, data_shape)
  print('\n'.join(summary_lines(counts_by_module(parameter_shapes(model, data_shape),
                                                 _DEPTH.value))))


if __name__ == '__main__':
  launch.run(main)
