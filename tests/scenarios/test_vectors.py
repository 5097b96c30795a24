"""Vectors through the launchers: a real table that ships with scikit-learn, written as a .csv
and as an .npz, trains with configs/vectors.py, experiments.evaluate reports a finite log p(x)
by every estimator, also in the data's own units (the standardisation's Jacobian), and
experiments.visualize writes samples and reconstructions in those units; a bad table stops the
launch before anything is written."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

_SHORT = ['--config.num_epochs=4', '--config.eval_every_epochs=4',
          '--config.model.encoder.hidden_sizes=(32,)', '--config.model.decoder.hidden_sizes=(32,)']


def _launch(*arguments):
  return subprocess.run([sys.executable, '-m', *arguments], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=600, env=dict(os.environ, PYTHONPATH=REPO_ROOT))


def _breast_cancer_csv(folder) -> tuple[str, np.ndarray]:
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  table = datasets.load_breast_cancer()
  names = [name.replace(' ', '_') for name in table.feature_names]
  path = os.path.join(folder, 'breast_cancer.csv')
  np.savetxt(path, np.column_stack([table.data, table.target]), delimiter=',', comments='',
             header=','.join([*names, 'diagnosis']), fmt='%.10g')
  return path, table.data


def _report(evaluated) -> dict:
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  with open(re.search(r'written to\s+(\S+\.json)', evaluated.stdout).group(1),
            encoding='utf-8') as f:
    return json.load(f)


@pytest.mark.slow
def test_a_csv_table_trains_and_every_estimator_reports_a_density_in_its_units(tmp_path):
  path, features = _breast_cancer_csv(tmp_path)
  workdir = tmp_path / 'run'
  trained = _launch('experiments.train', '--config=configs/vectors.py:latent2',
                    f'--config.data.name={path}', '--config.data.label_column=diagnosis',
                    *_SHORT, f'--workdir={workdir}')
  assert trained.returncode == 0, trained.stderr[-3000:]
  with open(workdir / 'standardization.json', encoding='utf-8') as f:
    saved = json.load(f)
  assert len(saved['scale']) == features.shape[1] and saved['feature_names'][0] == 'mean_radius'
  report = _report(_launch(
      'experiments.evaluate', f'--workdir={workdir}', '--num_importance_samples=50',
      '--evals=elbo,importance_sampled,ais,quadrature',
      '--options=ais.num_steps=20,ais.num_chains=4,quadrature.points_per_dim=64,'
      'quadrature.max_refinements=1'))
  # The standardisation and its Jacobian, recomputed with numpy from the file's training rows:
  # all but the test split, a tenth of the rows drawn with data.split_seed=0.
  train = features[np.random.default_rng(0).permutation(len(features))[len(features) // 10:]]
  np.testing.assert_allclose(saved['mean'], train.mean(0), rtol=1e-5)
  np.testing.assert_allclose(saved['scale'], train.std(0), rtol=1e-5)
  converted = report['data_units']
  assert converted['log_jacobian'] == pytest.approx(-np.log(train.std(0)).sum(), rel=1e-5)
  for name in ('importance_sampled', 'ais', 'quadrature'):
    value = report[name]['log_likelihood']
    assert np.isfinite(value)
    assert converted[f'{name}/log_likelihood'] == pytest.approx(value + converted['log_jacobian'])
  assert report['quadrature']['log_likelihood'] > report['elbo'] - 0.5


@pytest.mark.slow
def test_an_npz_of_vectors_trains_and_evaluates_with_its_saved_standardisation(tmp_path):
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  wine = datasets.load_wine()
  path = tmp_path / 'wine.npz'
  np.savez(path, x=wine.data, labels=wine.target)
  workdir = tmp_path / 'run'
  trained = _launch('experiments.train', '--config=configs/vectors.py', f'--config.data.name={path}',
                    *_SHORT, f'--workdir={workdir}')
  assert trained.returncode == 0, trained.stderr[-3000:]
  np.savez(path, x=wine.data * 1000.0, labels=wine.target)  # evaluation must not refit
  evaluated = _launch('experiments.evaluate', f'--workdir={workdir}',
                      '--num_importance_samples=20')
  report = _report(evaluated)
  assert np.isfinite(report['importance_sampled']['log_likelihood'])
  assert "In the data's own units, log p(x) = log p(x_std) - sum_d log sd_d" in evaluated.stdout
  with open(workdir / 'standardization.json', encoding='utf-8') as f:
    scale = np.asarray(json.load(f)['scale'])
  assert report['data_units']['log_jacobian'] == pytest.approx(-np.log(scale).sum())
  assert np.all(scale < wine.data.std(0) * 1.5)  # fitted on the file as it was at training
  np.savez(path, x=wine.data, labels=wine.target)  # the file as it was
  drawn = _launch('experiments.visualize', f'--workdir={workdir}')
  assert drawn.returncode == 0, drawn.stderr[-3000:]
  samples = np.loadtxt(workdir / 'figures' / 'samples.csv', delimiter=',', skiprows=1)
  with open(workdir / 'figures' / 'reconstructions.csv', encoding='utf-8') as f:
    header, first, _ = f.readline(), f.readline(), f.readline()
  assert samples.shape == (64, wine.data.shape[1]) and header.startswith('which,feature_0,')
  for name in ('feature_reconstructions', 'pairwise_marginals', 'latent_space'):
    assert (workdir / 'figures' / f'{name}.png').stat().st_size > 10_000, name
  # In the data's units: each feature's samples sit within a few of its sd of its mean (the
  # proline feature is in the hundreds, the hue about 1), and the first row is a data row.
  assert np.all(np.abs(samples.mean(0) - wine.data.mean(0)) < 3 * wine.data.std(0))
  assert np.any(np.all(np.isclose(wine.data, np.asarray(first.split(',')[1:], float),
                                  rtol=1e-4), axis=1))


def test_a_bad_table_stops_the_launch_in_one_line_before_anything_is_written(tmp_path):
  path = tmp_path / 'bad.csv'
  path.write_text('a,b\n1,2\n3,inf\n', encoding='utf-8')
  workdir = tmp_path / 'run'
  result = _launch('experiments.train', '--config=configs/vectors.py',
                   f'--config.data.name={path}', f'--workdir={workdir}')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: {path}: row 2, column 'b' holds inf; every value must be a finite number "
      '(1 value(s) are not).')
  assert not workdir.exists()
