"""Early stopping: the criterion (against the VampPrior code's counter), the best checkpoint, an
exact resume, `experiments.evaluate` on the best or the latest, and vectorised groups whose runs
stop each on its own criterion."""

import json
import os

import jax
import numpy as np
import pytest

from tests.conftest import make_tiny_config
from vae_jax.engine import checkpointing, early_stopping, metric_writers, steps, training
from vae_jax.evaluators import elbo


def _authors_stopping_epoch(losses, patience, warmup):
  """Tomczak & Welling's loop (utils/perform_experiment.py): epochs from 1, a loss to minimise;
  returns (stopping epoch or None, best epoch)."""
  best_loss, best_epoch, e = np.inf, None, 0
  for epoch, loss in enumerate(losses, start=1):
    if loss < best_loss:
      e, best_loss, best_epoch = 0, loss, epoch
    else:
      e += 1
      if epoch < warmup:
        e = 0
      if e > patience:
        return epoch, best_epoch
  return None, best_epoch


@pytest.mark.parametrize('seed', range(20))
def test_the_criterion_stops_where_the_authors_counter_does(seed):
  rng = np.random.default_rng(seed)
  num_epochs, patience, warmup, steps_per_epoch = 120, int(rng.integers(1, 15)), 30, 7
  # A loss that falls, then wanders: ties and plateaus included.
  losses = np.round(100 * np.exp(-np.arange(num_epochs) / 20) + rng.normal(0, 1.5, num_epochs))
  criterion = early_stopping.Criterion('validation/loss', 'min', patience * steps_per_epoch,
                                       (warmup - 1) * steps_per_epoch, 0.0)
  record = early_stopping.Record()
  for epoch, loss in enumerate(losses, start=1):
    record = early_stopping.update(record, criterion, epoch * steps_per_epoch, float(loss))
  stop_epoch, best_epoch = _authors_stopping_epoch(losses, patience, warmup)
  assert record.stopped_step == (None if stop_epoch is None else stop_epoch * steps_per_epoch)
  assert record.best_step == best_epoch * steps_per_epoch
  # Replaying the logged history gives the same record, whatever else the lines hold.
  history = [{'step': (e + 1) * steps_per_epoch, 'validation/loss': float(loss), 'other': 1.0}
             for e, loss in enumerate(losses)]
  assert early_stopping.replay(criterion, history, up_to_step=10**9) == record


def test_min_delta_and_nan():
  criterion = early_stopping.Criterion('validation/elbo', 'max', 2, 0, 0.5)
  record = early_stopping.Record()
  for step, value in [(1, float('nan')), (2, -10.0), (3, -9.6), (4, float("nan")), (5, -9.55)]:
    record = early_stopping.update(record, criterion, step, value)
  assert (record.best_value, record.best_step) == (-10.0, 2)
  assert record.stopped_step == 5  # 3 steps since step 2 > patience 2; -9.55 is not 0.5 better


def _early_stopping_config(learning_rate):
  """A tiny run that stops within a few epochs: its validation KL falls, then rises (an
  artificial criterion, chosen because it turns within a few epochs)."""
  config = make_tiny_config()
  config.num_epochs = 40
  config.data.validation_size = 300  # 1,200 training images: 12 steps per epoch
  config.optimizer.learning_rate = learning_rate
  config.checkpoint_every_steps = 10_000  # checkpoints at every evaluation only
  config.evals.images.during_training = False
  config.evals.active_units.during_training = False
  config.early_stopping.update(metric='validation/kl', mode='min', patience_epochs=2)
  return config


STEPS_PER_EPOCH = 12
LEARNING_RATES = (3e-2, 1e-2)


def _evaluations(workdir, name='validation/kl'):
  return {m['step']: m[name] for m in metric_writers.read_metrics(workdir) if name in m}


def _trees_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope='module')
def runs_alone(tmp_path_factory):
  """(workdir, final state) of each learning rate's run, trained alone, uninterrupted."""
  root = tmp_path_factory.mktemp('alone')
  return [(str(root / str(i)), training.train_and_evaluate(_early_stopping_config(lr),
                                                           str(root / str(i))))
          for i, lr in enumerate(LEARNING_RATES)]


@pytest.mark.slow
def test_a_run_stops_keeps_its_best_checkpoint_and_resumes_exactly(runs_alone, tmp_path):
  straight_dir, straight = runs_alone[0]
  config = _early_stopping_config(LEARNING_RATES[0])
  evaluations = _evaluations(straight_dir)
  criterion = early_stopping.Criterion.from_config(config, STEPS_PER_EPOCH)
  expected = early_stopping.replay(criterion, [{'step': s, 'validation/kl': v}
                                               for s, v in sorted(evaluations.items())], 10**9)
  stop, best = int(straight.step), expected.best_step
  assert expected.stopped_step == stop < config.num_epochs * STEPS_PER_EPOCH  # it did stop
  assert max(evaluations) == stop  # and evaluated nothing after
  assert best < stop and evaluations[best] == min(evaluations.values())
  assert os.listdir(os.path.join(straight_dir, 'checkpoints_best')) == [str(best)]

  # The best checkpoint holds the state that scored the best validation KL.
  from experiments import launch  # pylint: disable=import-outside-toplevel
  best_run = launch.load_trained(straight_dir, checkpoint='best')
  assert int(best_run.state.step) == best
  elbo_fn = elbo.make_elbo_fn(best_run.model, num_samples=1, analytic_kl=True)
  rescored = elbo.evaluate_elbo(elbo_fn, best_run.eval_params,
                                best_run.dataset.validation.images,
                                batch_size=config.eval_batch_size,
                                rng=steps.RunKeys.from_seed(config.seed).eval)['kl']
  np.testing.assert_allclose(rescored, evaluations[best], rtol=1e-6)

  # Interrupted after the best evaluation and before the stop, then resumed: the same run.
  config.num_epochs = best // STEPS_PER_EPOCH + 1
  resumed_dir = str(tmp_path / 'resumed')
  training.train_and_evaluate(config, resumed_dir)
  config.num_epochs = 40
  resumed = training.train_and_evaluate(config, resumed_dir, allow_config_change=True)
  assert int(resumed.step) == stop and _trees_equal(resumed.params, straight.params)
  assert _evaluations(resumed_dir) == evaluations
  assert os.listdir(os.path.join(resumed_dir, 'checkpoints_best')) == [str(best)]

  # A stopped run stays stopped: relaunching trains, logs and writes nothing.
  lines = metric_writers.read_metrics(resumed_dir)
  again = training.train_and_evaluate(config, resumed_dir)
  assert int(again.step) == stop and metric_writers.read_metrics(resumed_dir) == lines


@pytest.mark.slow
def test_experiments_evaluate_reads_the_best_or_the_latest(runs_alone, trained_workdir):
  from experiments import evaluate  # pylint: disable=import-outside-toplevel
  workdir, final = runs_alone[0]
  best = int(os.listdir(os.path.join(workdir, 'checkpoints_best'))[0])
  by_default = evaluate.evaluate_workdir(workdir, names=['elbo'], split='validation')
  latest = evaluate.evaluate_workdir(workdir, names=['elbo'], split='validation',
                                     checkpoint='latest')
  assert (by_default['step'], by_default['checkpoint']) == (best, 'best')
  assert (latest['step'], latest['checkpoint']) == (int(final.step), 'latest')
  assert by_default['kl'] < latest['kl']
  with open(by_default['path'], encoding='utf-8') as f:
    assert json.load(f)['checkpoint'] == 'best'
  # A run without early stopping has no best checkpoint to offer.
  with pytest.raises(checkpointing.CheckpointError, match='--checkpoint=latest'):
    evaluate.evaluate_workdir(trained_workdir, names=['elbo'], checkpoint='best')


@pytest.mark.slow
def test_a_vectorised_group_stops_each_run_on_its_own(runs_alone, tmp_path):
  """Two runs that stop at different steps, trained together and interrupted after the first
  stopped, end as each trained alone (up to the float rounding of vmapped matrix products)."""
  configs = [_early_stopping_config(lr) for lr in LEARNING_RATES]
  stops = [int(state.step) for _, state in runs_alone]
  assert stops[0] != stops[1]
  workdirs = [str(tmp_path / f'group{i}') for i in range(2)]
  for config in configs:  # interrupted after the first run stopped, before the second
    config.num_epochs = (min(stops) + max(stops)) // 2 // STEPS_PER_EPOCH
  assert min(stops) <= configs[0].num_epochs * STEPS_PER_EPOCH < max(stops)
  training.train_and_evaluate_group(configs, workdirs)
  for config in configs:
    config.num_epochs = 40
  grouped = training.train_and_evaluate_group(configs, workdirs, allow_config_change=True)
  for i, (alone_dir, alone) in enumerate(runs_alone):
    assert int(grouped[i].step) == stops[i]
    differences = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), grouped[i].params,
                               alone.params)
    assert max(jax.tree.leaves(differences)) < 1e-5
    group_evaluations, alone_evaluations = _evaluations(workdirs[i]), _evaluations(alone_dir)
    assert sorted(group_evaluations) == sorted(alone_evaluations)
    np.testing.assert_allclose([group_evaluations[s] for s in sorted(group_evaluations)],
                               [alone_evaluations[s] for s in sorted(alone_evaluations)],
                               rtol=1e-4)
    assert (os.listdir(os.path.join(workdirs[i], 'checkpoints_best')) ==
            os.listdir(os.path.join(alone_dir, 'checkpoints_best')))
