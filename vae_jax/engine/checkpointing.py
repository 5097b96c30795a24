"""What a workdir holds between runs: the config it was trained with, and orbax checkpoints.

WORKDIR/config.json       the config of the run (ml_collections JSON)
WORKDIR/checkpoints/N/    orbax checkpoints at step N (the last few kept): the train state in
                          N/default/ and, with the grain pipeline, the data iterator's state
                          in N/data_iterator/ (one JSON file per process)
WORKDIR/checkpoints_best/N/  with early stopping: the state of the best evaluation, at step N
"""

from __future__ import annotations

import copy
import json
import os
import shutil

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from vae_jax import files, options, registries
from vae_jax.engine import checkpoint_reads
from vae_jax.errors import UserError

CONFIG_FILENAME = 'config.json'
CHECKPOINT_DIRNAME = 'checkpoints'
BEST_CHECKPOINT_DIRNAME = 'checkpoints_best'  # early stopping: the best evaluation's state
UNREADABLE_DIRNAME = 'checkpoints_unreadable'  # unreadable checkpoints are moved here, never deleted
# The items of a training checkpoint. 'default' is orbax's name for a single item, so that a
# single-item manager (evaluation, `restore_state`) reads the state of either layout.
STATE_ITEM, DATA_ITERATOR_ITEM = 'default', 'data_iterator'

# What a resume may change is declared by each option's traits (`vae_jax.options`): keys that
# shape the state never, operational keys freely, the rest with --allow_config_change. Keys of
# evaluators and published numbers that no registered component declares (an outside
# evaluator not imported here, say) are operational too: they never change what is trained.
OPERATIONAL_KEY_PREFIXES = ('evals.', 'paper.')
# Keys renamed since configs were first saved: old name -> new dotted name.
RENAMED_KEYS = {'eval_num_samples': 'evals.elbo.num_samples',
                'num_image_samples': 'evals.images.num_images'}
class WorkdirConfigMismatchError(UserError, ValueError):
  """The workdir holds a run trained with a config that differs in what is trained."""


class CheckpointError(UserError, RuntimeError):
  """No checkpoint of the workdir can be read."""


class DamagedConfigError(UserError, ValueError):
  """A workdir's config.json cannot be parsed."""


class NotAWorkdirError(UserError, FileNotFoundError):
  """The folder holds no readable vae_jax config."""


def config_differences(saved: dict, new: dict, prefix: str = '') -> list[tuple[str, object, object]]:
  """`(dotted_key, saved_value, new_value)` for every key whose value differs."""
  differences = []
  for key in sorted(set(saved) | set(new)):
    dotted = f'{prefix}{key}'
    old_value, new_value = saved.get(key, '<absent>'), new.get(key, '<absent>')
    if isinstance(old_value, dict) and isinstance(new_value, dict):
      differences += config_differences(old_value, new_value, prefix=f'{dotted}.')
    elif old_value != new_value:
      differences.append((dotted, old_value, new_value))
  return differences


def check_config(config: ml_collections.ConfigDict, workdir: str, *,
                 defaults: ml_collections.ConfigDict | None, allow_changes: bool = False,
                 warn: bool = True) -> None:
  """Reads nothing but the workdir's saved config, writes nothing. If one is there already (a
  run to resume), compares it with `config` (the saved config upgraded first: renamed keys
  moved, keys added since filled from `defaults`, the caller's default config — the launchers
  pass `configs/default.py`'s; with None nothing is filled, and a key the saved config lacks
  is a difference like any other):

  * only the options of the components each config uses are compared: a key neither reads
    (an MLP run's `model.top_down.*`) changes nothing;
  * differences in operational keys (`options.OPERATIONAL`: how often to log, where the data
    is) are accepted with a warning;
  * differences in keys that shape the checkpointed state (`options.SHAPES_STATE`: the model,
    the dataset, the optimizer's kind) or decide which examples are trained on
    (`options.SPLITS`: the validation and test sizes, the split seed) are refused, always;
  * other differences (the number of epochs, a learning rate, a seed) are refused unless
    `allow_changes` (`--allow_config_change`), then accepted with a warning (if `warn`).
  A refusal (`WorkdirConfigMismatchError`) lists every difference.
  """
  path = os.path.join(workdir, CONFIG_FILENAME)
  if not os.path.exists(path):
    if holds_trained_state(workdir):  # its checkpoints would be read as this config's
      raise WorkdirConfigMismatchError(
          f'{workdir} holds checkpoints but no {CONFIG_FILENAME}, so what they were trained '
          f'with cannot be checked. Put the run\'s {CONFIG_FILENAME} back to resume it, or '
          'train in a new --workdir.')
    return
  saved = _read_saved_config(path, workdir)
  saved = upgrade_saved_config(saved, {} if defaults is None else json.loads(defaults.to_json()),
                               path)
  differences = config_differences(_stored(ml_collections.ConfigDict(saved)), _stored(config))
  schema = registries.schema()
  shape = [d for d in differences if d[0] in schema and schema[d[0]].has(options.SHAPES_STATE)]
  splits = [d for d in differences if d not in shape and d[0] in schema
            and schema[d[0]].has(options.SPLITS)]
  other = [d for d in differences
           if d not in shape + splits and not _is_operational(*d, schema)]
  refused = shape + splits + ([] if allow_changes else other)
  if refused:
    listing = [f'{key}: {old!r} (saved) -> {value!r} (now)' for key, old, value in refused]
    listing = listing[0] if len(listing) == 1 else '\n  ' + '\n  '.join(listing)
    if shape:
      advice = 'These change the shapes of the saved state: use a new --workdir.'
    elif splits:
      advice = ('These decide which examples are trained on, and the model has trained on '
                'the saved split (a new validation or test split would hold images it has '
                'seen): use a new --workdir.')
    else:
      advice = ('To resume with these values anyway, pass --allow_config_change '
                '(allow_changes=True).')
    raise WorkdirConfigMismatchError(
        f'{workdir} holds a run with a different config: {listing}\n{advice} Or restore '
        'the saved values to resume as it was.')
  if differences and warn:
    logging.warning('Resuming %s with changed settings: %s', workdir,
                    ', '.join(f'{k}: {o!r} -> {v!r}' for k, o, v in differences))


def _read_saved_config(path: str, workdir: str) -> dict:
  """The saved config.json; one line naming it if it is damaged (every launch writes it whole,
  through a temporary file, so damage came from outside: a copy cut short, an editor)."""
  try:
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
  except (UnicodeDecodeError, ValueError) as error:
    raise DamagedConfigError(
        f'{path} is damaged ({error}), so what {workdir} was trained with cannot be read. Put '
        f"back a good copy of the run's {CONFIG_FILENAME}, or train in a new --workdir.") from None
  if not isinstance(saved, dict):
    raise DamagedConfigError(f'{path} holds no config (a JSON {type(saved).__name__}): put back '
                             f"a good copy of the run's {CONFIG_FILENAME}, or train in a new "
                             '--workdir.')
  return saved


def _is_operational(key: str, old, new, schema) -> bool:
  option = schema.get(key)
  if option is None:
    return key.startswith(OPERATIONAL_KEY_PREFIXES)
  if option.resumable_between:
    return any({old, new} <= group for group in option.resumable_between)
  return option.has(options.OPERATIONAL)


def _stored(config: ml_collections.ConfigDict) -> dict:
  """What a workdir keeps of a config: the options of the components it uses (`prune`), as
  JSON. A key no component of the run reads (an MLP run's `model.top_down.*`) is not kept, so
  changing it changes nothing."""
  return json.loads(registries.prune(config).to_json())


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the options of the components the run uses (`_stored`); a run reads the others
  back at their defaults (`load_config`)."""
  files.write_text_atomically(os.path.join(workdir, CONFIG_FILENAME),
                    json.dumps(_stored(config), indent=2, sort_keys=True) + '\n')


def holds_trained_state(workdir: str) -> bool:
  """Whether the workdir has a checkpoint, readable or set aside as unreadable: only then does
  its saved config describe something trained (a launch that failed before its first
  checkpoint leaves a config that nothing depends on)."""
  return any(_step_folders(os.path.join(workdir, folder))
             for folder in (CHECKPOINT_DIRNAME, UNREADABLE_DIRNAME))


def step_folders(workdir: str, folder: str = CHECKPOINT_DIRNAME) -> list[int]:
  """The steps of the finished checkpoints in WORKDIR/checkpoints (or WORKDIR/`folder`, e.g.
  BEST_CHECKPOINT_DIRNAME), read from the folder names (nothing is restored)."""
  return _step_folders(os.path.join(workdir, folder))


def _step_folders(folder: str) -> list[int]:
  """The finished checkpoints in a folder (orbax writes into a temporary name, then renames)."""
  if not os.path.isdir(folder):
    return []
  return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def load_config(workdir: str,
                defaults: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """The config a workdir was trained with. Keys that `defaults` has and the saved config lacks
  (a workdir from before they existed) take their default values, with a warning."""
  path = os.path.join(workdir, CONFIG_FILENAME)
  if not os.path.isfile(path):
    raise NotAWorkdirError(f'{path} not found: {workdir} is not a vae_jax workdir (train one with '
                           '`python -m experiments.train --workdir=...`).')
  saved = _lists_to_tuples(_read_saved_config(path, workdir))
  if defaults is not None:
    saved = upgrade_saved_config(saved, _lists_to_tuples(json.loads(defaults.to_json())), path)
  return ml_collections.ConfigDict(saved)


def upgrade_saved_config(saved: dict, defaults: dict, path: str) -> dict:
  """A saved config in today's keys: renamed keys (`RENAMED_KEYS`) moved to their new names,
  and keys added since it was saved filled with their defaults (with a warning)."""
  saved = dict(saved)
  moved = {}
  for old, new in RENAMED_KEYS.items():
    if old in saved:
      moved[new] = saved.pop(old)
  upgraded = _merge(copy.deepcopy(defaults), saved)
  for dotted, value in moved.items():
    *parents, leaf = dotted.split('.')
    node = upgraded
    for parent in parents:
      node = node.setdefault(parent, {})  # absent when there are no defaults to fill it
    node[leaf] = value
  # Only options of the components the run uses are saved: the others are absent by design.
  had = set(options.flatten(saved)) | set(moved)
  missing = sorted(set(options.flatten(_stored(ml_collections.ConfigDict(upgraded)))) - had)
  if missing:
    logging.warning('%s predates config keys %s; using their defaults.', path, missing)
  return upgraded


def _merge(defaults: dict, overrides: dict) -> dict:
  merged = dict(defaults)
  for key, value in overrides.items():
    if isinstance(value, dict) and isinstance(merged.get(key), dict):
      value = _merge(merged[key], value)
    merged[key] = value
  return merged


def _lists_to_tuples(tree):
  """JSON has no tuples; configs use them for sizes (hashable, as Flax module fields need)."""
  if isinstance(tree, dict):
    return {key: _lists_to_tuples(value) for key, value in tree.items()}
  if isinstance(tree, list):
    return tuple(_lists_to_tuples(value) for value in tree)
  return tree


def create_checkpoint_manager(workdir: str, max_to_keep: int,
                              folder: str = CHECKPOINT_DIRNAME) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), folder),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def create_training_checkpoint_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  """The manager of WORKDIR/checkpoints while training: each step holds the train state and,
  when the run streams its data with grain, the data iterator's state."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), CHECKPOINT_DIRNAME),
      item_names=(STATE_ITEM, DATA_ITERATOR_ITEM),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def save_training_checkpoint(manager: ocp.CheckpointManager, step: int, state,
                             data_iterator=None) -> None:
  """Saves the train state at `step` (and the grain iterator that yields step `step`'s batch
  next, if given) with a `create_training_checkpoint_manager` manager."""
  check_space_for(state, str(manager.directory), step)
  items = {STATE_ITEM: ocp.args.StandardSave(state)}
  if data_iterator is not None:
    import grain  # pylint: disable=import-outside-toplevel
    items[DATA_ITERATOR_ITEM] = grain.checkpoint.CheckpointSave(data_iterator)
  manager.save(step, args=ocp.args.Composite(**items))


class NoSpaceError(UserError, OSError):
  """Too little free space for the next checkpoint."""


def check_space_for(state, folder: str, step: int) -> None:
  """Refuses to start a save that cannot fit: orbax's writer threads would fail one after
  another with pages of tracebacks. The estimate is the state's bytes plus a margin for
  metadata; the checkpoints already saved are untouched."""
  needed = sum(leaf.nbytes for leaf in jax.tree.leaves(state) if hasattr(leaf, 'nbytes'))
  needed = int(needed * 1.1) + (1 << 20)
  free = shutil.disk_usage(folder if os.path.isdir(folder) else os.path.dirname(folder)).free
  if free < needed:
    raise NoSpaceError(
        f'No space left for the checkpoint at step {step} in {folder}: it needs about '
        f'{needed / 1e6:.1f} MB and {free / 1e6:.1f} MB are free. Free some space there and '
        'rerun the same command to resume from the last checkpoint saved.')


def restore_data_iterator(manager: ocp.CheckpointManager, step: int, data_iterator) -> bool:
  """Puts `data_iterator` where it was when the checkpoint at `step` was saved. False (and
  the iterator untouched) when that checkpoint holds no iterator: it was saved by a run fed
  another way."""
  import grain  # pylint: disable=import-outside-toplevel
  if not os.path.isdir(os.path.join(str(manager.directory), str(step), DATA_ITERATOR_ITEM)):
    return False
  manager.restore(step, args=ocp.args.Composite(
      **{DATA_ITERATOR_ITEM: grain.checkpoint.CheckpointRestore(data_iterator)}))
  return True


def restore_latest_readable(manager: ocp.CheckpointManager, target, workdir: str):
  """The latest checkpoint that can be read, shaped like `target`; None for a new run.
  `manager` is a `create_training_checkpoint_manager` one.

  A checkpoint that cannot be read (truncated, corrupted) is moved to
  WORKDIR/checkpoints_unreadable/<step> — kept, never deleted — with a warning, and the one
  before it is tried. If none can be read, raises `CheckpointError` rather than starting over,
  and keeps raising at every later launch while checkpoints_unreadable/ holds checkpoints and
  checkpoints/ none: only the user decides that this run starts again from step 0.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  for step in steps:
    try:
      return checkpoint_reads.read(lambda like, step=step: manager.restore(
          step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(like)})
      )[STATE_ITEM], target, step)
    except Exception as error:  # pylint: disable=broad-except
      destination = os.path.join(workdir, UNREADABLE_DIRNAME, str(step))
      logging.warning('Checkpoint %d in %s cannot be read (%s: %s); moving it to %s and trying '
                      'the previous one.', step, workdir, type(error).__name__,
                      _first_line(error), destination)
      os.makedirs(os.path.dirname(destination), exist_ok=True)
      os.replace(os.path.join(workdir, CHECKPOINT_DIRNAME, str(step)), destination)
      manager.reload()
  unreadable = _step_folders(os.path.join(workdir, UNREADABLE_DIRNAME))
  if unreadable:
    folder = os.path.join(workdir, UNREADABLE_DIRNAME)
    raise CheckpointError(
        f'No checkpoint in {workdir} can be read: the unreadable ones (steps {unreadable}) are in '
        f'{folder}. Nothing was overwritten. To train this run again from step 0 in this '
        f'workdir, move or delete {folder}; or pass a new --workdir.')
  return None


def restore_state(workdir: str, target, step: int | None = None,
                  folder: str = CHECKPOINT_DIRNAME):
  """Reads the checkpointed state at `step` of `WORKDIR/folder`, shaped like `target`, moving
  nothing (for evaluation). Without `step`, the latest readable one: an unreadable later one is
  skipped with a warning that names it."""
  # max_to_keep: this manager never deletes anything
  manager = create_checkpoint_manager(workdir, max_to_keep=1_000_000, folder=folder)
  try:
    available = sorted(manager.all_steps(), reverse=True)
    if not available and folder == BEST_CHECKPOINT_DIRNAME:
      raise CheckpointError(f'No best checkpoint in {os.path.join(workdir, folder)}: the run has '
                            'no early stopping (early_stopping.metric), or has not evaluated yet. '
                            'Evaluate the latest checkpoint instead (--checkpoint=latest).')
    if not available:
      raise CheckpointError(f'No checkpoint in {os.path.join(workdir, folder)}: '
                            'train this workdir first (python -m experiments.train).')
    if step is not None and step not in available:
      raise CheckpointError(f'No checkpoint at step {step} in {workdir}; available steps: '
                            f'{sorted(available)} (pass one with --step).')
    failures = []
    for candidate in ([step] if step is not None else available):
      try:
        state = checkpoint_reads.read(lambda like, step=candidate: manager.restore(
            step, args=ocp.args.StandardRestore(like)), target, candidate)
      except Exception as error:  # pylint: disable=broad-except
        failures.append(f'step {candidate} ({type(error).__name__}: {_first_line(error)})')
        logging.warning('The checkpoint at step %d in %s cannot be read (%s); trying the one '
                        'before it.', candidate, workdir, failures[-1])
        continue
      if failures:
        logging.warning('Using the checkpoint at step %d: the later %s cannot be read. Pass '
                        '--step to choose another.', candidate, ', '.join(failures))
      return state
    others = [other for other in available if other != step]
    choice = (f' Other steps: {sorted(others)} (pass one with --step).' if others and step
              is not None else '')
    raise CheckpointError(f'Cannot read the checkpoint{"s" if len(failures) > 1 else ""} in '
                          f'{workdir}: {"; ".join(failures)}.{choice}')
  finally:
    manager.close()


def _first_line(error: Exception) -> str:
  return (str(error).strip().splitlines() or [''])[0][:200]


