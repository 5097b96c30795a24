"""vae_jax/engine/runners.py: the device-resident and host-fed runners, alone or as a vectorised
group, make the same updates."""

import functools
import types

import jax
import numpy as np
import optax
import pytest

from tests.helpers import small_model_config
from vae_jax import data, models
from vae_jax.engine import runners, steps

NUM_STEPS = 6  # two epochs of 3 steps


def _train(input_pipeline, seeds, steps_per_call=2, execution='vmap'):
  model = models.build_model(small_model_config(), (6,))
  optimizer = optax.adam(1e-2)
  images = (np.random.default_rng(0).uniform(size=(13, 6)) > 0.5).astype(np.float32)
  dataset = data.Dataset('test', data.Split(images, None), None, data.Split(images, None))
  config = types.SimpleNamespace(input_pipeline=input_pipeline, batch_size=4,
                                 steps_per_call=steps_per_call)
  schedule = types.SimpleNamespace(steps_per_epoch=3)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('batch',))
  settings = steps.StepSettings('elbo', 1, True, False)
  step_fn = functools.partial(steps.train_step, model=model, optimizer=optimizer,
                              settings=settings)
  keys = [steps.RunKeys.from_seed(seed) for seed in seeds]
  hyperparams = [steps.LossHyperparams(*(np.float32(v) for v in (1, 0, 1, 1, 0)))] * len(seeds)
  runner = runners.create(config, dataset, schedule, mesh, step_fn, keys, hyperparams, execution)
  state = runners.stack([steps.create_train_state(model, optimizer, (6,), k.init) for k in keys],
                        len(seeds) > 1)
  seconds = None
  if execution == 'auto':
    with pytest.raises(RuntimeError, match='choose_execution'):
      runner(state, 0, 3)  # neither program is chosen yet
    before = jax.tree.map(np.asarray, state)
    seconds = runner.choose_execution(state, 0)
    # Timed on copies: the state handed in is neither moved nor donated.
    _assert_same_params(jax.tree.map(np.asarray, state), before)
  step, stops = 0, []
  while step < NUM_STEPS:
    stop = min(NUM_STEPS, (step // 3 + 1) * 3)  # a call never crosses an epoch
    state, metrics, step = runner(state, step, stop)
    stops.append(step)
  return (state, stops, runner.execution, seconds) if execution == 'auto' else (state, stops)


def _assert_same_params(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)


@pytest.mark.slow  # over 10 s of compilation
def test_device_and_host_runners_train_identically():
  device, device_stops = _train('device', [0])
  host, host_stops = _train('host', [0])
  # Calls of steps_per_call = 2 steps, and single steps up to each epoch's end (3 steps).
  assert device_stops == [2, 3, 5, 6] and host_stops == list(range(1, 7))
  _assert_same_params(device.params, host.params)
  assert int(device.step) == int(host.step) == NUM_STEPS


@pytest.mark.slow
def test_a_vectorised_group_trains_each_run_as_if_alone():
  group, _ = _train('device', [0, 1])
  for index, seed in enumerate((0, 1)):
    alone, _ = _train('device', [seed])
    _assert_same_params(jax.tree.map(lambda x, i=index: x[i], group.params), alone.params)


@pytest.mark.slow
@pytest.mark.parametrize('input_pipeline', ['device', 'host'])
def test_auto_times_each_execution_as_training_calls_it_and_keeps_the_faster(input_pipeline):
  state, _, chosen, seconds = _train(input_pipeline, [0, 1], execution='auto')
  assert set(seconds) == {'vmap', 'map'} and all(t > 0 for t in seconds.values())
  assert chosen == min(seconds, key=seconds.get)
  explicit, _ = _train(input_pipeline, [0, 1], execution=chosen)
  _assert_same_params(state.params, explicit.params)
