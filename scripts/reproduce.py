r"""Trains and evaluates paper configs at a chosen budget, then prints the results table.

  # 1% of each config's schedule (the IWAE schedule is compressed in proportion):
  python -m scripts.reproduce --configs=configs/iwae.py:vae_k1_l1,configs/iwae.py:iwae_k5_l1 \
      --budget=0.01 --root=/tmp/repro
  # The full schedule of every variant of a paper, e.g. on an accelerator:
  python -m scripts.reproduce --configs=configs/iwae.py --budget=1 --root=/runs/iwae
  # Only print the commands (one train + one evaluate per run), e.g. for a cluster scheduler:
  python -m scripts.reproduce --configs=configs/iwae.py --budget=1 --root=/runs/iwae --print_commands

A config given without a variant means all of its `VARIANTS`. Each run trains in
ROOT/<config>_<variant> (rerunning resumes it) and is evaluated with k importance samples.
The budget scales every schedule counted in epochs: num_epochs, the KL warm-up and early
stopping's patience and start (the IWAE learning-rate schedule follows num_epochs).
"""

import importlib.util
import os
import shlex
import subprocess
import sys

from absl import app, flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CONFIGS = flags.DEFINE_list('configs', None, 'Config files, each optionally with :variant.',
                             required=True)
_BUDGET = flags.DEFINE_float('budget', 1.0, "Fraction of each config's num_epochs to train.")
_ROOT = flags.DEFINE_string('root', None, 'Folder for the workdirs.', required=True)
_NUM_SAMPLES = flags.DEFINE_integer('num_importance_samples', 5000,
                                    'Importance samples per test example.')
_OVERRIDES = flags.DEFINE_multi_string('override', [], 'Extra --config.KEY=VALUE for training, '
                                       'e.g. --override=config.seed=1 (repeatable).')
_PRINT_COMMANDS = flags.DEFINE_bool('print_commands', False, 'Print the commands, run nothing.')


def load_config_module(path: str):
  module_spec = importlib.util.spec_from_file_location('config_module',
                                                       os.path.join(REPO_ROOT, path))
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def expand(spec: str) -> list[tuple[str, str]]:
  """'configs/iwae.py:vae_k1_l1' -> [(path, variant)]; 'configs/iwae.py' -> all its VARIANTS."""
  path, _, variant = spec.partition(':')
  if variant:
    return [(path, variant)]
  module = load_config_module(path)
  if not hasattr(module, 'VARIANTS'):
    raise app.UsageError(f'{path} lists no VARIANTS; name one as {path}:VARIANT.')
  return [(path, name) for name in module.VARIANTS]


def run_commands(path: str, variant: str, budget: float, root: str):
  """The workdir, and the train and evaluate commands (argument lists starting with 'python')."""
  workdir = os.path.join(root, f'{os.path.splitext(os.path.basename(path))[0]}_{variant}')
  config = load_config_module(path).get_config(variant)
  # Every schedule counted in epochs shrinks with the budget (the IWAE learning-rate schedule
  # follows num_epochs by itself).
  epochs = max(1, round(budget * config.num_epochs))
  warmup = round(budget * config.objective.kl_warmup_epochs)
  stopping = config.early_stopping
  scaled_stopping = [] if not stopping.metric or budget == 1 else [
      f'--config.early_stopping.patience_epochs={max(1, round(budget * stopping.patience_epochs))}',
      f'--config.early_stopping.start_epoch={round(budget * stopping.start_epoch)}']
  train = ['python', '-m', 'experiments.train', f'--config={path}:{variant}',
           f'--workdir={workdir}', f'--config.num_epochs={epochs}',
           *([f'--config.objective.kl_warmup_epochs={warmup}'] if warmup else []),
           *scaled_stopping,
           *(f'--{override}' for override in _OVERRIDES.value)]
  evaluate = ['python', '-m', 'experiments.evaluate', f'--workdir={workdir}',
              f'--num_importance_samples={_NUM_SAMPLES.value}']
  return workdir, train, evaluate


def main(argv):
  del argv
  if not 0 < _BUDGET.value <= 1:
    raise app.UsageError(f'--budget={_BUDGET.value} must be in (0, 1].')
  runs = [run for spec in _CONFIGS.value for run in expand(spec)]
  workdirs = []
  for path, variant in runs:
    workdir, train, evaluate = run_commands(path, variant, _BUDGET.value, _ROOT.value)
    workdirs.append(workdir)
    if _PRINT_COMMANDS.value:
      print(shlex.join(train) + ' && ' + shlex.join(evaluate))
      continue
    for command in (train, evaluate):
      print('+', shlex.join(command), flush=True)
      subprocess.run([sys.executable, *command[1:]], cwd=REPO_ROOT, check=True)
  if not _PRINT_COMMANDS.value:
    subprocess.run([sys.executable, '-m', 'scripts.results_table', f'--workdirs={",".join(workdirs)}'],
                   cwd=REPO_ROOT, check=True)


if __name__ == '__main__':
  app.run(main)
