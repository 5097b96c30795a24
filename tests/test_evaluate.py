"""experiments/evaluate.py: a checkpoint evaluated into a JSON report and a readable summary."""

import json
import os

import numpy as np
import pytest

from experiments import evaluate


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
  assert sampled['log_likelihood'] > saved['elbo']['elbo']  # IWAE_20 ≥ ELBO, here by far

  again = evaluate.evaluate_workdir(trained_workdir, batch_size=128, **kwargs)
  np.testing.assert_allclose(again['importance_sampled']['log_likelihood'],
                             sampled['log_likelihood'], rtol=1e-6)
  np.testing.assert_allclose(again['elbo']['elbo'], saved['elbo']['elbo'], rtol=1e-6)

  summary = evaluate.format_report(report)
  assert 'log p(x)' in summary and 'k = 20' in summary and 'h1 ' in summary
  assert 'A made-up paper' in summary


def test_bad_requests_are_named(trained_workdir, tmp_path):
  kwargs = dict(split='test', num_importance_samples=5, chunk_size=5, batch_size=10, seed=0)
  with pytest.raises(ValueError, match=r'No checkpoint at step 7 .*available: \[.*30\]'):
    evaluate.evaluate_workdir(trained_workdir, step=7, **kwargs)
  with pytest.raises(FileNotFoundError, match='not a vae_jax workdir'):
    evaluate.evaluate_workdir(str(tmp_path), step=None, **kwargs)
  with pytest.raises(ValueError, match='no validation split'):
    evaluate.evaluate_workdir(trained_workdir, step=None, **{**kwargs, 'split': 'validation'})
  with pytest.raises(ValueError, match='--chunk_size=0 must be at least 1'):
    evaluate.evaluate_workdir(trained_workdir, step=None, **{**kwargs, 'chunk_size': 0})
