r"""Writes a vae_jax workdir from a checkpoint of openai/vdvae (Child 2021), for
`experiments.evaluate`, `experiments.visualize` and a resumed `experiments.train`.

  python -m scripts.import_vdvae --hps=cifar10 \
      --model=cifar10-seed0-iter-1050000-model.th --ema=cifar10-seed0-iter-1050000-model-ema.th \
      [--opt=cifar10-seed0-iter-1050000-opt.th] --workdir=/tmp/vdvae_cifar10

then, as the importer prints them (run from the repository's root):

  python -m experiments.evaluate --workdir=/tmp/vdvae_cifar10 --evals=elbo
  python -m experiments.visualize --workdir=/tmp/vdvae_cifar10
  python -m experiments.train --config=configs/top_down.py:cifar10 --workdir=/tmp/vdvae_cifar10

The files are the `*-model.th` and `*-model-ema.th` that VDVAE's training writes (`torch.save`
of a state_dict; the published ones are linked from github.com/openai/vdvae's README). They are
read without PyTorch (vae_jax/torch_files.py). `--hps` is one of VDVAE's five layouts (cifar10,
imagenet32, imagenet64, ffhq256, ffhq1024): the model is `configs/top_down.py:<hps>`; or
`--config` (with `--config.KEY=VALUE` overrides) for another layout with VDVAE's options. The
image shape comes from the config's layout (its finest resolution, 3 channels), so no dataset
is opened. The likelihood scores bins as VDVAE's loss does (`model.likelihood.small_bins=
'midpoint_density'`, set here where the config does not): the bits/dim evaluated are VDVAE's.

The workdir holds one checkpoint at step 0, in `checkpoints/` and, for a config that stops early
(`configs/top_down.py:cifar10`), as its best one in `checkpoints_best/` too (the checkpoint
evaluate reads by default): the parameters of `--model`, their moving average from `--ema` (the
weights VDVAE evaluates and the ones evaluate and visualize use; without `--ema`, the raw
parameters themselves), and the optimizer's state: with `--opt=*-opt.th` (VDVAE's
`optimizer.state_dict()`), Adam's moments and its step, which sets Adam's bias correction and
the warm-up where VDVAE's run stopped (the workdir's own steps and epochs still count from 0);
without it, a fresh state (moments at 0, warm-up again).
"""

import collections
import os
import shlex
import sys

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from absl import flags, logging
from ml_collections import config_flags

from configs import top_down as top_down_configs
from experiments import launch
from vae_jax import data, models, optimizers, torch_files
from vae_jax.engine import checkpointing, runs, steps
from vae_jax.errors import UserError
from vae_jax.models import vdvae_checkpoints

LAYOUTS = ('cifar10', 'imagenet32', 'imagenet64', 'ffhq256', 'ffhq1024')  # VDVAE's hps.py
SMALL_BINS = 'midpoint_density'  # VDVAE's loss (vae_helpers.discretized_mix_logistic_loss)

# What runs.create_state reads of a dataset, when only the shape is known.
_Shape = collections.namedtuple('_Shape', ['data_shape', 'train'])


def define_flags() -> None:
  """The command line (defined only when run as a script: tests import this module beside
  other scripts that define --workdir too)."""
  flags.DEFINE_enum('hps', 'cifar10', LAYOUTS, "VDVAE's --hps of the run (its layout).")
  flags.DEFINE_string('model', None, 'The *-model.th file.')
  flags.DEFINE_string('ema', None, 'The *-model-ema.th file (optional).')
  flags.DEFINE_string('opt', None, "The *-opt.th file (optional): Adam's moments and step, so "
                      "that training continues VDVAE's optimisation.")
  flags.DEFINE_string('workdir', None, 'A new folder for the vae_jax workdir.')
  config_flags.DEFINE_config_file('config', None, 'Another config than '
                                  'configs/top_down.py:<hps> (tests, other layouts).',
                                  lock_config=False)
  flags.mark_flags_as_required(['model', 'workdir'])


def image_shape(config) -> tuple[int, int, int]:
  """The images a VDVAE layout models: square, 3 channels, at its finest resolution."""
  layout = config.model.top_down
  side = tuple(layout.resolutions)[0] * layout.patch_size  # VDVAE's layouts are never padded
  return (side, side, 3)


def _as_in_state(kept, tree):
  """`tree` (parameter-shaped) in the form the state keeps in its place: one vector when
  `kept` is one (`optimizer.flatten`), else the tree itself."""
  if jax.tree.structure(kept) == jax.tree.structure(tree):
    return tree
  return optimizers.flattened(tree)


def _with_average(opt_state, average):
  """`opt_state` with the moving average of the parameters replaced by `average`."""
  return jax.tree.map(
      lambda node: node._replace(average=_as_in_state(node.average, average))
      if isinstance(node, optimizers.ParameterAverageState) else node,
      opt_state, is_leaf=lambda node: isinstance(node, optimizers.ParameterAverageState))


def _at_step(tree, step: int):
  """`tree` (an optax state) with every `count` (Adam's bias correction, the schedules'
  steps) at `step`."""
  if isinstance(tree, tuple) and hasattr(tree, '_fields'):
    fields = {name: _at_step(value, step) for name, value in zip(tree._fields, tree)}
    if 'count' in fields:
      fields['count'] = jnp.asarray(step, jnp.asarray(tree.count).dtype)
    return type(tree)(**fields)
  if isinstance(tree, (tuple, list)):
    return type(tree)(_at_step(value, step) for value in tree)
  return tree


def _with_adam_moments(opt_state, mu, nu, step: int):
  """`opt_state` with Adam's moments `mu`, `nu` and every count at `step`, as after `step`
  updates."""
  found = []

  def replace(node):
    if isinstance(node, optax.ScaleByAdamState):
      found.append(node)
      return node._replace(mu=_as_in_state(node.mu, mu), nu=_as_in_state(node.nu, nu))
    return node

  opt_state = jax.tree.map(replace, opt_state,
                           is_leaf=lambda node: isinstance(node, optax.ScaleByAdamState))
  if len(found) != 1:
    raise UserError("--opt imports Adam's moments, but optimizer.name is not adam or adamw.")
  return _at_step(opt_state, step)


def import_checkpoint(config, model_path: str, ema_path: str | None, workdir: str,
                      opt_path: str | None = None) -> steps.TrainState:
  """Writes `workdir` (config and a step-0 checkpoint; also its best one when the config stops
  early) from VDVAE's state_dict files; with `opt_path`, Adam's moments and step too."""
  if checkpointing.holds_trained_state(workdir):
    raise UserError(f'{workdir} already holds a trained checkpoint; import into a new folder '
                    '(nothing was written).')
  for path in filter(None, (model_path, ema_path, opt_path)):
    if not os.path.isfile(path):
      raise UserError(f'{path} not found: pass the checkpoint file VDVAE wrote.')
  shape = image_shape(config)
  model = models.build_model(config.model, shape)
  optimizer = optimizers.create_optimizer(config.optimizer, num_train_steps=1)
  template = runs.create_state(config, _Shape(shape, None), model, optimizer, jax.random.key(0))
  convert = lambda state_dict: vdvae_checkpoints.params_from_state_dict(
      state_dict, template.params, config.model.likelihood.num_components)
  model_state = torch_files.load_state_dict(model_path)
  params = convert(model_state)
  average = convert(torch_files.load_state_dict(ema_path)) if ema_path else params
  opt_state = _with_average(template.opt_state, average)
  if opt_path:
    step, exp_avg, exp_avg_sq = vdvae_checkpoints.adam_moments(
        torch_files.load_object(opt_path), model_state)
    opt_state = _with_adam_moments(opt_state, convert(exp_avg), convert(exp_avg_sq), step)
  state = template.replace(params=params, opt_state=opt_state)
  os.makedirs(workdir, exist_ok=True)
  saved = config.copy_and_resolve_references()
  saved.data = data.with_resolved_location(config.data)  # as training saves it
  checkpointing.save_config(saved, workdir)
  manager = checkpointing.create_training_checkpoint_manager(workdir, max_to_keep=1)
  checkpointing.save_training_checkpoint(manager, 0, state)
  managers = [manager]
  if config.early_stopping.metric:  # evaluate's default checkpoint, until training beats it
    best = checkpointing.create_checkpoint_manager(
        workdir, max_to_keep=1, folder=checkpointing.BEST_CHECKPOINT_DIRNAME)
    best.save(0, args=ocp.args.StandardSave(state))
    managers.append(best)
  for each in managers:
    each.wait_until_finished()
    each.close()
  return state


def config_arguments(argv: list[str], hps: str) -> list[str]:
  """The `--config` arguments of the import (file, variant and overrides, as given), or
  `configs/top_down.py:<hps>`: what `experiments.train` needs to resume the workdir."""
  given = [argument for argument in argv[1:]
           if argument.startswith('--config=') or argument.startswith('--config.')]
  if not any(argument.startswith('--config=') for argument in given):
    given.insert(0, f'--config=configs/top_down.py:{hps}')
  return given


def printed_commands(workdir: str, config_args: list[str]) -> list[str]:
  """The commands that evaluate, draw from and train on the imported workdir."""
  quoted = shlex.quote(workdir)
  return [f'python -m experiments.evaluate --workdir={quoted} --evals=elbo',
          f'python -m experiments.visualize --workdir={quoted}',
          'python -m experiments.train ' + ' '.join(
              shlex.quote(argument) for argument in [*config_args, f'--workdir={workdir}'])]


def main(argv):
  del argv
  options = flags.FLAGS
  config_args = config_arguments(sys.argv, options.hps)
  config = launch.with_imports(options.config or top_down_configs.get_config(options.hps))
  layout = (f'the layout of {config_args[0].removeprefix("--config=")}' if options.config
            else f'its {options.hps} layout')
  if config.model.likelihood.small_bins != SMALL_BINS:
    logging.info("model.likelihood.small_bins=%r -> %r: VDVAE's loss.",
                 config.model.likelihood.small_bins, SMALL_BINS)
    config.model.likelihood.small_bins = SMALL_BINS
    config_args.append(f'--config.model.likelihood.small_bins={SMALL_BINS}')
  import_checkpoint(config, options.model, options.ema, options.workdir, options.opt)
  weights = (f'the moving average (EMA) of {options.ema}' if options.ema else
             f'the raw parameters of {options.model} (no --ema: no moving average)')
  optimizer = (f"Adam's moments and step from {options.opt}" if options.opt else
               'a fresh optimizer state (no --opt)')
  print(f'{options.workdir}: VDVAE weights in {layout} at step 0; evaluate and visualize use '
        f'{weights}; training resumes from {options.model} with {optimizer}. Run from the '
        'repository root:')
  print('\n'.join(printed_commands(options.workdir, config_args)), flush=True)


if __name__ == '__main__':
  define_flags()
  launch.run(main)
