r"""Trains a sweep: many runs of one config, each with its own overrides and workdir.

  python -m experiments.sweep --config=configs/mnist.py --sweep=lr_beta --workdir=/tmp/sweep
  python -m experiments.sweep --config=configs/mnist.py --sweep=lr_beta --workdir=/tmp/sweep \
      --print_commands   # one experiments.train command per run, for SLURM arrays or xmanager

The default --workdir is runs/<config>[-<variant>]-<sweep>. Log lines carry each run's name;
the sweep ends with a table of every run's final evaluation.

A sweep is a function `get_sweep(name)` in the config file that returns a list of override
dicts with dotted keys, e.g. `[{'seed': 0, 'optimizer.learning_rate': 1e-3}, ...]`. Runs whose
overrides change only values that keep the computation's shapes (seeds, optimizer numbers, β,
KL warm-up, temperatures: `config_checks.sweepable_keys()`) are trained together in one compiled
program, vmapped over their stacked parameters and optimizer states; runs that change shapes
form separate groups, trained one group after another. Every run writes its own workdir,
WORKDIR/<run name>, as if trained alone, and can be resumed or evaluated alone.
"""

import copy
import importlib.util
import os
import re
import shlex
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from configs import default
from experiments import launch
from vae_jax import data
from vae_jax.engine import config_checks, metric_writers, training

def define_flags() -> None:
  """The command line (defined only when run as a program, so tests can import this module)."""
  config_flags.DEFINE_config_file(
      'config', None, 'Path to a config file (optionally :variant) that defines get_sweep(name).',
      lock_config=True)
  flags.DEFINE_string('sweep', None, 'Name passed to get_sweep() in the config file.')
  flags.DEFINE_string('workdir', None, 'Root folder: one workdir per run below it (default: '
                      'runs/<config>[-<variant>]-<sweep>).')
  flags.DEFINE_bool('print_commands', False,
                    'Print one experiments.train command per run; train nothing.')
  flags.mark_flags_as_required(['config'])


def load_sweep(config_spec: str, name: str | None) -> list[dict]:
  """The list of override dicts `get_sweep(name)` of the config file returns."""
  path = config_spec.split(':', 1)[0]
  spec = importlib.util.spec_from_file_location('sweep_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise app.UsageError(f'{path} defines no get_sweep(name); see experiments/sweep.py.')
  return module.get_sweep(name) if name else module.get_sweep()


def run_name(overrides: dict) -> str:
  """A workdir name from the overrides, e.g. 'optimizer.learning_rate=0.001,seed=1'."""
  text = ','.join(f'{key}={value}' for key, value in sorted(overrides.items())) or 'base'
  return re.sub(r'[^A-Za-z0-9_.,=+-]', '_', text)


def apply_overrides(config, overrides: dict):
  """A copy of `config` with dotted-key overrides applied (type-checked by ml_collections)."""
  config = copy.deepcopy(config)
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    if leaf not in node:
      raise KeyError(f'Sweep override {key!r}: the config has no such key.')
    node[leaf] = value
  return config


def group_runs(configs: list) -> list[list[int]]:
  """Indices of the runs, grouped so that each group may be vmapped together: a run joins the
  first group it differs from only in `config_checks.sweepable_keys()` (and `paper.*`)."""
  groups: list[list[int]] = []
  for index, config in enumerate(configs):
    group = next((g for g in groups
                  if not config_checks.group_differences([configs[g[0]], config])), None)
    if group is None:
      groups.append([index])
    else:
      group.append(index)
  return groups


def train_command(config_spec: str, workdir: str, overrides: dict,
                  command_line_overrides: list[str], data_config=None) -> str:
  """The experiments.train command of one run: the sweep's own --config.* flags, then the run's,
  then the data location of `data_config` (the `data` block) made absolute, so that the command
  finds the data from any directory, shell or cluster node."""
  arguments = ['python', '-m', 'experiments.train', f'--config={config_spec}',
               f'--workdir={workdir}', *command_line_overrides]
  arguments += [f'--config.{key}={value}' for key, value in sorted(overrides.items())]
  if data_config is not None:
    arguments += data.location_flags(data_config)
  return shlex.join(arguments)


def summary_table(workdirs: list[str]) -> str:
  """A markdown table of each run's last evaluation during training."""
  lines = ['| run | step | epoch | test ELBO | test bits/dim |', '|---|---|---|---|---|']
  for workdir in workdirs:
    metrics = metric_writers.read_metrics(workdir)
    last = next((m for m in reversed(metrics) if 'test/elbo' in m), None)
    if last is None:
      lines.append(f'| {os.path.basename(workdir)} | — | — | not evaluated | — |')
      continue
    epoch = next((m['epoch'] for m in reversed(metrics) if 'epoch' in m), float('nan'))
    lines.append(f"| {os.path.basename(workdir)} | {last['step']} | {epoch:g} | "
                 f"{last['test/elbo']:.3f} | {last['test/bits_per_dim']:.4f} |")
  return '\n'.join(lines)


def main(argv):
  del argv
  options = flags.FLAGS
  config_spec = config_flags.get_config_filename(options['config'])  # path[:variant]
  launch.set_data_location(options.config.data, options.data_dir, options.data_path)
  sweep = load_sweep(config_spec, options.sweep)
  root = options.workdir or launch.default_workdir(config_spec, options.sweep or 'sweep')
  workdirs = [os.path.join(root, run_name(overrides)) for overrides in sweep]
  if options.print_commands:
    command_line_overrides = [arg for arg in sys.argv[1:] if arg.startswith('--config.')]
    for workdir, overrides in zip(workdirs, sweep):
      print(train_command(config_spec, workdir, overrides, command_line_overrides,
                          options.config.data))
    return
  config = launch.with_imports(options.config)
  configs = [apply_overrides(config, overrides) for overrides in sweep]
  groups = group_runs(configs)
  logging.info('Sweep of %d runs in %d vectorised group(s) under %s: %s', len(sweep),
               len(groups), root, groups)
  for group in groups:
    training.train_and_evaluate_group([configs[i] for i in group], [workdirs[i] for i in group],
                                      defaults=default.get_config(config.imports))
  print(summary_table(workdirs))


if __name__ == '__main__':
  define_flags()
  launch.run(main)
