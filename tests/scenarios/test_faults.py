"""Faults that used to lose a user's results (issue 37): a stop request at a log or evaluation
step, divergence between logs, relaunches over an earlier record, half-written or unwritable
evaluation reports."""

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from experiments import evaluate
from tests.conftest import REPO_ROOT, make_tiny_config
from vae_jax import errors, files
from vae_jax.engine import checkpointing, loop, metric_writers, runners, training, workdir_lock
from vae_jax.errors import TrainingInterrupted, UserError


def _config(**overrides):
  config = make_tiny_config()
  config.evals.images.num_images = 0
  config.update(overrides)
  return config


class _SignalAfter:
  """A runner that sends this process SIGTERM once a training call has ended at `step`."""

  def __init__(self, runner, step: int):
    self._runner, self._step = runner, step

  def __getattr__(self, name):
    return getattr(self._runner, name)

  def __call__(self, state, step, stop):
    state, metrics, step = self._runner(state, step, stop)
    if step == self._step:
      os.kill(os.getpid(), signal.SIGTERM)
    return state, metrics, step


def _logged(workdir: str) -> list[tuple[int, str]]:
  return [(m['step'], name) for m in metric_writers.read_metrics(workdir)
          for name in ('train/loss', 'test/elbo') if name in m]


@pytest.mark.slow
@pytest.mark.parametrize('at_epoch', [1, 2])  # an evaluation step, and the final step
def test_sigterm_at_an_evaluation_step_still_logs_and_evaluates_it(tmp_path, monkeypatch,
                                                                   at_epoch):
  straight = str(tmp_path / 'straight')
  training.train_and_evaluate(_config(), straight)
  steps_per_epoch = 15  # digits: 1,500 training images, batches of 100
  create = runners.create
  monkeypatch.setattr(loop.runners, 'create', lambda *args: _SignalAfter(
      create(*args), at_epoch * steps_per_epoch))
  workdir = str(tmp_path / 'interrupted')
  with pytest.raises(TrainingInterrupted):
    training.train_and_evaluate(_config(), workdir)
  assert (at_epoch * steps_per_epoch, 'test/elbo') in _logged(workdir)
  monkeypatch.setattr(loop.runners, 'create', create)
  training.train_and_evaluate(_config(), workdir)  # the rerun, as a preempted job's
  assert _logged(workdir) == _logged(straight)


@pytest.mark.slow
def test_a_run_diverging_between_logs_keeps_its_good_checkpoints(tmp_path):
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(_config(), workdir)
  good = evaluate.evaluate_workdir(workdir, names=['elbo'])['elbo']
  # As a user continuing a finished run with a learning rate that blows it up, logging
  # rarely and checkpointing often.
  with pytest.raises(training.DivergenceError):
    training.train_and_evaluate(
        _config(num_epochs=20, log_every_steps=1000, checkpoint_every_steps=3,
                eval_every_epochs=100, optimizer=dict(learning_rate=1.0)),
        workdir, allow_config_change=True)
  initial = metric_writers.first_value(workdir, 'train/initial_loss')
  limit = initial + 10 * abs(initial)  # divergence_factor=10
  manager = checkpointing.create_checkpoint_manager(workdir, max_to_keep=3)
  kept = manager.all_steps()
  manager.close()
  assert kept
  for step in kept:  # checked on the one test batch (here with other ELBO noise: 10 % slack)
    report = evaluate.evaluate_workdir(workdir, names=['elbo'], step=step)
    assert -report['elbo'] < 1.1 * limit, (step, report['elbo'], good)


def test_an_unwritable_report_folder_is_refused_before_anything_is_computed(
    trained_workdir, tmp_path, monkeypatch):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  monkeypatch.setattr(evaluate.launch, 'load_trained', _never_called)
  with pytest.raises(UserError, match=r'cannot be written to .*a_file/evaluation.*'
                     r'--report_dir=DIR \(nothing was computed\)'):
    evaluate.evaluate_workdir(trained_workdir, names=['elbo'],
                              report_dir=str(blocker / 'evaluation'))


def _never_called(*args, **kwargs):
  raise AssertionError('computed before the report folder was checked')


def test_a_report_that_cannot_be_written_leaves_no_partial_file_and_keeps_its_numbers(
    trained_workdir, tmp_path, monkeypatch):
  report_dir = tmp_path / 'reports'

  def disk_full(descriptor):  # the report is in the page cache; the disk refuses it
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(files.os, 'fsync', disk_full)
  with pytest.raises(evaluate.ReportNotWrittenError, match='No space left on device') as caught:
    evaluate.evaluate_workdir(trained_workdir, names=['elbo'], report_dir=str(report_dir))
  assert caught.value.report['elbo'] < 0  # the numbers survive, to be printed
  assert os.listdir(report_dir) == []  # no half-written report for results_table to trip on


@pytest.mark.slow
def test_the_evaluate_launcher_turns_an_unwritable_report_folder_into_one_line(
    trained_workdir, tmp_path):
  (tmp_path / 'a_file').write_text('')
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.evaluate', f'--workdir={trained_workdir}',
       '--evals=elbo', f'--report_dir={tmp_path / "a_file" / "evaluation"}'],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]


def test_os_errors_wrapped_by_libraries_become_one_line_naming_the_file():
  try:
    try:
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), '/runs/x/checkpoints/10')
    except OSError as cause:
      raise ValueError('orbax: save failed') from cause
  except ValueError as wrapped:
    message = errors.os_error_message(wrapped)
  assert message == ('Read-only file system: /runs/x/checkpoints/10 (the file system is '
                     'read-only: choose a writable folder).')
  assert errors.os_error_message(ValueError('not an OS error')) is None
  assert errors.os_error_message(FileNotFoundError(errno.ENOENT, 'missing')) is None


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  """A finished 2-epoch run, copied afresh by each test that changes it."""
  workdir = str(tmp_path_factory.mktemp('finished') / 'run')
  training.train_and_evaluate(_config(), workdir)
  return workdir


def _copy(workdir: str, tmp_path) -> str:
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  return copy


def _snapshot(workdir: str) -> dict[str, bytes]:
  """Every file's bytes, but the lock's (it says who last held the workdir)."""
  return {os.path.relpath(os.path.join(folder, name), workdir):
          open(os.path.join(folder, name), 'rb').read()
          for folder, _, names in os.walk(workdir) for name in names if name != '.lock'}


def test_a_relaunch_over_a_record_without_checkpoints_is_refused(finished_run, tmp_path):
  workdir = _copy(finished_run, tmp_path)
  shutil.rmtree(os.path.join(workdir, 'checkpoints'))  # kept as a record: metrics, images
  before = _snapshot(workdir)
  with pytest.raises(checkpointing.WorkdirConfigMismatchError,
                     match=r'metrics.jsonl holds metrics up to step 30 of an earlier run'):
    training.train_and_evaluate(_config(), workdir)
  assert _snapshot(workdir) == before


def test_a_launch_killed_before_its_first_async_save_finished_is_rerun(finished_run, tmp_path):
  # A SIGKILL while the first checkpoint (step 10) was still being written in the background:
  # the lines up to the second checkpoint's step (15, the first epoch's evaluation) were
  # logged, and no checkpoint is finished.
  workdir = _copy(finished_run, tmp_path)
  shutil.rmtree(os.path.join(workdir, 'checkpoints'))
  path = os.path.join(workdir, 'metrics.jsonl')
  with open(path, encoding='utf-8') as f:
    lines = [line for line in f if json.loads(line)['step'] <= 15]
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(lines)
  training.train_and_evaluate(_config(), workdir)
  assert checkpointing.step_folders(workdir)[-1] == 30
  assert [m['step'] for m in metric_writers.read_metrics(workdir)] == [
      m['step'] for m in metric_writers.read_metrics(finished_run)]


def test_a_new_validation_split_on_resume_is_refused_even_when_changes_are_allowed(
    finished_run, tmp_path):
  # Carved from the end of the training split: its images were trained on.
  workdir = _copy(finished_run, tmp_path)
  before = _snapshot(workdir)
  larger = _config(num_epochs=3)
  larger.data.validation_size = 100
  with pytest.raises(checkpointing.WorkdirConfigMismatchError,
                     match=r'data.validation_size: 0 \(saved\) -> 100 \(now\)\nThese decide which '
                     r'examples are trained on.*use a new --workdir'):
    training.train_and_evaluate(larger, workdir, allow_config_change=True)
  assert _snapshot(workdir) == before


def test_checkpoints_without_their_config_are_refused_not_set_aside(finished_run, tmp_path):
  workdir = _copy(finished_run, tmp_path)
  os.remove(os.path.join(workdir, 'config.json'))
  before = _snapshot(workdir)
  other_model = _config()
  other_model.model.latent_dim = 7
  with pytest.raises(checkpointing.WorkdirConfigMismatchError,
                     match="holds checkpoints but no config.json"):
    training.train_and_evaluate(other_model, workdir)
  assert _snapshot(workdir) == before  # no checkpoint moved to checkpoints_unreadable/


def test_a_change_that_leaves_nothing_to_train_is_refused(finished_run, tmp_path):
  workdir = _copy(finished_run, tmp_path)
  before = _snapshot(workdir)
  with pytest.raises(training.config_checks.ConfigError,
                     match=r'checkpoint is at step 30, past the 15 steps.*nothing would be '
                     r'trained'):
    training.train_and_evaluate(_config(num_epochs=1), workdir, allow_config_change=True)
  assert _snapshot(workdir) == before  # config.json still describes the trained run


def test_a_last_metrics_line_cut_short_is_left_out_when_read(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text('{"step": 5, "a": 1.0}\n{"step": 10, "a": 2')
  assert metric_writers.read_metrics(str(tmp_path)) == [{'step': 5, 'a': 1.0}]


@pytest.mark.slow
def test_train_means_after_a_resume_between_logs_say_how_many_steps_they_cover(
    tmp_path, monkeypatch):
  config = _config(num_epochs=1, log_every_steps=4, checkpoint_every_steps=10)
  create = runners.create
  monkeypatch.setattr(loop.runners, 'create', lambda *args: _SignalAfter(create(*args), 10))
  workdir = str(tmp_path / 'run')
  with pytest.raises(TrainingInterrupted):
    training.train_and_evaluate(config, workdir)  # checkpointed at step 10, between logs
  monkeypatch.setattr(loop.runners, 'create', create)
  training.train_and_evaluate(config, workdir)
  covered = {m['step']: m.get('train/steps_in_mean') for m in metric_writers.read_metrics(workdir)
             if 'train/loss' in m}
  assert covered == {4: None, 8: None, 12: 2, 15: 3}  # 11-12 after the resume; 13-15 at the end


def test_a_checkpoint_that_cannot_fit_is_refused_before_orbax_starts_writing(
    tmp_path, monkeypatch):
  real_disk_usage = shutil.disk_usage
  monkeypatch.setattr(checkpointing.shutil, 'disk_usage',
                      lambda path: real_disk_usage(path)._replace(free=500_000))
  workdir = str(tmp_path / 'run')
  with pytest.raises(checkpointing.NoSpaceError,
                     match=r'No space left for the checkpoint at step 10 in .*needs about'):
    training.train_and_evaluate(_config(), workdir)
  assert not os.path.exists(os.path.join(workdir, 'checkpoints', '10'))


def test_a_write_that_fails_leaves_no_file_and_names_the_one_meant(tmp_path, monkeypatch):
  path = tmp_path / 'report.json'
  path.write_text('the old report')

  def no_space(descriptor):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(files.os, 'fsync', no_space)
  with pytest.raises(OSError) as raised:
    files.write_text_atomically(str(path), 'the new report')
  assert raised.value.filename == str(path)
  assert errors.os_error_message(raised.value) == (
      f'No space left on device: {path} (free some space there or choose another folder).')
  assert os.listdir(tmp_path) == ['report.json'] and path.read_text() == 'the old report'


@pytest.fixture
def full_disk(tmp_path):
  """A 1 MB tmpfs filled to the last byte (mounting needs root, as in CI)."""
  folder = tmp_path / 'disk'
  folder.mkdir()
  if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs',
                                          str(folder)], capture_output=True).returncode:
    pytest.skip('a full disk is a tmpfs here, and mounting one needs root')
  (folder / 'run').mkdir()
  with open(folder / 'filler', 'wb', buffering=0) as f, contextlib.suppress(OSError):
    while True:
      f.write(b'\0' * 4096)
  yield folder
  subprocess.run(['umount', str(folder)], check=False)


def test_a_workdir_on_a_full_disk_is_locked_and_its_config_write_named(full_disk):
  workdir = full_disk / 'run'
  with workdir_lock.hold([str(workdir)]):  # the holder's note does not fit: the lock holds
    with pytest.raises(workdir_lock.WorkdirInUseError, match='another process is training'):
      with workdir_lock.hold([str(workdir)]):
        pass
    with pytest.raises(OSError) as raised:
      checkpointing.save_config(_config(), str(workdir))
  assert errors.os_error_message(raised.value) == (
      f'No space left on device: {workdir}/config.json (free some space there or choose another '
      'folder).')
  assert sorted(os.listdir(workdir)) == ['.lock']
