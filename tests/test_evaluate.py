"""experiments/evaluate.py: a checkpoint evaluated into a JSON report and a readable summary."""

import json
import os

import numpy as np
import pytest
from absl import app

from experiments import evaluate
from vae_jax import checkpointing


@pytest.mark.slow
def test_evaluation_report_is_written_and_does_not_depend_on_batch_size(trained_workdir):
  kwargs = dict(step=None, split='test', num_importance_samples=20, chunk_size=7, seed=0)
  report = evaluate.evaluate_workdir(trained_workdir, batch_size=50, **kwargs)
  with open(report['path'], encoding='utf-8') as f:
    saved = json.load(f)
  assert os.path.basename(report['path']) == 'step_00000030_test_k20.json'
  assert saved['step'] == 30 and saved['num_examples'] == 297 and saved['split'] == 'test'
  assert saved['paper']['test_log_likelihood'] == -30.0
  assert set(saved['active_units']) == {'h1', 'h2'}
  assert 'kl_per_dimension' not in saved  # two layers: no closed-form KL
  sampled = saved['importance_sampled']
  assert sampled['num_samples'] == 20 and sampled['standard_error'] > 0
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
  assert os.path.basename(report['path']) == 'step_00000030_test_k0.json'
  with pytest.raises(app.UsageError, match=r"--evals names \['nope'\]"):
    evaluate.evaluate_workdir(trained_workdir, names=['nope'])
