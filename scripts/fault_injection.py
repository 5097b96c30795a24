r"""Kills a training job at random moments, resumes it each time, and checks that it ends
exactly where an uninterrupted run of the same command ends.

  python -m scripts.fault_injection --kills=20 --root=/tmp/faults

Runs `experiments.train` on the bundled digits (a small model, a checkpoint every few steps)
once without interruption, then again under a killer: each time the job has made progress (a
new checkpoint or metrics line) it waits a random moment and sends SIGKILL (or --signal; a
SIGTERM or SIGINT must make the job checkpoint and exit with 128 + the signal), then
relaunches the same command. When the job finally completes, it compares the final
parameters, optimizer state and step of both runs bit for bit, and their evaluation metrics.
Prints one JSON line; exits 1 if the results differ.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from absl import app, flags, logging

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_KILLS = flags.DEFINE_integer('kills', 20, 'Interruptions before letting it finish.')
_ROOT = flags.DEFINE_string('root', None, 'Folder for the two workdirs.', required=True)
_EPOCHS = flags.DEFINE_integer('epochs', 300, 'Epochs of 30 steps to train.')
_MAX_DELAY = flags.DEFINE_float(
    'max_delay', 1.5, 'Longest wait, in seconds, between seeing progress and killing.')
_SIGNAL = flags.DEFINE_enum('signal', 'SIGKILL', ['SIGKILL', 'SIGTERM', 'SIGINT', 'mixed'],
                            "'mixed': SIGKILL and SIGTERM in turn.")
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the kill moments.')
_MOMENT = flags.DEFINE_enum(
    'moment', 'random', list(MOMENTS := ('random', 'log', 'evaluation', 'save')),
    'When to interrupt: a random moment after progress; right after a train log line is '
    'written; right after an evaluation line (the checkpoint of that step comes next); while a '
    'checkpoint is being written (its temporary folder exists).')
_BATTERY = flags.DEFINE_bool(
    'battery', False, 'Run every signal at every moment (--kills each), for each --pipelines, '
    'and print a table: one case per (pipeline, signal, moment).')
_PIPELINES = flags.DEFINE_list('pipelines', ['device', 'grain'], 'With --battery.')
_CLASSES = flags.DEFINE_list(
    'classes', ['signals', 'files'], "With --battery: 'signals' (every signal at every moment "
    "for each --pipelines) and 'files' (full and read-only disks, damaged files, divergence: "
    'scripts/fault_cases.py).')
_ONLY = flags.DEFINE_list('only', [], "With --battery: run only these 'files' cases.")
_PIPELINE = flags.DEFINE_enum('pipeline', 'device', ['device', 'host', 'grain'],
                              'config.input_pipeline of the job (grain: its iterator is '
                              'checkpointed too, mid-epoch at most checkpoints).')


def train_command(workdir: str, epochs: int, pipeline: str | None = None) -> list[str]:
  return [sys.executable, '-m', 'experiments.train', '--config=configs/quickstart.py',
          f'--workdir={workdir}', f'--config.num_epochs={epochs}', '--config.model.latent_dim=2',
          '--config.model.encoder.hidden_sizes=(16,)', '--config.model.decoder.hidden_sizes=(16,)',
          '--config.checkpoint_every_steps=10', '--config.log_every_steps=10',
          '--config.steps_per_call=5', '--config.eval_every_epochs=4',
          '--config.evals.images.num_images=0',
          f'--config.input_pipeline={pipeline or _PIPELINE.value}']


def progress_marker(workdir: str) -> tuple[int, int]:
  """(number of checkpoint folders, size of metrics.jsonl): changes as the job progresses."""
  checkpoints = os.path.join(workdir, 'checkpoints')
  steps = [name for name in os.listdir(checkpoints) if name.isdigit()] if os.path.isdir(
      checkpoints) else []
  metrics = os.path.join(workdir, 'metrics.jsonl')
  return max(map(int, steps), default=-1), os.path.getsize(metrics) if os.path.exists(metrics) else 0


def moment_marker(workdir: str, moment: str):
  """What changes when the job reaches `moment` again: the number of train or evaluation
  lines in metrics.jsonl, or whether a checkpoint's temporary folder exists."""
  if moment == 'save':
    folder = os.path.join(workdir, 'checkpoints')
    return os.path.isdir(folder) and any('tmp' in name for name in os.listdir(folder))
  key = 'train/loss' if moment == 'log' else 'test/elbo'
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return 0
  with open(path, encoding='utf-8') as f:
    return sum(f'"{key}"' in line for line in f)


def wait_for_moment(process, workdir: str, moment: str, max_delay: float,
                    rng: random.Random) -> None:
  """Returns when the job has reached `moment` (or a random moment after progress)."""
  if moment == 'random':
    before = progress_marker(workdir)
    while process.poll() is None and progress_marker(workdir) == before:
      time.sleep(0.05)
    time.sleep(rng.uniform(0.0, max_delay))
    return
  before = moment_marker(workdir, moment)
  while process.poll() is None:
    now = moment_marker(workdir, moment)
    if now != before and (moment != 'save' or now):
      return
    before = now if moment == 'save' else before
    time.sleep(0.002)


def run_with_kills(workdir: str, epochs: int, kills: int, max_delay: float,
                   signals: list[signal.Signals], rng: random.Random,
                   moment: str = 'random', pipeline: str | None = None) -> tuple[int, int]:
  """Runs the job to completion, interrupting it `kills` times with `signals` in turn at
  `moment`. Returns (kills, launches)."""
  done, launches = 0, 0
  while True:
    signal_number = signals[done % len(signals)]
    launches += 1
    log_path = f'{os.path.normpath(workdir)}_launch{launches}.log'  # beside it: kept for a post-mortem
    with open(log_path, 'w', encoding='utf-8') as log:
      process = subprocess.Popen(train_command(workdir, epochs, pipeline), cwd=REPO_ROOT,
                                 stdout=log, stderr=subprocess.STDOUT)
    if done >= kills:
      if process.wait() != 0:
        raise RuntimeError(f'The final, uninterrupted launch failed (exit {process.returncode}); '
                           f'its log ends:\n{_tail(log_path)}')
      return done, launches
    wait_for_moment(process, workdir, moment, max_delay, rng)
    if process.poll() is not None:  # finished before the kill: nothing left to interrupt
      if process.returncode != 0:
        raise RuntimeError(f'Launch {launches} failed on its own (exit {process.returncode}); '
                           f'its log ends:\n{_tail(log_path)}')
      return done, launches
    process.send_signal(signal_number)
    exit_code = process.wait()
    if exit_code == 0:  # it finished as the signal was sent: nothing was left to interrupt
      return done, launches
    # SIGTERM and SIGINT are caught: the job checkpoints and exits with 128 + the signal.
    if signal_number != signal.SIGKILL and exit_code != 128 + signal_number:
      raise RuntimeError(f'Launch {launches} exited {exit_code} on {signal_number.name}, not '
                         f'{128 + signal_number} (a clean stop after checkpointing); its log ends:\n'
                         f'{_tail(log_path)}')
    done += 1


def _tail(path: str, lines: int = 15) -> str:
  with open(path, encoding='utf-8', errors='replace') as f:
    return ''.join(f.readlines()[-lines:])


def final_state(workdir: str) -> dict:
  """The latest checkpoint's arrays, by path, read without building the model."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import checkpointing  # pylint: disable=import-outside-toplevel
  manager = checkpointing.create_checkpoint_manager(workdir, max_to_keep=1_000_000)
  step = manager.latest_step()
  tree = manager.restore(step, args=ocp.args.StandardRestore())
  manager.close()
  leaves = {}

  def collect(prefix, node):
    if isinstance(node, dict):
      for key, value in node.items():
        collect(f'{prefix}/{key}', value)
    elif isinstance(node, (list, tuple)):
      for index, value in enumerate(node):
        collect(f'{prefix}/{index}', value)
    else:
      leaves[prefix] = np.asarray(node)

  collect('', tree)
  return leaves


def evaluations(workdir: str) -> list[dict]:
  from vae_jax.engine import metric_writers  # pylint: disable=import-outside-toplevel
  return [m for m in metric_writers.read_metrics(workdir) if 'test/elbo' in m]


def logged_steps(workdir: str) -> list[tuple[int, str]]:
  """(step, 'train' | 'test') of every train and evaluation line: none may be skipped."""
  from vae_jax.engine import metric_writers  # pylint: disable=import-outside-toplevel
  return [(m['step'], kind) for m in metric_writers.read_metrics(workdir)
          for kind, key in (('train', 'train/loss'), ('test', 'test/elbo')) if key in m]


def compare(straight: str, interrupted: str) -> dict:
  expected, actual = final_state(straight), final_state(interrupted)
  mismatched = sorted(path for path in expected
                      if path not in actual or not np.array_equal(expected[path], actual[path]))
  return {'arrays_compared': len(expected), 'arrays_differing': mismatched,
          'bitwise_equal': not mismatched and len(expected) == len(actual),
          'evaluation_metrics_equal': evaluations(straight) == evaluations(interrupted),
          'no_line_skipped': logged_steps(straight) == logged_steps(interrupted)}


def interrupt_once(workdir: str, signal_number: signal.Signals, moment: str) -> None:
  """Launches the job and stops it once with `signal_number` at `moment`."""
  process = subprocess.Popen(train_command(workdir, _EPOCHS.value, 'device'), cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  wait_for_moment(process, workdir, moment, _MAX_DELAY.value, random.Random(_SEED.value))
  process.send_signal(signal_number)
  process.wait()


def file_battery(root: str) -> int:
  """The disk, damaged-file and divergence cases (scripts/fault_cases.py); prints a markdown
  table and returns the number of failed cases."""
  from scripts import fault_cases  # pylint: disable=import-outside-toplevel
  lab = fault_cases.Lab(root, _EPOCHS.value, train_command, compare, interrupt_once)
  print('| case | fault | passed | what was seen | seconds |')
  print('|---|---|---|---|---|')
  failures = 0
  for case in fault_cases.CASES:
    if _ONLY.value and case.name not in _ONLY.value:
      continue
    start = time.perf_counter()
    outcome = fault_cases.run_case(case, lab)
    failures += not outcome.passed
    seen = outcome.what.replace(root, 'ROOT').replace('|', '\\|')
    print(f'| {case.name} | {case.what} | {"yes" if outcome.passed else "NO"} | {seen} | '
          f'{time.perf_counter() - start:.0f} |', flush=True)
  return failures


def battery(root: str) -> int:
  """The signal cases and the file cases; returns the number that failed."""
  failures = 0
  if 'signals' in _CLASSES.value and not _ONLY.value:
    failures += signal_battery(root)
  if 'files' in _CLASSES.value:
    failures += file_battery(root)
  return failures


def signal_battery(root: str) -> int:
  """Every (pipeline, signal, moment) case against one uninterrupted run per pipeline;
  prints a markdown table and returns the number of failed cases."""
  print('| case | launches | bitwise equal | evaluations equal | no line skipped | seconds |')
  print('|---|---|---|---|---|---|')
  failures = 0
  for pipeline in _PIPELINES.value:
    straight = os.path.join(root, f'{pipeline}_uninterrupted')
    subprocess.run(train_command(straight, _EPOCHS.value, pipeline), cwd=REPO_ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in ('SIGKILL', 'SIGTERM', 'SIGINT'):
      for moment in MOMENTS:
        case = f'{pipeline}_{name.lower()}_at_{moment}'
        start = time.perf_counter()
        try:
          _, launches = run_with_kills(os.path.join(root, case), _EPOCHS.value, _KILLS.value,
                                       _MAX_DELAY.value, [signal.Signals[name]],
                                       random.Random(_SEED.value), moment, pipeline)
          result = compare(straight, os.path.join(root, case))
        except RuntimeError as error:
          launches, result = str(error), {}
        passed = all(result.get(key) for key in ('bitwise_equal', 'evaluation_metrics_equal',
                                                 'no_line_skipped'))
        failures += not passed
        print(f'| {case} | {launches} | ' + ' | '.join(
            'yes' if result.get(key) else 'NO' for key in (
                'bitwise_equal', 'evaluation_metrics_equal', 'no_line_skipped')) +
              f' | {time.perf_counter() - start:.0f} |', flush=True)
  return failures


def main(argv) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax's INFO lines when comparing checkpoints
  if _BATTERY.value:
    if os.path.exists(_ROOT.value) and os.listdir(_ROOT.value):
      raise SystemExit(f'{_ROOT.value} is not empty; give a new --root (nothing is overwritten).')
    sys.exit(1 if battery(_ROOT.value) else 0)
  straight, interrupted = (os.path.join(_ROOT.value, name) for name in ('uninterrupted',
                                                                      'interrupted'))
  for workdir in (straight, interrupted):
    if os.path.exists(workdir):
      raise SystemExit(f'{workdir} exists; give a new --root (nothing is overwritten).')
  start = time.perf_counter()
  subprocess.run(train_command(straight, _EPOCHS.value), cwd=REPO_ROOT, check=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  signals = ([signal.SIGKILL, signal.SIGTERM] if _SIGNAL.value == 'mixed'
             else [signal.Signals[_SIGNAL.value]])
  kills, launches = run_with_kills(interrupted, _EPOCHS.value, _KILLS.value, _MAX_DELAY.value,
                                   signals, random.Random(_SEED.value), _MOMENT.value)
  result = {'kills_survived': kills, 'launches': launches, 'signal': _SIGNAL.value,
            'moment': _MOMENT.value, **compare(straight, interrupted),
            'seconds': round(time.perf_counter() - start, 1)}
  print(json.dumps(result))
  if not (result['bitwise_equal'] and result['evaluation_metrics_equal']
          and result['no_line_skipped']):
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
