r"""Works through a queue of long runs on one core: each trained to its end, then evaluated.

  python -m scripts.run_queue --queue=$HOME/vae_jax_runs/queue_core0.txt --core=0 \
      --evaluate_flag=--evals=elbo,importance_sampled,active_units

The queue file lists one run per line, `CONFIG[:VARIANT] SEED [source=DIR]` (`#` starts a
comment), e.g.

  configs/vampprior.py:standard 2
  configs/vampprior.py:vamp 2 source=~/vae_jax_runs/src_8aa74d6

For each run in order: `scripts/long_run.sh` starts or resumes its training (workdir
RUNS/<config>_<variant>/seed=SEED, from the source snapshot DIR, default RUNS/src; a run that
has finished returns at once); once training ends by itself (its schedule, or early stopping),
`experiments.evaluate` evaluates the checkpoint it chooses (the best one for a run that stops
early) unless WORKDIR/evaluation already holds a test report of that step with log p(x) on the
whole split; then the next run starts. A run stopped by a signal stops the queue there (SIGTERM
to the queue is passed on, so the run checkpoints first): rerunning the same command carries on
where it stopped, so one command per core resumes everything after a restart. `--status`
prints where each run of the queue stands (from its workdir alone; nothing is run):

  python -m scripts.run_queue --queue=$HOME/vae_jax_runs/queue_core0.txt --status
"""

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
import time

from absl import app, flags

from experiments import evaluate, launch
from vae_jax.engine import checkpointing, metric_writers

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_QUEUE = flags.DEFINE_string('queue', None, 'The queue file (one run per line).', required=True)
_CORE = flags.DEFINE_integer('core', 1, 'The CPU core every run and evaluation is pinned to.')
_RUNS = flags.DEFINE_string('runs', os.environ.get('RUNS', os.path.expanduser('~/vae_jax_runs')),
                            'The folder of the workdirs and source snapshots ($RUNS).')
_VENV = flags.DEFINE_string('venv', None, 'The virtual environment to run in (default: '
                            '$VENV, else RUNS/venv, as scripts/long_run.sh).')
_STATUS = flags.DEFINE_bool('status', False, 'Print where each run stands, and run nothing.')
_EVALUATE_FLAGS = flags.DEFINE_multi_string(
    'evaluate_flag', [], 'A flag for experiments.evaluate (repeatable), e.g. '
    '--evaluate_flag=--evals=elbo,importance_sampled,active_units.')


@dataclasses.dataclass(frozen=True)
class QueuedRun:
  spec: str  # CONFIG[:VARIANT]
  seed: int
  source: str | None  # the source snapshot folder (None: long_run.sh's default)

  def workdir(self, runs: str) -> str:
    """The workdir scripts/long_run.sh trains in."""
    config, _, variant = self.spec.partition(':')
    name = os.path.splitext(os.path.basename(config))[0] + (f'_{variant}' if variant else '')
    return os.path.join(runs, name, f'seed={self.seed}')


def parse_queue(text: str) -> list[QueuedRun]:
  """The runs of a queue file, in order. Raises ValueError naming the first bad line."""
  runs = []
  for number, line in enumerate(text.splitlines(), start=1):
    fields = line.split('#', 1)[0].split()
    if not fields:
      continue
    source = None
    if len(fields) == 3 and fields[2].startswith('source='):
      source = os.path.expanduser(fields[2][len('source='):])
    if len(fields) not in (2, 3) or not fields[1].isdigit() or (len(fields) == 3 and not source):
      raise ValueError(f'line {number} of the queue, {line.strip()!r}, is not '
                       '"CONFIG[:VARIANT] SEED [source=DIR]".')
    runs.append(QueuedRun(fields[0], int(fields[1]), source))
  return runs


def evaluation_step(workdir: str, config=None) -> int | None:
  """The step experiments.evaluate chooses by default: the best checkpoint's for a run with
  early stopping, else the latest (None when there is no such checkpoint). `config`: the
  workdir's, when already read."""
  config = checkpointing.load_config(workdir) if config is None else config
  steps = checkpointing.step_folders(workdir, launch.checkpoint_folder(config, 'auto'))
  return steps[-1] if steps else None


def _evaluation_report(workdir: str, step: int) -> dict | None:
  """The report `is_evaluated` counts (the one with the most importance samples)."""
  reports = [report for path, report in evaluate.read_reports(workdir)
             if not re.search(r'_n\d+(_|\.json$)', os.path.basename(path))
             and report.get('split') == 'test' and report.get('step') == step
             and 'importance_sampled' in report]
  return max(reports, key=lambda r: r['importance_sampled'].get('num_samples', 0), default=None)


def is_evaluated(workdir: str, step: int) -> bool:
  """Whether WORKDIR/evaluation holds a test report of `step` with log p(x) on the whole split
  (a report of the first N examples, `_n<N>` in its name, does not count)."""
  return _evaluation_report(workdir, step) is not None


def run_status(workdir: str) -> str:
  """Where a run stands, in a line: its epoch, whether it stopped, its best early-stopping
  value, its last test ELBO and, once evaluated, its log p(x)."""
  if not os.path.isfile(os.path.join(workdir, metric_writers.METRICS_FILENAME)):
    return 'not started'
  lines = metric_writers.read_metrics(workdir)
  steps_per_epoch = next((m['step'] / m['epoch'] for m in lines if m.get('epoch')), None)
  if not lines or steps_per_epoch is None:
    return 'started, no epoch logged yet'

  def epoch(step):
    return f'{step / steps_per_epoch:,.0f}'

  parts = [f'epoch {epoch(max(m["step"] for m in lines))}']
  stopped = [m for m in lines if 'early_stopping/best_step' in m]
  if stopped:
    parts.append(f'stopped early at epoch {epoch(stopped[-1]["step"])}')
  config = checkpointing.load_config(workdir)
  stopping = config.early_stopping
  values = [(m[stopping.metric], m['step']) for m in lines if stopping.metric in m]
  if stopping.metric and values:
    # The first of equal values, as early stopping keeps it.
    best, best_step = (max if stopping.get('mode', 'max') == 'max' else min)(
        values, key=lambda value_and_step: value_and_step[0])
    parts.append(f'best {stopping.metric} {best:.2f} (epoch {epoch(best_step)})')
  tests = [m['test/elbo'] for m in lines if 'test/elbo' in m]
  if tests:
    parts.append(f'last test/elbo {tests[-1]:.2f}')
  step = evaluation_step(workdir, config)
  report = _evaluation_report(workdir, step) if step is not None else None
  if report:
    sampled = report['importance_sampled']
    parts.append(f'evaluated: test log p(x) {sampled["log_likelihood"]:.2f} '
                 f'(k = {sampled.get("num_samples")}, epoch {epoch(step)})')
  return '; '.join(parts)


def _log(message: str) -> None:
  print(time.strftime('[queue %Y-%m-%dT%H:%M:%SZ] ', time.gmtime()) + message, flush=True)


class _Child:
  """Runs one command at a time; SIGTERM or SIGINT to the queue is passed on to it, and the
  queue stops after it."""

  def __init__(self):
    self.process = None
    self.stop_requested = False
    for signal_number in (signal.SIGTERM, signal.SIGINT):
      signal.signal(signal_number, self._pass_on)

  def _pass_on(self, signal_number, frame):
    del frame
    self.stop_requested = True
    if self.process is not None and self.process.poll() is None:
      self.process.send_signal(signal_number)

  def run(self, command: list[str], **kwargs) -> int:
    _log('+ ' + shlex.join(command))
    self.process = subprocess.Popen(command, **kwargs)  # pylint: disable=consider-using-with
    return self.process.wait()


def _source(run: QueuedRun, runs: str) -> str:
  """The source snapshot the run trains from (scripts/long_run.sh's default: RUNS/src)."""
  return run.source or os.path.join(runs, 'src')


def main(argv):
  del argv
  try:
    with open(os.path.expanduser(_QUEUE.value), encoding='utf-8') as f:
      queue = parse_queue(f.read())
  except (OSError, ValueError) as error:
    raise app.UsageError(f'--queue={_QUEUE.value}: {error}') from error
  runs = os.path.abspath(os.path.expanduser(_RUNS.value))
  if _STATUS.value:
    for run in queue:
      print(f'{run.spec} seed {run.seed}: {run_status(run.workdir(runs))}')
    return
  venv = _VENV.value or os.environ.get('VENV') or os.path.join(runs, 'venv')
  if not os.path.isfile(os.path.join(venv, 'bin', 'python')):
    raise app.UsageError(f'No virtual environment at {venv}: give --venv (or set VENV).')
  for run in queue:  # every config named must exist before anything runs
    source = _source(run, runs)
    # long_run.sh makes a source folder that does not exist yet from this checkout's HEAD.
    config = os.path.join(source if os.path.isdir(source) else REPO_ROOT,
                          run.spec.partition(':')[0])
    if not os.path.isfile(config):
      raise app.UsageError(f'The queue names {run.spec}, but {config} does not exist.')
  # The evaluation reads the data where training did: the workdir's config records it.
  environment = dict(os.environ, RUNS=runs, VENV=venv)
  child = _Child()
  for run in queue:
    workdir, source = run.workdir(runs), _source(run, runs)
    rc = child.run([os.path.join(REPO_ROOT, 'scripts', 'long_run.sh'), run.spec, str(run.seed),
                    str(_CORE.value)], env=dict(environment, SOURCE=source))
    if rc or child.stop_requested:
      _log(f'{run.spec} seed {run.seed} stopped before its end (exit status {rc}); rerun this '
           'command to carry on from its latest checkpoint.')
      sys.exit(rc or 1)
    step = evaluation_step(workdir)
    if step is None or is_evaluated(workdir, step):
      _log(f'{run.spec} seed {run.seed}: trained; '
           + ('already evaluated.' if step is not None else 'no checkpoint to evaluate.'))
      continue
    rc = child.run(['taskset', '-c', str(_CORE.value), os.path.join(venv, 'bin', 'python'), '-m',
                    'experiments.evaluate', f'--workdir={workdir}', *_EVALUATE_FLAGS.value],
                   cwd=source, env=environment)
    if rc or child.stop_requested:
      _log(f'The evaluation of {workdir} stopped (exit status {rc}); rerun this command to '
           'evaluate it again.')
      sys.exit(rc or 1)
  _log(f'Every run in {_QUEUE.value} is trained and evaluated.')


if __name__ == '__main__':
  app.run(main)
