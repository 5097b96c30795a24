"""The training loop: it learns, it resumes exactly, the launcher and its overrides work."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import REPO_ROOT
from vae_jax import data, models, optimizers
from vae_jax.engine import checkpointing, loop, metric_writers, runners, runs, steps, training
from vae_jax.evaluators import elbo


def _trees_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _restore_latest(workdir, target):
  manager = checkpointing.create_checkpoint_manager(workdir, max_to_keep=3)
  restored = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(target))
  manager.close()
  return restored


@pytest.mark.slow
def test_training_improves_the_test_elbo(tiny_config, tmp_path):
  tiny_config.num_epochs = 6
  dataset = data.load_dataset(tiny_config.data)
  model = models.build_model(tiny_config.model, dataset.data_shape)
  keys = steps.RunKeys.from_seed(tiny_config.seed)
  initial = steps.create_train_state(model, optimizers.create_optimizer(tiny_config.optimizer, 1),
                                        dataset.data_shape, keys.init)
  elbo_fn = elbo.make_elbo_fn(model, num_samples=1, analytic_kl=True)
  initial_elbo = elbo.evaluate_elbo(elbo_fn, initial.params, dataset.test.images,
                                          batch_size=100, rng=keys.eval)['elbo']

  final = training.train_and_evaluate(tiny_config, str(tmp_path))

  final_elbo = elbo.evaluate_elbo(elbo_fn, final.params, dataset.test.images,
                                        batch_size=100, rng=keys.eval)['elbo']
  assert int(final.step) == 6 * (1500 // 100)
  assert final_elbo > initial_elbo + 3.0, (initial_elbo, final_elbo)
  # The loop's own evaluation of the final state is the one computed here.
  last_test = [m for m in metric_writers.read_metrics(str(tmp_path)) if 'test/elbo' in m][-1]
  assert last_test['step'] == int(final.step)
  np.testing.assert_allclose(last_test['test/elbo'], final_elbo, rtol=1e-5)


@pytest.mark.slow
def test_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tiny_config, tmp_path):
  tiny_config.num_epochs = 4
  tiny_config.optimizer.ema_decay = 0.9  # the moving average resumes bitwise too
  uninterrupted = training.train_and_evaluate(tiny_config, str(tmp_path / 'straight'))

  tiny_config.num_epochs = 2
  first_half = training.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))
  # The checkpoint holds exactly the state the first half ended with.
  restored = _restore_latest(str(tmp_path / 'resumed'), first_half)
  assert int(restored.step) == 2 * 15 and _trees_equal(restored, first_half)

  tiny_config.num_epochs = 4  # train for longer: a change the resume must be told to accept
  with pytest.raises(checkpointing.WorkdirConfigMismatchError,
                     match=r'num_epochs: 2 \(saved\) -> 4 \(now\)[\s\S]*--allow_config_change'):
    training.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))
  resumed = training.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'),
                                        allow_config_change=True)
  assert int(resumed.step) == int(uninterrupted.step) == 4 * 15
  assert _trees_equal(resumed.params, uninterrupted.params)
  assert _trees_equal(resumed.opt_state, uninterrupted.opt_state)
  average = optimizers.evaluation_params(resumed.params, resumed.opt_state)
  assert not _trees_equal(average, resumed.params)  # evaluated with the average

  def final_test_elbo(workdir):
    return [m for m in metric_writers.read_metrics(workdir) if 'test/elbo' in m][-1]['test/elbo']

  assert final_test_elbo(str(tmp_path / 'resumed')) == final_test_elbo(str(tmp_path / 'straight'))


@pytest.mark.slow
def test_workdir_refuses_a_config_that_changes_the_model(tiny_config, tmp_path):
  tiny_config.num_epochs = 1
  training.train_and_evaluate(tiny_config, str(tmp_path))
  tiny_config.model.latent_dim = 5
  tiny_config.optimizer.learning_rate = 0.01
  with pytest.raises(checkpointing.WorkdirConfigMismatchError) as error:
    training.train_and_evaluate(tiny_config, str(tmp_path))
  message = str(error.value)
  assert 'model.latent_dim: 2 (saved) -> 5 (now)' in message
  assert 'optimizer.learning_rate: 0.001 (saved) -> 0.01 (now)' in message
  assert 'use a new --workdir' in message
  with pytest.raises(checkpointing.WorkdirConfigMismatchError, match='model.latent_dim'):
    training.train_and_evaluate(tiny_config, str(tmp_path), allow_config_change=True)
  with open(tmp_path / checkpointing.CONFIG_FILENAME) as f:
    assert json.load(f)['model']['latent_dim'] == 2  # the saved config is untouched


@pytest.mark.slow
def test_launcher_applies_overrides_and_fills_the_workdir(tmp_path):
  workdir = tmp_path / 'run'
  command = [sys.executable, '-m', 'experiments.train', '--config=configs/quickstart.py',
             f'--workdir={workdir}', '--config.num_epochs=2', '--config.eval_every_epochs=1',
             '--config.model.latent_dim=3', "--config.model.encoder.hidden_sizes=(12,)",
             '--config.log_every_steps=10']
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 0, result.stderr[-3000:]

  saved = checkpointing.load_config(str(workdir))
  assert saved.model.latent_dim == 3 and saved.model.encoder.hidden_sizes == (12,)
  steps = sorted(int(name) for name in os.listdir(workdir / 'checkpoints') if name.isdigit())
  assert steps[-1] == 2 * (1500 // 50)
  # The overrides reached the model: the checkpointed encoder has 12 hidden units, 3 latents.
  metadata = ocp.StandardCheckpointer().metadata(workdir / 'checkpoints' / str(steps[-1]) /
                                                 'default')
  encoder = metadata.item_metadata.tree['params']['params']['encoder']
  assert tuple(encoder['torso']['dense_0']['kernel'].shape) == (64, 12)
  assert tuple(encoder['mean']['kernel'].shape) == (12, 3)

  metrics = metric_writers.read_metrics(str(workdir))
  assert [m['step'] for m in metrics if 'test/elbo' in m] == [30, 60]
  assert all(np.isfinite(m['train/elbo']) for m in metrics if 'train/elbo' in m)
  for name in ('samples', 'reconstructions'):
    assert (workdir / 'images' / f'{name}_00000060.png').is_file()
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir / 'tensorboard'))
  assert 'Step 60/60' in result.stderr  # the progress line


@pytest.mark.slow
def test_output_bias_starts_at_the_logit_of_the_mean_training_image(tiny_config):
  """Burda et al.'s initialisation: logit(clip(mean training image, 0.001, 0.999))."""
  tiny_config.model.likelihood.output_bias_init = 'data_mean_logit'
  dataset = data.load_dataset(tiny_config.data)
  model = models.build_model(tiny_config.model, dataset.data_shape)
  optimizer = optimizers.create_optimizer(tiny_config.optimizer, 10)
  state = runs.create_state(tiny_config, dataset, model, optimizer, jax.random.key(0))
  images = dataset.train.images.astype(np.float64)
  mean = np.clip(images.mean(0), 0.001, 0.999).reshape(-1)
  bias = state.params['params']['decoder']['net']['output']['bias']
  np.testing.assert_allclose(bias, np.log(mean / (1 - mean)), rtol=1e-5, atol=1e-5)
  assert np.ptp(bias) > 1  # the digits' mean image is far from uniform


@pytest.mark.slow
def test_a_run_with_random_flips_resumes_bitwise_and_never_flips_what_it_evaluates(
    tiny_config, tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  folder = tmp_path / 'images'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for index in range(220):
    Image.fromarray(rng.integers(0, 256, (8, 8), np.uint8)).save(folder / f'{index:03d}.png')
  tiny_config.data.update(name=str(folder), test_size=20, random_flip=True)
  tiny_config.update(num_epochs=4, checkpoint_every_steps=2)
  unflipped = data.load_dataset(tiny_config.data.copy_and_resolve_references())
  tiny_config.data.random_flip = False
  read = data.load_dataset(tiny_config.data)
  np.testing.assert_array_equal(unflipped.train.images, read.train.images)  # flips are drawn in
  np.testing.assert_array_equal(unflipped.test.images, read.test.images)  # the training step
  tiny_config.data.random_flip = True
  uninterrupted = training.train_and_evaluate(tiny_config, str(tmp_path / 'straight'))
  tiny_config.num_epochs = 2
  training.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))
  tiny_config.num_epochs = 4
  resumed = training.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'),
                                        allow_config_change=True)
  assert int(resumed.step) == int(uninterrupted.step) == 4 * 2
  assert _trees_equal(resumed.params, uninterrupted.params)
  tiny_config.data.random_flip = False
  without = training.train_and_evaluate(tiny_config, str(tmp_path / 'without_flips'))
  assert not _trees_equal(without.params, uninterrupted.params)


@pytest.mark.parametrize('ema_decay', [0.0, 0.9])
def test_a_checkpoint_at_an_evaluation_is_checked_by_that_evaluation(tiny_config, tmp_path,
                                                                      monkeypatch, ema_decay):
  # Every checkpoint's parameters pass a negative-ELBO divergence check: an evaluation at the
  # same step checks them on the whole test split, so the one-batch check is not run again;
  # with a moving average the evaluation scores other parameters, and the batch check stays.
  tiny_config.checkpoint_every_steps = 1000  # saves at the two evaluations only
  tiny_config.optimizer.ema_decay = ema_decay
  tiny_config.eval_batch_size = 100
  scored = []
  call = elbo.ElboEvaluator.__call__
  monkeypatch.setattr(elbo.ElboEvaluator, '__call__', lambda self, params, split, rng: (
      scored.append(len(split)) or call(self, params, split, rng)))
  training.train_and_evaluate(tiny_config, str(tmp_path))
  test_size = len(data.load_dataset(tiny_config.data).test)
  per_save = [test_size] if ema_decay == 0 else [test_size, 100]
  assert scored == 2 * per_save, scored


def test_the_host_checks_and_logs_a_call_while_the_next_one_runs(tiny_config, tmp_path,
                                                                 monkeypatch):
  # Between evaluations and checkpoints the loop dispatches the next training call before it
  # waits for the last one's metrics (its skip check and log), so that the device works while
  # the host does; at an evaluation or checkpoint step it waits for the call first.
  tiny_config.num_epochs, tiny_config.steps_per_call = 1, 5  # 15 steps: calls end at 5, 10, 15
  tiny_config.checkpoint_every_steps = 1000  # one checkpoint: the evaluation's at step 15
  events = []
  dispatch, check = runners.DeviceRunner.__call__, loop.Loop._check_finite
  monkeypatch.setattr(runners.DeviceRunner, '__call__', lambda self, state, step, stop: (
      events.append(('dispatch', step)) or dispatch(self, state, step, stop)))
  monkeypatch.setattr(loop.Loop, '_check_finite', lambda self, metrics, step: (
      events.append(('check', step)) or check(self, metrics, step)))
  training.train_and_evaluate(tiny_config, str(tmp_path))
  assert events == [('dispatch', 0), ('dispatch', 5), ('check', 5), ('dispatch', 10),
                    ('check', 10), ('check', 15)]
  logged = [m['step'] for m in metric_writers.read_metrics(str(tmp_path)) if 'train/loss' in m]
  assert logged == [5, 10, 15]


def test_the_hosts_count_of_consecutive_skipped_updates_is_the_states():
  # The loop counts each run's consecutive skipped updates from the calls' `skipped` flags, as
  # TrainState counts them one step at a time.
  rng = np.random.default_rng(0)
  streaks = np.array([0, 3, 7, 0])
  for _ in range(20):
    skipped = rng.random((4, 5)) < 0.7
    expected = streaks.copy()
    for column in skipped.T:
      expected = np.where(column, expected + 1, 0)
    streaks = loop.consecutive_after(streaks, skipped)
    np.testing.assert_array_equal(streaks, expected)
