"""The multi-process (multi-host) path, run for real: two processes on localhost, joined by
`jax.distributed` (a 127.0.0.1 coordinator, Gloo collectives on CPU), each with one device and
its own share of every batch, launched exactly as a user launches them."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import portpicker
import pytest

from tests.conftest import REPO_ROOT
from vae_jax.engine import checkpointing, metric_writers, training

TINY = ['--config=configs/quickstart.py', '--config.model.latent_dim=2',
        '--config.model.encoder.hidden_sizes=(16,)', '--config.model.decoder.hidden_sizes=(16,)',
        '--config.evals.images.num_images=0', '--config.checkpoint_every_steps=10',
        '--config.input_pipeline=grain']


def _start(workdir: str, num_processes: int, *flags: str) -> list[subprocess.Popen]:
  port = portpicker.pick_unused_port()
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  return [subprocess.Popen(
      [sys.executable, '-m', 'experiments.train', *TINY, f'--workdir={workdir}', '--distributed',
       f'--coordinator_address=127.0.0.1:{port}', f'--num_processes={num_processes}',
       f'--process_id={index}', *flags], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for index in range(num_processes)]


def _finish(processes, timeout=300) -> list[str]:
  stderrs = [process.communicate(timeout=timeout)[1] for process in processes]
  for index, (process, stderr) in enumerate(zip(processes, stderrs)):
    assert process.returncode == 0, f'process {index}:\n{stderr[-3000:]}'
  return stderrs


@pytest.mark.slow
def test_two_processes_train_resume_and_checkpoint_like_one(tmp_path):
  workdir = str(tmp_path / 'two')
  stderrs = _finish(_start(workdir, 2, '--config.num_epochs=1'))
  assert 'Process 1 of 2; 2 devices in all, 1 here.' in stderrs[1]
  # Resumed by both processes from the checkpoint they wrote together.
  _finish(_start(workdir, 2, '--config.num_epochs=2', '--allow_config_change'))
  config = checkpointing.load_config(workdir)
  one = training.train_and_evaluate(config, str(tmp_path / 'one'))  # 1 process, uninterrupted
  two = checkpointing.restore_state(workdir, one)  # read as experiments.evaluate reads it
  assert int(two.step) == int(one.step) == 60
  for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(one)):
    # Each device sums half of each batch: equal up to float rounding.
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=2e-5)
  # Checkpoints and metrics are written once, each process's data iterator beside the state.
  steps = sorted(int(name) for name in os.listdir(os.path.join(workdir, 'checkpoints')))
  assert steps == [40, 50, 60]
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints', '60', 'data_iterator'))) == [
      'commit_success.txt', 'process_0-of-2.json', 'process_1-of-2.json']
  logged = [m['step'] for m in metric_writers.read_metrics(workdir) if 'train/loss' in m]
  assert logged == sorted(set(logged))


@pytest.mark.slow
def test_when_one_process_dies_the_other_says_so_and_stops(tmp_path):
  workdir = str(tmp_path / 'run')
  processes = _start(workdir, 2, '--config.num_epochs=1000', '--heartbeat_timeout_seconds=10')
  checkpoints = os.path.join(workdir, 'checkpoints')
  deadline = time.monotonic() + 240
  while not (os.path.isdir(checkpoints) and any(n.isdigit() for n in os.listdir(checkpoints))):
    assert time.monotonic() < deadline and processes[0].poll() is None, 'no progress'
    time.sleep(0.2)
  processes[1].send_signal(signal.SIGKILL)
  killed = time.monotonic()
  _, stderr = processes[0].communicate(timeout=120)
  processes[1].communicate()
  assert time.monotonic() - killed < 60  # it stops, it does not hang
  assert processes[0].returncode != 0, stderr[-3000:]
  # In a collective, the launcher's one line; elsewhere (saving a checkpoint, say), JAX's
  # coordination service aborts the process after the heartbeat timeout, naming the lost one.
  ours = [line for line in stderr.splitlines() if line.startswith('error: ')]
  if processes[0].returncode == 1:
    assert len(ours) == 1 and 'process 0 of 2 lost contact with another process' in ours[0]
    assert 'relaunch every process with the same command to resume' in ours[0]
  else:
    assert 'The following tasks are unhealthy (stopped sending heartbeats)' in stderr, stderr[-3000:]
