"""vae_jax/engine/steps.py: one update is plain optax on the objective's gradient; a non-finite batch
is skipped and counted; the data order and β warm-up follow (seed, step) alone."""

import ast
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.conftest import make_tiny_config
from tests.helpers import small_model_config
from vae_jax import evaluators, models, objectives, registries
from vae_jax.engine import steps

SETTINGS = steps.StepSettings(objective='elbo', num_samples=1, analytic_kl=True,
                              dynamic_binarization=False)


def _setup():
  model = models.build_model(small_model_config(), (6,))
  optimizer = optax.adam(1e-2)
  state = steps.create_train_state(model, optimizer, (6,), jax.random.key(0))
  hyperparams = steps.LossHyperparams(*(jnp.asarray(v, jnp.float32) for v in (1, 0, 1, 1, 0)))
  step = jax.jit(functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                   settings=SETTINGS))
  return model, optimizer, state, hyperparams, step


@pytest.mark.slow  # trains, or compiles for over 9 s with a cold cache
def test_a_step_is_one_optax_update_on_the_gradient_of_the_negative_elbo():
  model, optimizer, state, hyperparams, step = _setup()
  x = (np.random.default_rng(0).uniform(size=(8, 6)) > 0.5).astype(np.float32)
  key = jax.random.key(3)
  new_state, metrics = step(state, x, key, hyperparams)

  _, sample_key = jax.random.split(jax.random.fold_in(key, 0))  # step 0's noise

  def loss(params):
    terms = objectives.elbo_terms(model, params, x, sample_key)
    return -jnp.mean(terms['elbo'])

  value, grads = jax.value_and_grad(loss)(state.params)
  updates, _ = optimizer.update(grads, optimizer.init(state.params), state.params)
  expected = optax.apply_updates(state.params, updates)
  np.testing.assert_allclose(metrics['loss'], value, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert int(new_state.step) == 1 and int(new_state.skipped_steps) == 0


def test_a_non_finite_batch_is_skipped_counted_and_the_streak_resets():
  _, _, state, hyperparams, step = _setup()
  bad = np.full((8, 6), np.nan, np.float32)
  good = np.zeros((8, 6), np.float32)
  after_bad, metrics = step(state, bad, jax.random.key(0), hyperparams)
  assert bool(metrics['skipped']) and not bool(metrics['loss_is_finite'])
  for a, b in zip(jax.tree.leaves(after_bad.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  after_two, _ = step(after_bad, bad, jax.random.key(0), hyperparams)
  assert (int(after_two.step), int(after_two.skipped_steps),
          int(after_two.consecutive_skipped_steps)) == (2, 2, 2)
  after_good, _ = step(after_two, good, jax.random.key(0), hyperparams)
  assert (int(after_good.skipped_steps), int(after_good.consecutive_skipped_steps)) == (2, 0)


def test_every_epoch_visits_each_example_once_and_host_batches_match():
  images = np.arange(10, dtype=np.float32)[:, None]
  key = jax.random.key(1)
  batches = steps.HostBatches(images, key, steps_per_epoch=3, batch_size=3)
  for epoch in range(2):
    order = steps.epoch_order(key, epoch, 10)
    assert sorted(np.asarray(order).tolist()) == list(range(10))
    for index in range(3):
      expected = images[np.asarray(steps.batch_from_order(order, index, 3))]
      np.testing.assert_array_equal(batches(epoch * 3 + index), expected)
  assert not np.array_equal(steps.epoch_order(key, 0, 10), steps.epoch_order(key, 1, 10))


def test_beta_rises_linearly_over_the_warmup_and_temperature_anneals_to_its_floor():
  hyperparams = steps.LossHyperparams(*(jnp.asarray(v, jnp.float32)
                                        for v in (0.5, 100, 1.0, 0.5, 0.01)))
  np.testing.assert_allclose([hyperparams.beta_at(s) for s in (0, 25, 100, 400)],
                             [0.0, 0.125, 0.5, 0.5])
  np.testing.assert_allclose(hyperparams.temperature_at(10), np.exp(-0.1), rtol=1e-6)
  np.testing.assert_allclose(hyperparams.temperature_at(1000), 0.5)


def test_an_update_with_a_gradient_norm_above_the_skip_threshold_is_skipped():
  model, optimizer, state, hyperparams, _ = _setup()
  x = (np.random.default_rng(0).uniform(size=(8, 6)) > 0.5).astype(np.float32)
  results = {}
  for threshold in (1e-3, 1e6):
    settings = steps.StepSettings('elbo', 1, True, False, skip_threshold=threshold)
    step = jax.jit(functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                     settings=settings))
    results[threshold] = step(state, x, jax.random.key(0), hyperparams)
  (low, low_metrics), (high, high_metrics) = results[1e-3], results[1e6]
  assert float(low_metrics['grad_norm']) > 1e-3 and bool(low_metrics['skipped'])
  assert int(low.skipped_steps) == 1 and int(high.skipped_steps) == 0
  for a, b in zip(jax.tree.leaves(low.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  assert not bool(high_metrics['skipped'])


def test_the_image_grids_draw_from_their_own_key_and_every_other_evaluator_from_the_eval_key():
  config = make_tiny_config()
  model = models.build_model(config.model, (8, 8, 1))
  keys = steps.RunKeys.from_seed(config.seed)
  init, data_order, train, eval_key, separate = jax.random.split(jax.random.key(config.seed), 5)
  del init, data_order, train  # the order of the split is the keys' identity
  created = evaluators.create(model, config, dataset=None, names=['elbo', 'images'])
  assert set(created) == {'elbo', 'images'}
  for name, expected in [('images', separate), ('elbo', eval_key)]:
    np.testing.assert_array_equal(jax.random.key_data(keys.for_evaluator(created[name])),
                                  jax.random.key_data(expected))


def test_the_engine_names_no_evaluator():
  """What key an evaluator draws from is the evaluator's to declare, not steps.py's to know."""
  source = ast.parse(pathlib.Path(steps.__file__).read_text(encoding='utf-8'))
  strings = {node.value for node in ast.walk(source)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)}
  assert not strings & set(registries.names('evaluator'))


def _warmup_hyperparams(schedule, warmup_epochs=100, steps_per_epoch=500, beta=1.0):
  config = make_tiny_config()
  config.objective.update(beta=beta, kl_warmup_epochs=warmup_epochs, kl_warmup_schedule=schedule)
  return steps.LossHyperparams.from_config(config, steps_per_epoch)


def test_per_epoch_beta_is_the_epoch_over_the_warmup_counted_from_one():
  """The VampPrior code's utils/training.py: β = min(1, epoch / warm-up) for the whole epoch,
  epoch = 1, 2, ... (0.01 in the first of 100), times objective.beta."""
  hyperparams = _warmup_hyperparams('per_epoch', beta=0.5)
  at = [0, 1, 499, 500, 999, 24_750, 49_499, 49_500, 10**6 - 1]
  expected = [0.5 * min(1.0, (s // 500 + 1) / 100) for s in at]  # s // 500 + 1: their epoch
  np.testing.assert_allclose([hyperparams.beta_at(s) for s in at], expected, rtol=1e-6)
  np.testing.assert_allclose(expected[:4], [0.005, 0.005, 0.005, 0.01])
  traced = jax.jit(hyperparams.beta_at)(jnp.asarray(at, jnp.int32))  # as in the train step
  np.testing.assert_allclose(traced, expected, rtol=1e-6)


def test_the_default_per_step_beta_rises_from_zero_at_every_step():
  hyperparams = _warmup_hyperparams('per_step')
  at = [0, 1, 499, 500, 25_000, 49_999, 50_000, 10**6]
  np.testing.assert_allclose([hyperparams.beta_at(s) for s in at],
                             [min(1.0, s / 50_000) for s in at], rtol=1e-6)
  assert float(hyperparams.kl_warmup_epoch_steps) == 0.0


def test_random_flip_mirrors_about_half_the_training_images_with_the_step_flip_key():
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(400, 3, 4, 1)), jnp.float32)
  flipped = np.asarray(steps.data.random_flip(jax.random.key(1), images))
  mirrored = np.all(flipped == np.asarray(images)[:, :, ::-1], axis=(1, 2, 3))
  kept = np.all(flipped == np.asarray(images), axis=(1, 2, 3))
  assert np.all(mirrored ^ kept) and 170 < mirrored.sum() < 230  # each one or the other, ~½

  # In the step: the same update as an unflipped step on the images flipped beforehand with the
  # key fold_in(fold_in(train_key, step), FLIP_STREAM); the other keys are unchanged.
  model = models.build_model(small_model_config(), (2, 3, 1))
  optimizer = optax.adam(1e-2)
  state = steps.create_train_state(model, optimizer, (2, 3, 1), jax.random.key(0))
  hyperparams = steps.LossHyperparams(*(jnp.asarray(v, jnp.float32) for v in (1, 0, 1, 1, 0)))
  x = jnp.asarray(np.random.default_rng(1).uniform(size=(8, 2, 3, 1)) > 0.5, jnp.float32)
  key = jax.random.key(5)
  with_flips = functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                 settings=steps.StepSettings(**{**vars(SETTINGS),
                                                                'random_flip': True}))
  plain = functools.partial(steps.train_step, model=model, optimizer=optimizer,
                            settings=SETTINGS)
  flip_key = jax.random.fold_in(jax.random.fold_in(key, 0), steps.FLIP_STREAM)
  _, flipped_metrics = jax.jit(with_flips)(state, x, key, hyperparams)
  _, expected = jax.jit(plain)(state, steps.data.random_flip(flip_key, x), key, hyperparams)
  _, unflipped = jax.jit(plain)(state, x, key, hyperparams)
  assert float(flipped_metrics['loss']) == float(expected['loss'])
  assert float(flipped_metrics['loss']) != float(unflipped['loss'])
