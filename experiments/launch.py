"""What every launcher shares: readable errors, the data-location flags, the default workdir,
and the loading of a trained workdir.

Every launcher runs `launch.run(main)`. A mistake the user can fix (a `vae_jax.errors.UserError`:
a config value, missing data, a busy or mismatched workdir, a diverged run; or a bad command
line) ends with one short message on stderr, `error: ...`, and exit status 1 (2 for the command
line); `--traceback` shows the full traceback instead. A job stopped by SIGTERM or SIGINT
checkpoints, says so in one line and exits with 128 + the signal (what schedulers that requeue
preempted jobs look for). Any other exception is a bug and keeps its traceback.
"""

import ast
import difflib
import functools
import importlib.util
import logging as python_logging
import os
import re
import signal
import sys
from typing import NamedTuple

import jax
import ml_collections
from absl import app, flags, logging

from configs import default
from vae_jax import data, models, optimizers, registries
from vae_jax.engine import checkpointing, compilation_cache, config_checks, runs, steps
from vae_jax.errors import TrainingInterrupted, UserError, os_error_message

TRACEBACK = flags.DEFINE_bool('traceback', False,
                               'On a known error, show the full traceback, not just the message.')
DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'The TFDS data dir to read the dataset from (overrides the config and '
    '$TFDS_DATA_DIR; a trained workdir records the one it used).')
DATA_PATH = flags.DEFINE_string(
    'data_path', None, 'The data file, for datasets read from one (Frey Face: frey_rawface.mat).')

COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache', None, 'Folder of JAX\'s persistent compilation cache, so that a resumed '
    'run, a second run of a config and its evaluation reuse compiled programs (default: '
    '$JAX_COMPILATION_CACHE_DIR, else ~/.cache/vae_jax/jax_compilation; \'\' turns it off).')

USAGE_EXIT_CODE = 2
ERROR_EXIT_CODE = 1


def run(main) -> None:
  """`app.run(main)` with short messages for the user's mistakes (see the module docstring)."""
  app.run(functools.partial(_main_with_readable_errors, main), flags_parser=_parse_flags)


def _main_with_readable_errors(main, argv) -> None:
  if len(argv) > 1:  # a flag missing its `--`, say
    _exit(f'unexpected arguments {argv[1:]}: every argument is a --flag.', USAGE_EXIT_CODE)
  quiet_orbax_info_logs()
  try:
    main(argv)
  except (UserError, app.UsageError) as error:
    if TRACEBACK.value:
      raise
    _exit(str(error), USAGE_EXIT_CODE if isinstance(error, app.UsageError) else ERROR_EXIT_CODE)
  except TrainingInterrupted as interrupted:  # a clean stop, checkpointed: no traceback
    logging.warning('%s', interrupted)
    sys.exit(128 + interrupted.signal_number)
  except KeyboardInterrupt:  # Ctrl-C outside training (which checkpoints first, above)
    sys.stderr.write('error: interrupted (SIGINT) before finishing; a report not yet written '
                     'was not written.\n')
    sys.stderr.flush()
    # Not sys.exit: XLA's threads may still be computing, and an orderly shutdown can crash.
    os._exit(128 + signal.SIGINT)  # pylint: disable=protected-access
  except Exception as error:  # pylint: disable=broad-exception-caught
    message = os_error_message(error)  # a full disk, a read-only folder: no traceback either
    if message is None or TRACEBACK.value:
      raise
    _exit(message, ERROR_EXIT_CODE)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a config override that names no key (`--config.optimzer.x=1`)
  or an unparsable value reported in one line instead of chained tracebacks. The modules of a
  `--config.imports=...` override are imported first, so that the components they register,
  and their options, are in the config when it is built and overridden."""
  try:
    registries.import_modules(imports_named_in(argv))
  except UserError as error:
    _exit(str(error), ERROR_EXIT_CODE)
  _check_config_file(argv)
  try:
    remaining = flags.FLAGS(argv)
    _expand_home_in_paths()
    compilation_cache.use(COMPILATION_CACHE.value)
    return remaining
  except flags.Error as error:
    _exit(f'{_without_traceback(str(error))}{_config_flag_hint(str(error), argv)} '
          '(--helpfull lists every flag).', USAGE_EXIT_CODE)
  except (KeyError, AttributeError, TypeError, ValueError) as error:
    if '--traceback' in argv:
      raise
    unknown_key = _unknown_key(argv)
    if unknown_key:
      _exit(unknown_key, USAGE_EXIT_CODE)
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    overrides = [arg for arg in argv[1:] if arg.startswith('--config.')]
    missing_key = re.match(r"'([^']+)'", str(message))
    if missing_key:  # name the override that holds the unknown key
      overrides = [arg for arg in overrides if missing_key.group(1) in
                   arg.split('=', 1)[0].split('.')] or overrides
    _exit(f'a config override cannot be applied ({" ".join(overrides)}): '
          f'{" ".join(str(message).split()).rstrip(".")} (docs/configuration.md lists every key '
          'and its type).', USAGE_EXIT_CODE)
  return []  # not reached


def _unknown_key(argv: list[str]) -> str | None:
  """For the first `--config.a.b.c=...` override whose key the config lacks: that key, the
  block it is missing from and that block's closest keys, in one line (or None)."""
  config = _config_named_in(argv)
  for arg in argv[1:]:
    if not arg.startswith('--config.') or config is None:
      continue
    flag, path = arg.split('=', 1)[0], arg.split('=', 1)[0].removeprefix('--config.').split('.')
    block = config
    for depth, key in enumerate(path):
      where = '.'.join(path[:depth]) or 'the config'
      if not isinstance(block, ml_collections.ConfigDict):
        return f'{flag}: {where} is a value, not a block of keys (docs/configuration.md).'
      if key not in block:
        keys = sorted(block.keys())
        closest = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
        hint = (f'did you mean {" or ".join(closest)}?' if closest else
                f'its keys are {", ".join(keys)}; the options of a component from your own '
                'module exist only when config.imports names that module.')
        return f'{flag}: {where} has no key {key!r}; {hint}'
      block = block[key]
  return None


def _config_named_in(argv: list[str]) -> ml_collections.ConfigDict | None:
  """The config of the command line's `--config=FILE[:VARIANT]`, before its overrides."""
  spec = next((arg.removeprefix('--config=') for arg in argv if arg.startswith('--config=')),
              None)
  if spec is None:
    return None
  path, _, variant = spec.partition(':')
  try:
    module_spec = importlib.util.spec_from_file_location('_launch_config', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()
  except Exception:  # pylint: disable=broad-exception-caught
    return None  # absl reports it in its own words


def _expand_home_in_paths() -> None:
  """`--workdir=~/runs/x`: the shell leaves a `~` after `=`, which would make a folder named
  '~' in the current directory; every path flag's `~` is the user's home instead."""
  for name in ('workdir', 'data_dir', 'data_path', 'report_dir', 'root'):
    if name in flags.FLAGS and isinstance(flags.FLAGS[name].value, str):
      flags.FLAGS[name].value = os.path.expanduser(flags.FLAGS[name].value)


def _check_config_file(argv: list[str]) -> None:
  """A --config file that does not exist, in one line (ml_collections would defer the error
  to the first use of the config, with two chained tracebacks)."""
  for arg in argv[1:]:
    if arg.startswith('--config='):
      path = os.path.expanduser(arg.removeprefix('--config=').split(':', 1)[0])
      if not os.path.isfile(path):
        _exit(f'--config={arg.removeprefix("--config=")}: there is no file {path} (relative '
              f'paths start at {os.getcwd()}).', USAGE_EXIT_CODE)


def _without_traceback(message: str) -> str:
  """A flag error whose text embeds a traceback (an exception raised by a config file's
  get_config): the text before it and the exception's own last line."""
  head, marker, tail = message.partition('Traceback (most recent call last):')
  if not marker:
    return message
  last = [line.strip() for line in tail.splitlines() if line.strip()][-1]
  return f'{head.strip().rstrip(":")}: {last.split(": ", 1)[-1]}'


def _config_flag_hint(message: str, argv: list[str]) -> str:
  unknown_override = "Unknown command line flag 'config." in message
  if unknown_override and not any(arg.startswith('--config=') for arg in argv):
    return '; --config.KEY=VALUE overrides need --config=FILE before them'
  return ''


def imports_named_in(argv: list[str]) -> tuple[str, ...]:
  """The module names of the command line's `--config.imports=...` overrides."""
  names = []
  for arg in argv:
    if arg.startswith('--config.imports='):
      text = arg.split('=', 1)[1]
      try:
        value = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        value = text
      names += [value] if isinstance(value, str) else list(value)
  return tuple(names)


def _exit(message: str, code: int) -> None:
  sys.stderr.write(f'error: {message}\n')
  sys.stderr.flush()
  sys.exit(code)


def quiet_orbax_info_logs() -> None:
  """Orbax logs each checkpoint step by step at INFO; keep its warnings and errors only."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= python_logging.WARNING or '/orbax/' not in record.pathname)


def set_data_location(data_config, data_dir: str | None, data_path: str | None) -> None:
  """Sets the `data` block's TFDS data dir and data file, where given (--data_dir, --data_path)."""
  if data_dir:
    data_config.tfds_data_dir = data_dir
  if data_path:
    data_config.path = data_path


def default_workdir(config_spec: str, *suffixes: str) -> str:
  """`runs/<config>[-<variant>][-<suffix>...]` below the current directory, e.g.
  'runs/mnist' for configs/mnist.py and 'runs/iwae-vae_k1_l1' for configs/iwae.py:vae_k1_l1."""
  path, _, variant = config_spec.partition(':')
  parts = [os.path.splitext(os.path.basename(path))[0], variant, *suffixes]
  return os.path.join('runs', '-'.join(part for part in parts if part))


CHECKPOINT_CHOICES = ('auto', 'best', 'latest')


def resolve_checkpoint(config, checkpoint: str) -> str:
  """'best' or 'latest': 'auto' is 'best' for a run that stops early, as the papers that stop
  early evaluate."""
  if checkpoint != 'auto':
    return checkpoint
  return 'best' if config.early_stopping.metric else 'latest'


def checkpoint_folder(config, checkpoint: str) -> str:
  """The folder below the workdir that `checkpoint` ('auto', 'best' or 'latest') reads from."""
  return {'best': checkpointing.BEST_CHECKPOINT_DIRNAME,
          'latest': checkpointing.CHECKPOINT_DIRNAME}[resolve_checkpoint(config, checkpoint)]


def with_imports(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with the modules of `config.imports` imported and the options of the components
  they register added at their defaults (for a config file that set `imports` by hand)."""
  registries.import_modules(config.imports)
  return registries.complete(config)


def load_saved_config(workdir: str) -> ml_collections.ConfigDict:
  """A workdir's saved config, its `imports` imported first (they register the components it
  names) and keys added since it was saved filled with their defaults."""
  saved_imports = checkpointing.load_config(workdir).get('imports', ())
  return checkpointing.load_config(workdir, defaults=default.get_config(saved_imports))


class Trained(NamedTuple):
  """A trained workdir, as `load_trained` reads it."""
  config: ml_collections.ConfigDict
  dataset: data.Dataset
  model: object
  state: steps.TrainState  # as checkpointed: `state.params` are the trained parameters
  eval_params: object  # what to evaluate and sample with: their moving average, if kept


def load_trained(workdir: str, step: int | None = None, *, data_dir: str | None = None,
                 data_path: str | None = None, checkpoint: str = 'auto') -> Trained:
  """A trained workdir's config (with defaults for keys added since; its data location replaced
  by `data_dir` / `data_path` where given), its data, its model, the train state of checkpoint
  `step` (default: the latest readable one) as saved, and the parameters to evaluate: the
  moving average when the run keeps one (`optimizer.ema_decay`), else the state's `params`.

  `checkpoint` chooses among `WORKDIR/checkpoints/` ('latest') and, for runs with early
  stopping, `WORKDIR/checkpoints_best/` ('best'); see `resolve_checkpoint` for 'auto'."""
  config = load_saved_config(workdir)
  set_data_location(config.data, data_dir, data_path)
  dataset = data.load_dataset(config.data, standardization=data.Standardization.load(workdir))
  config_checks.validate_config_for_data(config, dataset)
  model = models.build_model(config.model, dataset.data_shape)
  optimizer = optimizers.create_optimizer(config.optimizer, num_train_steps=1)
  target = runs.create_state(config, dataset, model, optimizer, jax.random.key(0))  # as training
  state = checkpointing.restore_state(workdir, target, step,
                                     folder=checkpoint_folder(config, checkpoint))
  return Trained(config, dataset, model, state,
                 optimizers.evaluation_params(state.params, state.opt_state))
