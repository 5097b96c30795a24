"""What a user of the launchers gets: changed settings that take effect on resume, data found
from anywhere, workdirs that failed launches and concurrent launches cannot spoil, short error
messages, a default workdir, and divergence reported."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

from experiments import evaluate, launch, sweep
from tests.conftest import REPO_ROOT, SHARED_FREY_FACE, make_tiny_config, require_file
from vae_jax import data, models, optimizers
from vae_jax.engine import (checkpointing, config_checks, metric_writers, steps, training,
                            workdir_lock)

_TINY_FLAGS = ['--config=configs/quickstart.py', '--config.model.latent_dim=2',
               '--config.model.encoder.hidden_sizes=(16,)',
               '--config.model.decoder.hidden_sizes=(16,)', '--config.evals.images.num_images=0',
               '--config.checkpoint_every_steps=1000']


def _launch(*arguments, cwd=REPO_ROOT):
  return subprocess.run([sys.executable, '-m', *arguments], cwd=cwd, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO_ROOT))


def _latest_state(workdir):
  """The latest checkpoint as a pytree of numpy arrays (no target structure needed)."""
  manager = checkpointing.create_checkpoint_manager(workdir, max_to_keep=10)
  try:
    return manager.restore(manager.latest_step())
  finally:
    manager.close()


def _config(**overrides):
  config = make_tiny_config()
  config.evals.images.num_images = 0
  config.num_epochs = 1
  return sweep.apply_overrides(config, overrides)


# 1. Optimizer settings changed on resume take effect.

@pytest.mark.slow
def test_a_learning_rate_changed_on_resume_sets_the_update_size_through_the_launcher(tmp_path):
  # The design card's command, with no --workdir: the run goes to runs/<config> (item 6).
  flags = [flag.replace('configs/', f'{REPO_ROOT}/configs/') for flag in _TINY_FLAGS]
  first = _launch('experiments.train', *flags, '--config.num_epochs=1', cwd=tmp_path)
  assert first.returncode == 0, first.stderr[-2000:]
  assert 'Workdir: runs/quickstart' in first.stdout
  workdir = str(tmp_path / 'runs' / 'quickstart')
  before = _latest_state(workdir)
  resumed = _launch('experiments.train', *flags, '--config.num_epochs=2',
                    '--config.optimizer.learning_rate=1e-30', '--allow_config_change',
                    cwd=tmp_path)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  after = _latest_state(workdir)
  assert int(after['step']) == 2 * int(before['step'])
  # Adam's step is at most about the learning rate: 1e-30 moves no parameter visibly, where
  # the saved 1e-3 would move them by about 1e-3 each step.
  update = max(float(np.max(np.abs(a - b))) for a, b in
               zip(jax.tree.leaves(after['params']), jax.tree.leaves(before['params'])))
  assert update < 1e-20
  assert after['opt_state']['hyperparams']['learning_rate'] == np.float32(1e-30)


@pytest.fixture(scope='module')
def one_epoch_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('one_epoch'))
  training.train_and_evaluate(_config(), workdir)
  return workdir


def _reference_epoch(workdir: str, config) -> dict:
  """Epoch 2 from the epoch-1 checkpoint, taken with plain optax built from `config` (no
  injected hyperparameters) and host-gathered batches: the independent computation."""
  dataset = data.load_dataset(config.data)
  model = models.build_model(config.model, dataset.data_shape)
  steps_per_epoch = len(dataset.train) // config.batch_size
  injected = optimizers.create_optimizer(config.optimizer, 2 * steps_per_epoch)
  target = steps.create_train_state(model, injected, dataset.data_shape, jax.random.key(0))
  state = checkpointing.restore_state(workdir, target)
  opt = config.optimizer
  multiplier = optimizers.with_warmup(  # as create_optimizer scales the learning rate
      optimizers.learning_rate_multiplier(opt.schedule, 2 * steps_per_epoch), opt.warmup_steps)
  plain = optax.chain(optax.add_decayed_weights(opt.weight_decay),
                      optax.adam(lambda count: opt.learning_rate * multiplier(count), b1=opt.b1,
                                 b2=opt.b2, eps=opt.eps))
  state = state.replace(opt_state=state.opt_state.inner_state)  # the same moments and counts
  keys = steps.RunKeys.from_seed(config.seed)
  batches = steps.HostBatches(dataset.train.images, keys.data_order,
                              steps_per_epoch=steps_per_epoch, batch_size=config.batch_size)
  step_fn = jax.jit(lambda s, x: steps.train_step(
      s, x, keys.train, steps.LossHyperparams.from_config(config, steps_per_epoch), model=model,
      optimizer=plain, settings=steps.StepSettings.from_config(config, model)))
  for step in range(steps_per_epoch, 2 * steps_per_epoch):
    state, _ = step_fn(state, batches(step))
  return state.params


@pytest.mark.parametrize('key,value', [('learning_rate', 1e-2), ('b1', 0.5), ('b2', 0.9),
                                       ('eps', 1e-1), ('weight_decay', 0.3),
                                       ('schedule', 'iwae')])
@pytest.mark.slow
def test_every_optimizer_setting_a_resume_accepts_takes_effect(one_epoch_workdir, tmp_path, key,
                                                               value):
  workdir = str(tmp_path / 'run')
  shutil.copytree(one_epoch_workdir, workdir)
  changed = _config(num_epochs=2, **{f'optimizer.{key}': value})
  resumed = training.train_and_evaluate(changed, workdir, allow_config_change=True)
  reference = _reference_epoch(one_epoch_workdir, changed)
  for ours, theirs in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(reference)):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


# 2. A trained workdir finds its data from anywhere.

@pytest.mark.slow
def test_the_workdir_records_an_absolute_data_location(tmp_path, monkeypatch, mock_tfds):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv('TFDS_DATA_DIR', 'relative_tfds')
  config = _config()
  config.data.update(name='mnist', test_size=0)
  config.batch_size = 20
  with mock_tfds(num_examples=60):
    training.train_and_evaluate(config, 'run')
  saved = checkpointing.load_config(str(tmp_path / 'run'))
  assert saved.data.tfds_data_dir == str(tmp_path / 'relative_tfds')
  monkeypatch.delenv('TFDS_DATA_DIR')
  with mock_tfds(num_examples=60):
    evaluated, *_ = launch.load_trained(str(tmp_path / 'run'))
    moved, *_ = launch.load_trained(str(tmp_path / 'run'), data_dir='/moved/tfds')
  assert evaluated.data.tfds_data_dir == str(tmp_path / 'relative_tfds')
  assert moved.data.tfds_data_dir == '/moved/tfds'


@pytest.mark.slow  # trains, or compiles for over 9 s with a cold cache
def test_a_trained_run_with_a_moving_average_keeps_its_params_and_evaluates_the_average(
    tmp_path):
  config = _config(**{'optimizer.ema_decay': 0.5})
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(config, workdir)
  saved = _latest_state(workdir)
  trained = launch.load_trained(workdir)
  saved_average = saved['opt_state'][-1]['average']  # the average is chained last
  for ours, theirs in [(trained.state.params, saved['params']),
                       (trained.eval_params, saved_average)]:
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for our_leaf, their_leaf in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
      np.testing.assert_array_equal(our_leaf, their_leaf)
  assert any(not np.array_equal(a, b) for a, b in  # the two differ: the test tells them apart
             zip(jax.tree.leaves(trained.state.params), jax.tree.leaves(trained.eval_params)))


@pytest.mark.slow
def test_a_workdir_trained_on_a_relative_data_file_evaluates_from_another_directory(
    tmp_path, monkeypatch):
  require_file(SHARED_FREY_FACE, 'Frey Face (frey_rawface.mat)')
  monkeypatch.chdir(os.path.dirname(SHARED_FREY_FACE))
  config = _config()
  config.data.update(name='frey_face', path='frey_rawface.mat', binarization='none',
                     test_size=200)
  config.model.likelihood.kind = 'gaussian'
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(config, workdir)
  monkeypatch.chdir(tmp_path)
  report = evaluate.evaluate_workdir(workdir, step=None, split='test', num_importance_samples=2,
                                     chunk_size=2, batch_size=100, seed=0,
                                     probe_train_examples=0)
  assert report['num_examples'] == 200
  with pytest.raises(data.DataUnavailableError, match='--data_path'):
    evaluate.evaluate_workdir(workdir, step=None, split='test', num_importance_samples=2,
                              chunk_size=2, batch_size=100, seed=0, probe_train_examples=0,
                              data_path='moved/frey_rawface.mat')


# 3. A failed launch leaves nothing that blocks the corrected command.

@pytest.mark.slow
def test_a_launch_that_fails_its_checks_writes_nothing(tmp_path):
  workdir = tmp_path / 'run'
  with pytest.raises(config_checks.ConfigError, match='batch_size=5000 exceeds'):
    training.train_and_evaluate(_config(batch_size=5000), str(workdir))
  assert not workdir.exists()
  training.train_and_evaluate(_config(), str(workdir))  # the corrected command
  assert checkpointing.holds_trained_state(str(workdir))


@pytest.mark.slow
def test_a_workdir_with_a_config_but_no_checkpoint_is_a_new_run(tmp_path):
  workdir = str(tmp_path)
  checkpointing.save_config(_config(**{'model.latent_dim': 3}), workdir)  # trained nothing
  training.train_and_evaluate(_config(), workdir)
  assert checkpointing.load_config(workdir).model.latent_dim == 2


# 4. One launch per workdir; unreadable checkpoints keep being refused.

def test_a_second_launch_on_a_busy_workdir_is_refused(tmp_path):
  workdir = str(tmp_path)
  with workdir_lock.hold([workdir]):
    with pytest.raises(workdir_lock.WorkdirInUseError, match=rf'process {os.getpid()} on'):
      training.train_and_evaluate(_config(), workdir)
  assert not os.path.exists(os.path.join(workdir, checkpointing.CONFIG_FILENAME))


def test_the_lock_of_a_killed_process_does_not_block(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time\nfrom vae_jax.engine import workdir_lock\n'
       f'with workdir_lock.hold([{str(tmp_path)!r}]):\n  print("held", flush=True)\n'
       '  time.sleep(600)'], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(workdir_lock.WorkdirInUseError, match=f'process {holder.pid}'):
      with workdir_lock.hold([str(tmp_path)]):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with workdir_lock.hold([str(tmp_path)]):  # the lock file stays, the lock does not
    assert os.path.exists(tmp_path / workdir_lock.LOCK_FILENAME)


@pytest.mark.slow
def test_unreadable_checkpoints_are_refused_at_every_launch(tmp_path):
  workdir = str(tmp_path)
  training.train_and_evaluate(_config(checkpoints_to_keep=1), workdir)
  for folder, _, files in os.walk(os.path.join(workdir, 'checkpoints')):
    for name in files:
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(b'garbage')
  for _ in range(2):  # the second launch used to start again from step 0
    with pytest.raises(checkpointing.CheckpointError, match='move or delete'):
      training.train_and_evaluate(_config(), workdir)


# 5. Readable errors; evaluation skips an unreadable latest checkpoint; divergence is reported.

@pytest.mark.slow
def test_bad_command_lines_end_in_one_short_message():
  result = subprocess.run(
      # The command-line paths (flags, config files, variants) and two OS and file errors;
      # the other cases of the battery (docs/results/reliability.md) are tested in process.
      [sys.executable, '-m', 'scripts.bad_inputs', '--only=typo_in_a_config_key,bad_value_type,'
       'stray_argument,variant_typo,missing_config_file,override_without_config,'
       'workdir_is_a_file,truncated_npz,unknown_dataset,zero_epochs'], cwd=REPO_ROOT,
      capture_output=True, text=True, timeout=300)
  rows = [line for line in result.stdout.splitlines() if line.startswith('| ')][1:]
  assert len(rows) == 10 and result.returncode == 0, result.stdout + result.stderr[-2000:]
  assert all(row.endswith('| yes |') for row in rows)


@pytest.mark.slow
def test_evaluation_falls_back_from_a_latest_checkpoint_without_metadata(trained_workdir,
                                                                         tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_workdir, workdir, ignore=shutil.ignore_patterns('evaluation'))
  latest = max(int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints')) if n.isdigit())
  os.remove(os.path.join(workdir, 'checkpoints', str(latest), 'default', '_METADATA'))
  report = evaluate.evaluate_workdir(workdir, step=None, split='test', num_importance_samples=2,
                                     chunk_size=2, batch_size=100, seed=0,
                                     probe_train_examples=0)
  assert 0 < report['step'] < latest
  assert f'the later step {latest}' in caplog.text
  with pytest.raises(checkpointing.CheckpointError, match=rf'step {latest} .*--step'):
    evaluate.evaluate_workdir(workdir, step=latest, split='test', num_importance_samples=2,
                              chunk_size=2, batch_size=100, seed=0, probe_train_examples=0)


@pytest.mark.slow
def test_a_run_that_diverges_stops_with_an_error_and_no_checkpoint_of_it(tmp_path):
  config = _config(num_epochs=20, log_every_steps=10, checkpoint_every_steps=10_000)
  config.optimizer.learning_rate = 3.0
  with pytest.raises(training.DivergenceError, match='the run diverged.*No checkpoint was'):
    training.train_and_evaluate(config, str(tmp_path))
  initial = metric_writers.first_value(str(tmp_path), 'train/initial_loss')
  assert initial == pytest.approx(64 * np.log(2), rel=0.2)  # 64 pixels at p = 1/2, about


@pytest.mark.slow
def test_the_nonfinite_error_says_when_no_checkpoint_was_written(tmp_path, monkeypatch):
  config = _config(max_consecutive_nonfinite_steps=3, steps_per_call=1)
  config.data.binarization = 'none'
  config.model.likelihood.kind = 'gaussian'
  original = steps.train_step
  monkeypatch.setattr(steps, 'train_step', lambda state, images, *a, **k: original(
      state, images * np.nan, *a, **k))
  with pytest.raises(training.NonFiniteTrainingError, match='No checkpoint was written'):
    training.train_and_evaluate(config, str(tmp_path))


# 6. The design card's command works without --workdir: see the first test.

def test_the_default_workdir_is_named_after_the_config_and_variant():
  assert launch.default_workdir('configs/mnist.py') == 'runs/mnist'
  assert launch.default_workdir('configs/iwae.py:vae_k1_l1', 'lr') == 'runs/iwae-vae_k1_l1-lr'


# 7. Sweeps say which run a line belongs to and end with a summary.

@pytest.mark.slow
def test_sweep_runs_are_named_in_the_log_and_summarised(tmp_path, caplog):
  workdirs = [str(tmp_path / 'seed=0'), str(tmp_path / 'seed=1')]
  caplog.set_level('INFO')
  training.train_and_evaluate_group([_config(seed=0), _config(seed=1)], workdirs)
  assert 'seed=1 [15] test/elbo=' in caplog.text
  table = sweep.summary_table(workdirs).splitlines()
  assert table[0].startswith('| run | step | epoch | test ELBO')
  assert [row.split('|')[1].strip() for row in table[2:]] == ['seed=0', 'seed=1']
  rows = subprocess.run([sys.executable, '-m', 'scripts.results_table', f'--root={tmp_path}'],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120).stdout
  # The two seeds are one row: the mean and standard deviation of their last test ELBOs.
  elbos = [[m for m in metric_writers.read_metrics(w) if 'test/elbo' in m][-1]['test/elbo']
           for w in workdirs]
  row, = [line for line in rows.splitlines() if 'seeds 0,1; n = 2' in line]
  assert f'{np.mean(elbos):.2f} ± {np.std(elbos, ddof=1):.2f}' in row


def test_print_commands_carry_the_data_location(tmp_path):
  config = _config()
  config.data.update(name='mnist', tfds_data_dir='relative')
  command = sweep.train_command('configs/mnist.py', str(tmp_path), {'seed': 1}, [], config.data)
  assert command.endswith(f'--config.seed=1 --data_dir={os.path.abspath("relative")}')


@pytest.mark.slow
def test_a_sweep_stopped_by_sigterm_checkpoints_and_exits_143_without_a_traceback(tmp_path):
  # A scheduler's preemption: every run of the group is checkpointed, and the exit status says
  # "terminated" (128 + 15) so a requeueing wrapper can tell it from a failure (it was 1).
  command = [sys.executable, '-m', 'experiments.sweep', *_TINY_FLAGS, '--sweep=seeds',
             '--config.num_epochs=1000', '--config.log_every_steps=1',
             f'--workdir={tmp_path}']
  job = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
  metrics = tmp_path / 'seed=0' / 'metrics.jsonl'
  deadline = time.monotonic() + 240
  while not (metrics.exists() and metrics.stat().st_size) and time.monotonic() < deadline:
    time.sleep(0.5)  # training has started once a run logged its first step
  job.send_signal(signal.SIGTERM)
  _, stderr = job.communicate(timeout=120)
  assert job.returncode == 128 + signal.SIGTERM, stderr[-2000:]
  assert 'Traceback' not in stderr
  assert 'Interrupted by SIGTERM at step' in stderr
  steps = {int(_latest_state(str(tmp_path / f'seed={seed}'))['step']) for seed in range(4)}
  assert len(steps) == 1 and steps.pop() > 0  # every run saved at the step it stopped


@pytest.mark.slow
def test_a_run_whose_updates_are_mostly_skipped_stops_naming_the_norms_and_the_threshold(
    tmp_path):
  """openai/vdvae#25: the gradient norm settles above the skip threshold and every update is
  skipped; no streak limit is reached (here it is out of reach), and before max_skipped_share
  the run trained on to its end without learning, exiting 0."""
  result = _launch('experiments.train', *_TINY_FLAGS, f'--workdir={tmp_path}',
                   '--config.num_epochs=2', '--config.optimizer.skip_threshold=0.001',
                   '--config.max_consecutive_nonfinite_steps=1000000', '--config.log_every_steps=5')
  assert result.returncode == 1, result.stderr[-2000:]
  message = result.stderr.strip().splitlines()[-1]
  assert re.match(r'error: \S+: training stopped at step 5: 5 of the last 5 updates \(100%\) '
                  r'were skipped, more than max_skipped_share=0.5: their gradient norms ran '
                  r'from [\d.]+ to [\d.]+ \(median [\d.]+\) against '
                  r'optimizer.skip_threshold=0.001\. Raise optimizer.skip_threshold \(above '
                  r'[\d.]+ it would have accepted 90% of them\)', message), message
  assert 'Traceback' not in result.stderr


@pytest.mark.slow
def test_configs_images_trains_on_a_folder_of_jpegs_of_mixed_sizes_some_grey(tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  folder = tmp_path / 'photos'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for index in range(40):
    height, width = rng.integers(16, 48, 2)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8))
    (image.convert('L') if index % 8 == 0 else image).save(folder / f'{index:02d}.jpg')
  workdir = tmp_path / 'run'
  trained = _launch('experiments.train', '--config=configs/images.py',
                    f'--config.data.name={folder}/', '--config.data.image_size=16',
                    '--config.num_epochs=1', '--config.evals.images.num_images=0',
                    f'--workdir={workdir}')
  assert trained.returncode == 0, trained.stderr[-2000:]
  assert '40 files, each (16, 16, 3) (H, W, C) after resizing and centre-cropping; 5 grey ' \
      'file(s) converted to RGB' in trained.stderr
  tested = [m for m in metric_writers.read_metrics(str(workdir)) if 'test/elbo' in m]
  assert tested and np.isfinite(tested[-1]['test/elbo']) and tested[-1]['step'] == 36 // 16


@pytest.mark.slow
def test_a_folder_of_your_own_images_trains_streams_and_evaluates_and_a_bad_one_is_named(
    tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  folder = tmp_path / 'my_images'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for index in range(60):
    Image.fromarray(rng.integers(0, 256, (8, 8), np.uint8), 'L').save(folder / f'{index}.png')
  own = [*_TINY_FLAGS, f'--config.data.name={folder}', '--config.data.test_size=10',
         '--config.batch_size=10', '--config.num_epochs=1']
  for pipeline in ('device', 'grain'):
    workdir = tmp_path / f'run_{pipeline}'
    trained = _launch('experiments.train', *own, f'--config.input_pipeline={pipeline}',
                      f'--workdir={workdir}')
    assert trained.returncode == 0, trained.stderr[-2000:]
    evaluated = _launch('experiments.evaluate', f'--workdir={workdir}', '--evals=elbo')
    assert evaluated.returncode == 0 and 'ELBO' in evaluated.stdout, evaluated.stderr[-2000:]
  Image.fromarray(np.zeros((16, 8), np.uint8)).save(folder / 'tall.png')
  refused = _launch('experiments.train', *own, f'--workdir={tmp_path / "run_mixed"}')
  assert refused.returncode == 1
  assert re.match(r"error: The images differ in size or channels: .*0.png is \(8, 8, 1\) \(H, W, "
                  r"C\), .*tall.png is \(16, 8, 1\)\. Resize them", refused.stderr.strip()
                  .splitlines()[-1])


@pytest.mark.slow
def test_a_second_run_of_a_config_compiles_nothing(tmp_path):
  cache = tmp_path / 'cache'
  command = [sys.executable, '-m', 'experiments.train', '--config=configs/quickstart.py',
             '--config.num_epochs=1', '--config.model.latent_dim=2',
             '--config.evals.images.num_images=0', f'--compilation_cache={cache}']
  cached = []
  for name in ('first', 'second'):
    result = subprocess.run([*command, f'--workdir={tmp_path / name}'], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    cached.append(sorted(os.listdir(cache)))
  assert cached[0] and cached[1] == cached[0]  # every program of the second run was found
