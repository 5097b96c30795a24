"""experiments/evaluate.py: a checkpoint evaluated into a JSON report and a readable summary."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import app

from experiments import evaluate
from tests.conftest import REPO_ROOT
from vae_jax.engine import checkpointing


@pytest.mark.slow
def test_evaluation_report_is_written_and_does_not_depend_on_batch_size(trained_workdir):
  kwargs = dict(step=None, split='test', num_importance_samples=20, chunk_size=7, seed=0)
  report = evaluate.evaluate_workdir(trained_workdir, batch_size=50, **kwargs)
  with open(report['path'], encoding='utf-8') as f:
    saved = json.load(f)
  assert os.path.basename(report['path']) == 'step_00000030_test_all_k20.json'
  assert saved['step'] == 30 and saved['num_examples'] == 297 and saved['split'] == 'test'
  assert saved['paper']['test_log_likelihood'] == -30.0
  assert set(saved['active_units']) == {'h1', 'h2'}
  assert 'kl_per_dimension' not in saved  # two layers: no closed-form KL
  sampled = saved['importance_sampled']
  assert sampled['num_samples'] == 20 and sampled['num_repeats'] == 2
  assert sampled['monte_carlo_error'] > 0 and sampled['delta_method_error'] > 0
  assert sampled['test_set_error'] > sampled['monte_carlo_error']
  assert len(sampled['seed_means']) == 2 and len(sampled['per_example_pareto_k']) == 297
  assert sampled['unreliable_fraction'] is None  # k̂ needs k ≥ 25: nothing to count
  assert len(sampled['worst_examples']) == 10
  assert sampled['log_likelihood'] > saved['elbo']  # IWAE_20 ≥ ELBO, here by far
  assert saved['elbo'] == pytest.approx(saved['reconstruction'] - saved['kl'])
  assert set(saved['seconds']) == {'elbo', 'active_units', 'importance_sampled', 'images',
                                   'linear_probe'}
  assert os.path.isfile(report['path'].replace('.json', '_samples.png'))

  again = evaluate.evaluate_workdir(trained_workdir, batch_size=128, **kwargs)
  np.testing.assert_allclose(again['importance_sampled']['log_likelihood'],
                             sampled['log_likelihood'], rtol=1e-6)
  np.testing.assert_allclose(again['elbo'], saved['elbo'], rtol=1e-6)

  summary = evaluate.format_report(report)
  assert 'log p(x)' in summary and 'k = 20' in summary and 'h1 ' in summary
  assert 'A made-up paper' in summary
  without_number = {**report, 'paper': {'source': 'A paper', 'test_log_likelihood': None,
                                         'active_units': None}}
  assert 'no published number recorded (A paper)' in evaluate.format_report(without_number)
  assert 'None' not in evaluate.format_report(without_number)
  only_elbo = {**report, 'paper': {'source': 'Efficient-VDVAE', 'test_log_likelihood': None,
                                   'test_elbo': -79.09}}
  assert 'paper         ELBO -79.09 nats (Efficient-VDVAE)' in evaluate.format_report(only_elbo)


@pytest.mark.slow
def test_bad_requests_are_named(trained_workdir, tmp_path):
  kwargs = dict(split='test', num_importance_samples=5, chunk_size=5, batch_size=10, seed=0)
  with pytest.raises(checkpointing.CheckpointError,
                     match=r'No checkpoint at step 7 .*available steps: \[.*30\]'):
    evaluate.evaluate_workdir(trained_workdir, step=7, **kwargs)
  with pytest.raises(FileNotFoundError, match='not a vae_jax workdir'):
    evaluate.evaluate_workdir(str(tmp_path), step=None, **kwargs)
  with pytest.raises(app.UsageError, match='no validation split'):
    evaluate.evaluate_workdir(trained_workdir, step=None, **{**kwargs, 'split': 'validation'})
  with pytest.raises(app.UsageError, match='--chunk_size=0 must be at least 1'):
    evaluate.evaluate_workdir(trained_workdir, step=None, **{**kwargs, 'chunk_size': 0})


@pytest.mark.slow
def test_evaluation_reports_a_linear_probe_on_labelled_data(trained_workdir):
  report = evaluate.evaluate_workdir(trained_workdir, step=None, split='test',
                                     num_importance_samples=0, chunk_size=1, batch_size=100,
                                     seed=0, probe_train_examples=1000)
  probe = report['linear_probe']
  assert probe['num_train_examples'] == 1000
  assert probe['accuracy'] > 0.2  # chance is 0.1 for 10 digits
  assert 'linear probe' in evaluate.format_report({**report, 'path': 'x'})


@pytest.mark.slow
def test_evals_chooses_evaluators_by_name(trained_workdir):
  report = evaluate.evaluate_workdir(trained_workdir, names=['elbo'], batch_size=100)
  assert set(report['seconds']) == {'elbo'} and 'importance_sampled' not in report
  assert os.path.basename(report['path']) == 'step_00000030_test_elbo.json'
  again = evaluate.evaluate_workdir(trained_workdir, names=['elbo'], batch_size=100)
  assert os.path.basename(again['path']) == 'step_00000030_test_elbo_2.json'  # none overwritten
  assert os.path.isfile(report['path'])
  with pytest.raises(app.UsageError, match=r"--evals names \['nope'\]"):
    evaluate.evaluate_workdir(trained_workdir, names=['nope'])


@pytest.mark.slow
def test_ais_and_bdmc_run_when_named_with_options_from_the_command_line(trained_workdir):
  # The two-layer model: AIS runs over both stochastic layers.
  report = evaluate.evaluate_workdir(
      trained_workdir, names=['ais', 'bdmc', 'importance_sampled'], num_examples=20,
      batch_size=10, num_importance_samples=50,
      options=['ais.num_steps=20', 'ais.num_chains=4', 'bdmc.num_simulated=6'])
  annealed, bdmc = report['ais'], report['bdmc']
  assert annealed['num_steps'] == 20 and annealed['num_chains'] == 4
  # 4 chains and the default pilot of 4 (evals.ais.pilot_chains), 20 steps of 2 leapfrogs + 1
  assert annealed['gradient_evaluations_per_example'] == (4 + 4) * 20 * (2 + 1)
  assert len(annealed['per_example_log_likelihood']) == 20
  # AIS from the even mixture of q and p(z) at 20 steps is close to IS with 50 samples.
  assert abs(annealed['log_likelihood'] - report['importance_sampled']['log_likelihood']) < 3
  assert bdmc['num_simulated'] == 6 and bdmc['upper_bound'] > bdmc['lower_bound'] - 0.5
  summary = evaluate.format_report(report)
  assert 'AIS from ½q(z|x) + ½p(z), 20 steps × 4 chains' in summary and 'BDMC' in summary
  assert os.path.basename(report['path']) == (
      'step_00000030_test_ais+bdmc+importance_sampled_k50_n20.json')


@pytest.mark.slow
def test_costly_estimators_run_only_when_named(trained_workdir):
  report = evaluate.evaluate_workdir(trained_workdir, num_examples=10, batch_size=10,
                                     num_importance_samples=5, probe_train_examples=0)
  assert 'ais' not in report and 'bdmc' not in report
  assert 'quadrature' not in report  # three latent units over two layers: no grid


@pytest.mark.slow
def test_bad_evaluator_options_are_named_before_any_compute(trained_workdir):
  for options, message in (
      (['ais.num_steps=many'], "'many' is not a int"),
      (['ais.nope=1'], 'expected evaluator.option=value'),
      (['ais.initial=uniform'], "evals.ais.initial='uniform': choose from"),
      (['quadrature.tolerance=0'], 'evals.quadrature.tolerance=0.0 must be positive')):
    with pytest.raises(app.UsageError, match=message):
      evaluate.evaluate_workdir(trained_workdir, names=['ais'], options=options)
  # Named but not applicable (three latent units over two layers: no grid): said, not skipped.
  with pytest.raises(app.UsageError, match=r"--evals names \['quadrature'\], which do not apply"):
    evaluate.evaluate_workdir(trained_workdir, names=['quadrature', 'elbo'])


@pytest.mark.slow
def test_quadrature_is_the_oracle_for_a_two_unit_latent(tmp_path):
  from tests import conftest  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import training  # pylint: disable=import-outside-toplevel
  config = conftest.make_tiny_config()  # one layer of two latent units
  config.num_epochs = 1
  training.train_and_evaluate(config, str(tmp_path))
  report = evaluate.evaluate_workdir(
      str(tmp_path), names=['quadrature', 'importance_sampled'], num_examples=40,
      batch_size=20, num_importance_samples=2000,
      options=['quadrature.points_per_dim=64', 'quadrature.tolerance=0.001'])
  exact, sampled = report['quadrature'], report['importance_sampled']
  assert exact['converged'] and exact['max_change'] < 0.001 and exact['max_edge_share'] < 1e-6
  per_example_gap = (np.array(exact['per_example_log_likelihood'])
                     - np.array(sampled['per_example_log_likelihood']))
  # Importance sampling is a stochastic lower bound: on average at or below the exact value.
  assert np.mean(per_example_gap) > -3 * sampled['monte_carlo_error']
  assert np.abs(per_example_gap).max() < 1.0  # a trained 2-unit q covers the posterior here
  assert 'exact by quadrature' in evaluate.format_report(report)


def _discrete_workdir(tmp_path_factory) -> str:
  """One epoch of a K = 10 categorical model on the bundled digits: log p(x) is exact."""
  from tests.conftest import make_tiny_config  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import training  # pylint: disable=import-outside-toplevel
  config = make_tiny_config()
  config.model.update(latent_kind='categorical', latent_dim=1, num_categories=10)
  config.model.prior.kind = 'uniform'
  config.objective.kind = 'marginal'
  config.num_epochs = 1
  workdir = str(tmp_path_factory.mktemp('discrete'))
  training.train_and_evaluate(config, workdir)
  return workdir


@pytest.mark.slow
def test_the_launcher_plans_shows_progress_and_skips_estimates_where_log_px_is_exact(
    tmp_path_factory):
  workdir = _discrete_workdir(tmp_path_factory)
  command = [sys.executable, '-m', 'experiments.evaluate', f'--workdir={workdir}',
             '--progress_every_seconds=0', '--batch_size=50']
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  log = result.stderr
  assert 'Leaving out importance_sampled: the exact log p(x) is computed' in log
  plan = re.search(r'on 297 test examples: (\d+) evaluators, roughly \d+:\d\d:\d\d in all', log)
  assert plan, log[-3000:]
  assert re.search(r'\n\s+exact\s+2,970 passes', log)  # 297 examples × 10 values of z
  assert re.search(r'exact: \d+/297 examples, [\d.]+ examples/s, \d+:\d\d:\d\d left', log)
  report_path = re.search(r'written to\s+(\S+\.json)', result.stdout).group(1)
  with open(report_path, encoding='utf-8') as f:
    report = json.load(f)
  assert 'importance_sampled' not in report['seconds'] and 'exact' in report['seconds']
  assert int(plan.group(1)) == len(report['seconds'])

  named = subprocess.run(command + ['--evals=exact,importance_sampled',
                                    '--num_importance_samples=10'],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  assert named.returncode == 0, named.stderr[-2000:]
  assert 'Leaving out' not in named.stderr
  assert re.search(r'importance_sampled: \d+/297 examples \(pass 2\)', named.stderr)
