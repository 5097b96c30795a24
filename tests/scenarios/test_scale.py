"""The execution paths agree: host-fed and device-resident training, a vectorised group and runs
trained alone, 4 devices and 1; and the sweep launcher groups runs by shape."""

import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import sweep
from tests.conftest import REPO_ROOT, make_tiny_config
from vae_jax.engine import checkpointing, config_checks, metric_writers, training


def _config(**overrides):
  config = make_tiny_config()
  config.num_epochs, config.evals.images.num_images = 3, 0
  return sweep.apply_overrides(config, overrides)


def _max_difference(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
def test_host_fed_and_device_resident_paths_train_identically(tmp_path):
  device = training.train_and_evaluate(_config(input_pipeline='device', steps_per_call=7),
                                       str(tmp_path / 'device'))
  host = training.train_and_evaluate(_config(input_pipeline='host'), str(tmp_path / 'host'))
  # Same batches, same noise, same updates: bitwise equal on CPU.
  assert _max_difference(device.params, host.params) == 0.0
  assert _max_difference(device.opt_state, host.opt_state) == 0.0


@pytest.mark.slow
def test_a_checkpoint_written_mid_run_survives_the_donated_updates_after_it(tmp_path):
  config = _config(checkpoint_every_steps=20)
  training.train_and_evaluate(config, str(tmp_path / 'long'))  # keeps the saves at 30, 40, 45
  stopped = training.train_and_evaluate(_config(num_epochs=2, checkpoint_every_steps=20),
                                        str(tmp_path / 'short'))  # ends (and saves) at 30
  manager = checkpointing.create_checkpoint_manager(str(tmp_path / 'long'), max_to_keep=10)
  assert manager.all_steps() == [30, 40, 45]
  restored = manager.restore(30, args=ocp.args.StandardRestore(stopped))
  manager.close()
  assert _max_difference(restored, stopped) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize('execution', ['vmap', 'map'])
def test_a_group_trains_each_run_as_if_alone(tmp_path, execution):
  variant = {'seed': 1, 'optimizer.learning_rate': 3e-3, 'objective.beta': 0.5,
             'objective.kl_warmup_epochs': 1}
  alone = training.train_and_evaluate(_config(**variant), str(tmp_path / 'alone'))
  group = training.train_and_evaluate_group(
      [_config(sweep_execution=execution), _config(sweep_execution=execution, **variant)],
      [str(tmp_path / 'base'), str(tmp_path / 'variant')])
  assert _max_difference(group[1].params, alone.params) < 1e-5
  assert _max_difference(group[0].params, group[1].params) > 1e-2  # they did differ
  # Each run wrote its own metrics, equal to those of the run trained alone.
  alone_elbo = [m['test/elbo'] for m in metric_writers.read_metrics(str(tmp_path / 'alone'))
                if 'test/elbo' in m]
  group_elbo = [m['test/elbo'] for m in metric_writers.read_metrics(str(tmp_path / 'variant'))
                if 'test/elbo' in m]
  np.testing.assert_allclose(group_elbo, alone_elbo, rtol=1e-5)
  assert checkpointing.load_config(str(tmp_path / 'variant')).optimizer.learning_rate == 3e-3


def test_runs_that_change_shapes_cannot_share_a_group(tmp_path):
  with pytest.raises(config_checks.ConfigError, match=r"differ in \['model.latent_dim'\]"):
    training.train_and_evaluate_group([_config(), _config(**{'model.latent_dim': 3})],
                                      [str(tmp_path / 'a'), str(tmp_path / 'b')])


def test_sweep_groups_runs_by_shape_and_names_their_workdirs():
  configs = [_config(**overrides) for overrides in (
      {'seed': 1}, {'model.latent_dim': 3}, {'seed': 2, 'objective.beta': 0.5},
      {'model.latent_dim': 3, 'seed': 5})]
  assert sweep.group_runs(configs) == [[0, 2], [1, 3]]
  assert sweep.run_name({'seed': 2, 'objective.beta': 0.5}) == 'objective.beta=0.5,seed=2'
  with pytest.raises(KeyError, match='no such key'):
    sweep.apply_overrides(_config(), {'model.latent_size': 3})
  with pytest.raises(TypeError):
    sweep.apply_overrides(_config(), {'model.latent_dim': 'three'})


@pytest.mark.slow
def test_sweep_launcher_prints_one_train_command_per_run(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.sweep', '--config=configs/quickstart.py', '--sweep=lr',
       f'--workdir={tmp_path}', '--print_commands', '--config.num_epochs=2'],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  commands = result.stdout.strip().splitlines()
  assert commands == [
      f'python -m experiments.train --config=configs/quickstart.py '
      f'--workdir={tmp_path}/optimizer.learning_rate={lr} --config.num_epochs=2 '
      f'--config.optimizer.learning_rate={lr}' for lr in ('0.0003', '0.001', '0.003')]


_FOUR_DEVICE_SCRIPT = '''
import sys
import jax, numpy as np
sys.path.insert(0, {repo!r})
from tests.scenarios.test_scale import _config
from vae_jax.engine import training
assert jax.device_count() == 4, jax.devices()
state = training.train_and_evaluate(_config(input_pipeline={pipeline!r}), {workdir!r})
np.savez({output!r}, *[np.asarray(x) for x in jax.tree.leaves(state.params)])
'''


@pytest.mark.slow
@pytest.mark.parametrize('pipeline', ['device', 'host'])
def test_four_devices_train_like_one(tmp_path, pipeline):
  one = training.train_and_evaluate(_config(input_pipeline=pipeline), str(tmp_path / 'one'))
  script = _FOUR_DEVICE_SCRIPT.format(repo=REPO_ROOT, pipeline=pipeline,
                                      workdir=str(tmp_path / 'four'),
                                      output=str(tmp_path / 'four.npz'))
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
         'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  four = np.load(tmp_path / 'four.npz')
  leaves = jax.tree.leaves(one.params)
  # Each device sums a quarter of the batch: the same updates up to float rounding.
  for index, leaf in enumerate(leaves):
    np.testing.assert_allclose(four[f'arr_{index}'], np.asarray(leaf), atol=2e-5, rtol=1e-4)
