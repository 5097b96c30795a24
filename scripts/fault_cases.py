r"""The disk, damaged-file and divergence cases of the fault-injection battery
(`python -m scripts.fault_injection --battery`; the signal cases are in fault_injection.py).

Each case breaks what a user's machine can break — the disk fills, it turns read-only, a file
is damaged, the loss runs away between logs — and runs the command the user would. It passes
when the user is told in one line (`error: ...`, no traceback, a non-zero exit) or the job
carries on by itself, when nothing saved before is lost (every checkpoint, config.json), and,
where the fault can be repaired (space freed, the disk writable again, the file put back), when
the same command then finishes bitwise equal to an uninterrupted run (the last checkpoint's
arrays, the evaluation metrics, every logged line). Evaluations must end with a whole report.

Full and read-only disks are a small tmpfs mounted for the case, which needs root (as in CI and
on this project's machines); elsewhere those cases are listed as skipped, and the same errors
are covered in process by tests/scenarios/test_faults.py with injected OSErrors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = ('Traceback', 'Exception ignored', 'Event loop is closed')


@dataclasses.dataclass
class Outcome:
  passed: bool
  what: str  # what was seen, in a few words or the error line


@dataclasses.dataclass
class Case:
  name: str
  what: str
  run: Callable[['Lab', str], Outcome]  # (the lab, the case's folder) -> outcome
  needs_root: bool = False


class Lab:
  """What the cases share: the commands, an uninterrupted run to compare with, a tmpfs."""

  def __init__(self, root: str, epochs: int, train_command, compare, interrupt):
    self.root, self.epochs = root, epochs
    self._train_command, self._compare, self._interrupt = train_command, compare, interrupt
    self._straight = os.path.join(root, 'device_uninterrupted')

  @property
  def straight(self) -> str:
    """The uninterrupted run (shared with the signal cases), trained when first needed."""
    if not os.path.isdir(os.path.join(self._straight, 'checkpoints')):
      subprocess.run(self.train(self._straight), cwd=REPO_ROOT, check=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return self._straight

  def train(self, workdir: str, *overrides: str) -> list[str]:
    return [*self._train_command(workdir, self.epochs, 'device'), *overrides]

  def evaluate(self, workdir: str) -> list[str]:
    return [sys.executable, '-m', 'experiments.evaluate', f'--workdir={workdir}', '--evals=elbo']

  def partial(self, workdir: str) -> None:
    """A run stopped (SIGTERM) right after its first evaluation: one to resume."""
    self._interrupt(workdir, signal.SIGTERM, 'evaluation')

  def finished(self, workdir: str) -> None:
    shutil.copytree(self.straight, workdir)

  def equal_to_uninterrupted(self, workdir: str) -> tuple[bool, str]:
    result = self._compare(self.straight, workdir)
    failed = [key for key in ('bitwise_equal', 'evaluation_metrics_equal', 'no_line_skipped')
              if not result[key]]
    return not failed, 'ends equal to an uninterrupted run' if not failed else 'NOT ' + ', '.join(
        failed)


def launch(command: list[str]) -> subprocess.CompletedProcess:
  return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def one_line_refusal(result: subprocess.CompletedProcess, *names: str) -> tuple[bool, str]:
  """Exit 1, one `error:` line naming `names`, and no traceback or library noise."""
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  noise = [word for word in NOISE if word in result.stderr]
  line = errors[0] if errors else (result.stderr.strip().splitlines() or ['(nothing)'])[-1]
  passed = (result.returncode == 1 and len(errors) == 1 and not noise
            and all(name in line for name in names))
  return passed, f'exit {result.returncode}: {line}' + (f' [{", ".join(noise)}]' if noise else '')


def saved_files(workdir: str) -> dict[str, bytes]:
  """The bytes of what a user keeps: config.json and every finished checkpoint."""
  kept = {}
  for folder, _, names in os.walk(workdir):
    relative = os.path.relpath(folder, workdir)
    if relative.startswith('checkpoints') and 'tmp' not in relative or relative == '.':
      for name in names:
        if relative != '.' or name == 'config.json':
          with open(os.path.join(folder, name), 'rb') as f:
            kept[os.path.join(relative, name)] = f.read()
  return kept


class Tmpfs:
  """A small tmpfs at `path` (root only), filled or made read-only for a case."""

  def __init__(self, path: str, size: str = '64m'):
    self.path = path
    os.makedirs(path, exist_ok=True)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', path], check=True)

  def fill(self, leave_bytes: int) -> None:
    free = shutil.disk_usage(self.path).free
    with open(os.path.join(self.path, 'filler'), 'wb') as f:
      f.truncate(0)
      block = b'\0' * (1 << 20)
      remaining = max(0, free - leave_bytes)
      while remaining > 0:
        written = f.write(block[:min(len(block), remaining)])
        remaining -= written
    os.sync()

  def free_space(self) -> None:
    os.remove(os.path.join(self.path, 'filler'))

  def read_only(self, on: bool) -> None:
    subprocess.run(['mount', '-o', f'remount,{"ro" if on else "rw"}', self.path], check=True)

  def __enter__(self) -> 'Tmpfs':
    return self

  def __exit__(self, *exception) -> None:
    subprocess.run(['umount', self.path], check=False)


def _refused_then_repaired(lab: Lab, workdir: str, command: list[str], repair: Callable[[], None],
                           *names: str) -> Outcome:
  """The command is refused in one line with the saved files intact; after `repair`, the same
  command ends equal to an uninterrupted run."""
  before = saved_files(workdir) if os.path.isdir(workdir) else {}
  refused, line = one_line_refusal(launch(command), *names)
  kept = all(saved_files(workdir).get(name) == data for name, data in before.items())
  repair()
  rerun = launch(command)
  if rerun.returncode != 0:
    return Outcome(False, f'{line}; after the repair: exit {rerun.returncode}')
  equal, said = lab.equal_to_uninterrupted(workdir)
  kept_said = 'saved files kept' if kept else 'SAVED FILES CHANGED'
  return Outcome(refused and kept and equal, f'{line}; {kept_said}; repaired, the rerun {said}')


# Disks


def disk_full_at_start(lab: Lab, folder: str) -> Outcome:
  with Tmpfs(folder) as disk:
    disk.fill(leave_bytes=0)
    workdir = os.path.join(folder, 'run')
    return _refused_then_repaired(lab, workdir, lab.train(workdir), disk.free_space,
                                  'No space left', folder)


def disk_full_mid_run(lab: Lab, folder: str) -> Outcome:
  with Tmpfs(folder) as disk:
    workdir = os.path.join(folder, 'run')
    lab.partial(workdir)
    disk.fill(leave_bytes=200_000)  # room for log lines, not for a checkpoint
    return _refused_then_repaired(lab, workdir, lab.train(workdir), disk.free_space,
                                  'No space left', workdir)


def read_only_workdir(lab: Lab, folder: str) -> Outcome:
  with Tmpfs(folder) as disk:
    workdir = os.path.join(folder, 'run')
    lab.partial(workdir)
    disk.read_only(True)
    return _refused_then_repaired(lab, workdir, lab.train(workdir),
                                  lambda: disk.read_only(False), 'read-only', folder)


def read_only_new_workdir(lab: Lab, folder: str) -> Outcome:
  with Tmpfs(folder) as disk:
    disk.read_only(True)
    workdir = os.path.join(folder, 'run')
    return _refused_then_repaired(lab, workdir, lab.train(workdir),
                                  lambda: disk.read_only(False), 'read-only', folder)


def _evaluation_refused_then_written(lab: Lab, workdir: str, repair: Callable[[], None],
                                     *names: str, numbers_first: bool) -> Outcome:
  result = launch(lab.evaluate(workdir))
  refused, line = one_line_refusal(result, *names)
  # Before computing (read-only: found in advance) or after, with the numbers printed.
  numbers = 'ELBO' in result.stdout
  reports = os.path.join(workdir, 'evaluation')
  partial = [name for name in os.listdir(reports)] if os.path.isdir(reports) else []
  repair()
  rerun = launch(lab.evaluate(workdir))
  written = []
  if rerun.returncode == 0 and os.path.isdir(reports):
    for name in os.listdir(reports):
      if name.endswith('.json'):
        with open(os.path.join(reports, name), encoding='utf-8') as f:
          written.append(json.load(f))
  passed = refused and numbers == numbers_first and not partial and len(written) == 1
  return Outcome(passed, f'{line}; numbers {"printed" if numbers else "not computed"}; '
                 f'{len(partial)} partial files; repaired, the rerun wrote {len(written)} report')


def disk_full_at_evaluation(lab: Lab, folder: str) -> Outcome:
  with Tmpfs(folder) as disk:
    workdir = os.path.join(folder, 'run')
    lab.finished(workdir)
    os.makedirs(os.path.join(workdir, 'evaluation'))
    disk.fill(leave_bytes=0)
    return _evaluation_refused_then_written(lab, workdir, disk.free_space, 'No space left',
                                            numbers_first=True)


def read_only_at_evaluation(lab: Lab, folder: str) -> Outcome:
  with Tmpfs(folder) as disk:
    workdir = os.path.join(folder, 'run')
    lab.finished(workdir)
    disk.read_only(True)
    return _evaluation_refused_then_written(lab, workdir, lambda: disk.read_only(False),
                                            'cannot be written', numbers_first=False)


# Damaged files of a run


def _latest_checkpoint(workdir: str) -> str:
  folder = os.path.join(workdir, 'checkpoints')
  return os.path.join(folder, str(max(int(name) for name in os.listdir(folder) if name.isdigit())))


def _resumes_by_itself(lab: Lab, workdir: str, warning: str) -> Outcome:
  result = launch(lab.train(workdir))
  noise = [word for word in NOISE if word in result.stderr]
  warned = warning in result.stderr
  equal, said = lab.equal_to_uninterrupted(workdir) if result.returncode == 0 else (False, '')
  return Outcome(result.returncode == 0 and not noise and warned and equal,
                 f'exit {result.returncode}, {"warned" if warned else "NO WARNING"}, '
                 f'{len(noise) and "NOISE: " + ", ".join(noise) or "no traceback or noise"}; '
                 f'the run {said}')


def damaged_latest_checkpoint(lab: Lab, folder: str) -> Outcome:
  workdir = os.path.join(folder, 'run')
  lab.partial(workdir)
  for directory, _, names in os.walk(_latest_checkpoint(workdir)):
    for name in names:
      with open(os.path.join(directory, name), 'wb') as f:
        f.write(b'garbage')
  return _resumes_by_itself(lab, workdir, 'cannot be read')


def latest_checkpoint_data_cut_short(lab: Lab, folder: str) -> Outcome:
  """The array data cut in half (a copy interrupted, a disk error): tensorstore's pending
  reads used to print 20-40 'Event loop is closed' tracebacks after the warning."""
  workdir = os.path.join(folder, 'run')
  lab.partial(workdir)
  for directory, _, names in os.walk(_latest_checkpoint(workdir)):
    for name in names:
      if os.path.basename(directory) == 'd':  # OCDBT's data files
        path = os.path.join(directory, name)
        with open(path, 'r+b') as f:
          f.truncate(os.path.getsize(path) // 2)
  return _resumes_by_itself(lab, workdir, 'cannot be read')


def latest_checkpoint_without_metadata(lab: Lab, folder: str) -> Outcome:
  workdir = os.path.join(folder, 'run')
  lab.partial(workdir)
  for directory, _, names in os.walk(_latest_checkpoint(workdir)):
    if '_METADATA' in names:  # orbax's description of the saved tree
      os.remove(os.path.join(directory, '_METADATA'))
  return _resumes_by_itself(lab, workdir, 'cannot be read')


def metrics_line_cut_short(lab: Lab, folder: str) -> Outcome:
  workdir = os.path.join(folder, 'run')
  lab.partial(workdir)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8') as f:
    f.write('{"step": 99999, "train/lo')  # a line a SIGKILL cut short
  return _resumes_by_itself(lab, workdir, 'dropping 1 line(s) written after step')


def config_json_cut_short(lab: Lab, folder: str) -> Outcome:
  workdir = os.path.join(folder, 'run')
  lab.partial(workdir)
  path = os.path.join(workdir, 'config.json')
  with open(path, encoding='utf-8') as f:
    good = f.read()
  with open(path, 'w', encoding='utf-8') as f:
    f.write(good[:len(good) // 2])

  def put_back():
    with open(path, 'w', encoding='utf-8') as f:
      f.write(good)

  return _refused_then_repaired(lab, workdir, lab.train(workdir), put_back,
                                'config.json is damaged')


def every_checkpoint_damaged(lab: Lab, folder: str) -> Outcome:
  """Nothing to resume from: refused, the checkpoints set aside, not deleted."""
  workdir = os.path.join(folder, 'run')
  lab.partial(workdir)
  checkpoints = os.path.join(workdir, 'checkpoints')
  for directory, _, names in os.walk(checkpoints):
    for name in names:
      with open(os.path.join(directory, name), 'wb') as f:
        f.write(b'garbage')
  count = sum(len(names) for _, _, names in os.walk(checkpoints))
  refused, line = one_line_refusal(launch(lab.train(workdir)), 'No checkpoint')
  kept = sum(len(names) for _, _, names in os.walk(os.path.join(workdir,
                                                                'checkpoints_unreadable')))
  return Outcome(refused and kept >= count, f'{line}; {kept} of {count} files kept aside')


# Damaged data files


def _data_refusal(lab: Lab, folder: str, path: str, *overrides: str) -> Outcome:
  result = launch(lab.train(os.path.join(folder, 'run'), f'--config.data.name={path}',
                            *overrides))
  passed, line = one_line_refusal(result, os.path.basename(path.rstrip('/')))
  return Outcome(passed, line)


def npz_cut_short(lab: Lab, folder: str) -> Outcome:
  os.makedirs(folder)
  path = os.path.join(folder, 'images.npz')
  np.savez(path, images=np.zeros((200, 8, 8), np.uint8))
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  return _data_refusal(lab, folder, path)


def _png_folder(folder: str, count: int = 60) -> str:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  images = os.path.join(folder, 'images')
  os.makedirs(images)
  rng = np.random.default_rng(0)
  for index in range(count):
    Image.fromarray(rng.integers(0, 256, (8, 8), np.uint8)).save(
        os.path.join(images, f'{index:03d}.png'))
  return images


def png_cut_short(lab: Lab, folder: str) -> Outcome:
  images = _png_folder(folder)
  path = os.path.join(images, '017.png')
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  result = launch(lab.train(os.path.join(folder, 'run'), f'--config.data.name={images}/',
                            '--config.data.test_size=10', '--config.batch_size=10'))
  passed, line = one_line_refusal(result, '017.png')
  return Outcome(passed, line)


def png_cut_short_while_streaming(lab: Lab, folder: str) -> Outcome:
  """Read on demand through grain: the damage is met mid-training, in the input pipeline."""
  images = _png_folder(folder)
  path = os.path.join(images, '042.png')
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  result = launch(lab.train(os.path.join(folder, 'run'), f'--config.data.name={images}/',
                            '--config.data.test_size=10', '--config.batch_size=10',
                            '--config.input_pipeline=grain'))
  passed, line = one_line_refusal(result, '042.png')
  return Outcome(passed, line)


def table_not_text(lab: Lab, folder: str) -> Outcome:
  os.makedirs(folder)
  path = os.path.join(folder, 'features.csv')
  with open(path, 'wb') as f:
    f.write(b'a,b\n1,2\n' + bytes(range(256)) * 4)
  return _data_refusal(lab, folder, path, '--config.data.binarization=none',
                       '--config.model.likelihood.kind=gaussian')


def tfds_shard_damaged(lab: Lab, folder: str) -> Outcome:
  data_dir = os.path.join(folder, 'tfds')
  subprocess.run([sys.executable, '-m', 'scripts.synthetic_tfds', f'--data_dir={data_dir}',
                  '--train_records=300', '--test_records=100'], cwd=REPO_ROOT, check=True,
                 capture_output=True)
  shards = sorted(os.path.join(directory, name) for directory, _, names in os.walk(data_dir)
                  for name in names if 'train.array_record' in name)
  with open(shards[0], 'r+b') as f:
    f.seek(os.path.getsize(shards[0]) // 3)
    f.write(b'\xff' * 512)
  result = launch(lab.train(os.path.join(folder, 'run'), '--config.data.name=synthetic_digits',
                            f'--data_dir={data_dir}', '--config.data.decoded_cache=none'))
  passed, line = one_line_refusal(result, 'synthetic_digits')
  return Outcome(passed, line)


# Damaged files read by the reporting tools


def damaged_report_in_results_table(lab: Lab, folder: str) -> Outcome:
  workdir = os.path.join(folder, 'run')
  lab.finished(workdir)
  reports = os.path.join(workdir, 'evaluation')
  os.makedirs(reports, exist_ok=True)
  with open(os.path.join(reports, 'step_00000360_test_elbo.json'), 'w', encoding='utf-8') as f:
    f.write('{"elbo": -41.')
  result = launch([sys.executable, '-m', 'scripts.results_table', f'--workdirs={workdir}'])
  noise = [word for word in NOISE if word in result.stderr]
  said = 'step_00000360_test_elbo.json' in result.stderr + result.stdout
  return Outcome(result.returncode == 0 and not noise and said,
                 f'exit {result.returncode}, the damaged report '
                 f'{"named" if said else "NOT NAMED"}{", NOISE" if noise else ""}')


def metrics_cut_short_in_summaries(lab: Lab, folder: str) -> Outcome:
  workdir = os.path.join(folder, 'run')
  lab.finished(workdir)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8') as f:
    f.write('{"step": 361, "train/lo')
  outcomes = []
  for module in ('scripts.summarize_run', 'experiments.visualize'):
    result = launch([sys.executable, '-m', module, f'--workdir={workdir}'])
    noise = [word for word in NOISE if word in result.stderr]
    outcomes.append((module, result.returncode, noise))
  passed = all(code == 0 and not noise for _, code, noise in outcomes)
  return Outcome(passed, '; '.join(f'{module}: exit {code}{" NOISE" if noise else ""}'
                                   for module, code, noise in outcomes))


# Divergence


def _kept_checkpoints_finite(workdir: str) -> tuple[bool, int]:
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import checkpointing  # pylint: disable=import-outside-toplevel
  manager = checkpointing.create_checkpoint_manager(workdir, max_to_keep=1_000_000)
  steps = manager.all_steps()
  finite = True
  for step in steps:
    tree = manager.restore(step, args=ocp.args.StandardRestore())
    finite &= all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(tree)
                  if np.issubdtype(np.asarray(leaf).dtype, np.floating))
  manager.close()
  return finite, len(steps)


def divergence_between_logs(lab: Lab, folder: str) -> Outcome:
  """A finished run continued at a learning rate that blows it up, logging rarely and
  checkpointing often: it stops before saving diverged parameters."""
  workdir = os.path.join(folder, 'run')
  lab.finished(workdir)
  result = launch(lab.train(workdir, f'--config.num_epochs={lab.epochs * 3}',
                            '--config.optimizer.learning_rate=1.0',
                            '--config.log_every_steps=100000', '--config.checkpoint_every_steps=3',
                            '--allow_config_change'))
  refused, line = one_line_refusal(result, 'diverged')
  finite, kept = _kept_checkpoints_finite(workdir)
  return Outcome(refused and finite and kept > 0,
                 f'{line}; {kept} kept checkpoints, {"all" if finite else "NOT ALL"} finite')


def divergence_at_a_log(lab: Lab, folder: str) -> Outcome:
  workdir = os.path.join(folder, 'run')
  result = launch(lab.train(workdir, '--config.optimizer.learning_rate=3'))
  refused, line = one_line_refusal(result, 'diverged')
  finite, kept = _kept_checkpoints_finite(workdir)
  return Outcome(refused and finite, f'{line}; {kept} kept checkpoints, '
                 f'{"all" if finite else "NOT ALL"} finite')


CASES = (
    Case('disk_full_at_start', 'a new run on a full disk', disk_full_at_start, needs_root=True),
    Case('disk_full_mid_run', 'a resumed run on a disk with room for logs, not a checkpoint',
         disk_full_mid_run, needs_root=True),
    Case('read_only_workdir', 'a run resumed on a read-only disk', read_only_workdir,
         needs_root=True),
    Case('read_only_new_workdir', 'a new run on a read-only disk', read_only_new_workdir,
         needs_root=True),
    Case('disk_full_at_evaluation', 'experiments.evaluate writing its report to a full disk',
         disk_full_at_evaluation, needs_root=True),
    Case('read_only_at_evaluation', 'experiments.evaluate on a read-only workdir',
         read_only_at_evaluation, needs_root=True),
    Case('damaged_latest_checkpoint', "the latest checkpoint's files overwritten",
         damaged_latest_checkpoint),
    Case('latest_checkpoint_data_cut_short', "the latest checkpoint's array data cut in half",
         latest_checkpoint_data_cut_short),
    Case('latest_checkpoint_without_metadata', "the latest checkpoint's _METADATA removed",
         latest_checkpoint_without_metadata),
    Case('every_checkpoint_damaged', 'every checkpoint overwritten', every_checkpoint_damaged),
    Case('metrics_line_cut_short', "metrics.jsonl's last line cut short, then resumed",
         metrics_line_cut_short),
    Case('config_json_cut_short', 'config.json cut in half, then resumed', config_json_cut_short),
    Case('npz_cut_short', 'an .npz data file cut short', npz_cut_short),
    Case('png_cut_short', 'a PNG cut short in an image folder', png_cut_short),
    Case('png_cut_short_while_streaming', 'the same, read on demand by grain',
         png_cut_short_while_streaming),
    Case('table_not_text', 'a .csv holding binary bytes', table_not_text),
    Case('tfds_shard_damaged', 'a TFDS array_record shard overwritten in the middle',
         tfds_shard_damaged),
    Case('damaged_report_in_results_table', 'scripts.results_table over a cut-short report',
         damaged_report_in_results_table),
    Case('metrics_cut_short_in_summaries', 'summarize_run and visualize over a cut-short '
         'metrics line', metrics_cut_short_in_summaries),
    Case('divergence_between_logs', 'the loss runs away between logs, checkpoints every 3 steps',
         divergence_between_logs),
    Case('divergence_at_a_log', 'the loss runs away (learning rate 3)', divergence_at_a_log),
)


def run_case(case: Case, lab: Lab) -> Outcome:
  if case.needs_root and os.geteuid() != 0:
    return Outcome(True, 'skipped: mounting a tmpfs needs root')
  try:
    return case.run(lab, os.path.join(lab.root, case.name))
  except Exception as error:  # pylint: disable=broad-except
    return Outcome(False, f'the case itself failed: {type(error).__name__}: {error}')
