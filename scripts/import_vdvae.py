r"""Writes a vae_jax workdir from a checkpoint of openai/vdvae (Child 2021), for
`experiments.evaluate`, `experiments.visualize` and a resumed `experiments.train`.

  python -m scripts.import_vdvae --hps=cifar10 \
      --model=cifar10-seed0-iter-1050000-model.th --ema=cifar10-seed0-iter-1050000-model-ema.th \
      --workdir=/tmp/vdvae_cifar10
  python -m experiments.evaluate --workdir=/tmp/vdvae_cifar10 --evaluators=elbo

The files are the `*-model.th` and `*-model-ema.th` that VDVAE's training writes (`torch.save`
of a state_dict; the published ones are linked from github.com/openai/vdvae's README). They are
read without PyTorch (vae_jax/torch_files.py). The model is `configs/top_down.py:<hps>`
(VDVAE's exact model), or `--config` for another layout with VDVAE's options. The workdir holds
one checkpoint at step 0: the parameters of `--model`, their moving average from `--ema` (the
one VDVAE evaluates; without `--ema`, the parameters themselves), and a fresh optimizer state
(VDVAE's `*-opt.th` is not read): resuming trains on from the imported weights, warm-up
included.
"""

import os

import jax
from absl import flags, logging
from ml_collections import config_flags

from configs import top_down as top_down_configs
from experiments import launch
from vae_jax import models, optimizers, torch_files
from vae_jax.engine import checkpointing, steps
from vae_jax.errors import UserError
from vae_jax.models import vdvae_checkpoints

IMAGE_SHAPES = {'cifar10': (32, 32, 3), 'imagenet32': (32, 32, 3), 'ffhq256': (256, 256, 3)}


def define_flags() -> None:
  """The command line (defined only when run as a script: tests import this module beside
  other scripts that define --workdir too)."""
  flags.DEFINE_enum('hps', 'cifar10', sorted(IMAGE_SHAPES), "VDVAE's --hps of the run.")
  flags.DEFINE_string('model', None, 'The *-model.th file.')
  flags.DEFINE_string('ema', None, 'The *-model-ema.th file (optional).')
  flags.DEFINE_string('workdir', None, 'A new folder for the vae_jax workdir.')
  config_flags.DEFINE_config_file('config', None, 'Another config than '
                                  'configs/top_down.py:<hps> (tests, other layouts).',
                                  lock_config=False)
  flags.mark_flags_as_required(['model', 'workdir'])


def _with_average(opt_state, average):
  """`opt_state` with the moving average of the parameters replaced by `average`."""
  return jax.tree.map(
      lambda node: node._replace(average=average)
      if isinstance(node, optimizers.ParameterAverageState) else node,
      opt_state, is_leaf=lambda node: isinstance(node, optimizers.ParameterAverageState))


def import_checkpoint(config, model_path: str, ema_path: str | None, workdir: str,
                      image_shape: tuple[int, int, int]) -> steps.TrainState:
  """Writes `workdir` (config and a step-0 checkpoint) from VDVAE's state_dict files."""
  if checkpointing.holds_trained_state(workdir):
    raise UserError(f'{workdir} already holds a trained checkpoint; import into a new folder '
                    '(nothing was written).')
  for path in filter(None, (model_path, ema_path)):
    if not os.path.isfile(path):
      raise UserError(f'{path} not found: pass the checkpoint file VDVAE wrote.')
  model = models.build_model(config.model, image_shape)
  optimizer = optimizers.create_optimizer(config.optimizer, num_train_steps=1)
  template = steps.create_train_state(model, optimizer, image_shape, jax.random.key(0))
  convert = lambda path: vdvae_checkpoints.params_from_state_dict(
      torch_files.load_state_dict(path), template.params, config.model.likelihood.num_components)
  params = convert(model_path)
  average = convert(ema_path) if ema_path else params
  opt_state = _with_average(optimizer.init(params), average)
  state = template.replace(params=params, opt_state=optimizers.with_config_hyperparams(
      opt_state, config.optimizer))
  os.makedirs(workdir, exist_ok=True)
  checkpointing.save_config(config, workdir)
  manager = checkpointing.create_training_checkpoint_manager(workdir, max_to_keep=1)
  checkpointing.save_training_checkpoint(manager, 0, state)
  manager.wait_until_finished()
  manager.close()
  return state


def main(argv):
  del argv
  options = flags.FLAGS
  config = launch.with_imports(options.config or top_down_configs.get_config(options.hps))
  import_checkpoint(config, options.model, options.ema, options.workdir,
                    IMAGE_SHAPES[options.hps])
  logging.info('Wrote %s from %s%s.', options.workdir, options.model,
               f' and {options.ema}' if options.ema else '')
  print(f'{options.workdir}: VDVAE {options.hps} weights at step 0; evaluate with '
        f'python -m experiments.evaluate --workdir={options.workdir}')


if __name__ == '__main__':
  define_flags()
  launch.run(main)
