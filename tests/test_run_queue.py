"""scripts/run_queue.py: the queue file, when a run counts as evaluated, and a queue run end to
end through scripts/long_run.sh."""

import glob
import json
import os
import subprocess
import sys

import pytest

from scripts import run_queue
from tests.conftest import REPO_ROOT
from vae_jax.engine import checkpointing, metric_writers


def test_queue_lines_give_spec_seed_and_source():
  runs = run_queue.parse_queue('# VampPrior, then the standard prior\n'
                               'configs/vampprior.py:vamp 2 source=/runs/src_new  # faster\n\n'
                               'configs/vampprior.py:standard 1\n')
  assert runs == [run_queue.QueuedRun('configs/vampprior.py:vamp', 2, '/runs/src_new'),
                  run_queue.QueuedRun('configs/vampprior.py:standard', 1, None)]
  assert runs[0].workdir('/runs') == '/runs/vampprior_vamp/seed=2'


@pytest.mark.parametrize('line', ['configs/iwae.py:vae_k1_l1', 'configs/iwae.py seed=0',
                                  'configs/iwae.py 0 /runs/src', 'configs/iwae.py 0 source='])
def test_a_bad_queue_line_is_named(line):
  with pytest.raises(ValueError, match=f'line 2 of the queue, {line!r}'):
    run_queue.parse_queue(f'configs/iwae.py 1\n{line}\n')


def _write_report(workdir, name, **report):
  os.makedirs(os.path.join(workdir, 'evaluation'), exist_ok=True)
  with open(os.path.join(workdir, 'evaluation', name), 'w', encoding='utf-8') as f:
    json.dump(report, f)


def test_only_a_whole_test_split_report_with_log_likelihood_counts(tmp_path):
  workdir = str(tmp_path)
  log_likelihood = {'importance_sampled': {'log_likelihood': -90.0}}
  _write_report(workdir, 'step_00000500_test_elbo.json', split='test', step=500, elbo=-95.0)
  _write_report(workdir, 'step_00000500_validation_all_k50.json', split='validation', step=500,
                **log_likelihood)
  _write_report(workdir, 'step_00000500_test_all_k50_n100.json', split='test', step=500,
                **log_likelihood)
  _write_report(workdir, 'step_00000400_test_all_k50.json', split='test', step=400,
                **log_likelihood)
  assert not run_queue.is_evaluated(workdir, 500)
  _write_report(workdir, 'step_00000500_test_all_k50_seed1.json', split='test', step=500,
                **log_likelihood)
  assert run_queue.is_evaluated(workdir, 500)


def test_a_run_that_stops_early_is_evaluated_at_its_best_checkpoint(tmp_path, tiny_config):
  workdir = str(tmp_path)
  for folder, step in (('checkpoints', 700), ('checkpoints_best', 500)):
    os.makedirs(os.path.join(workdir, folder, str(step)))
  tiny_config.early_stopping.metric = 'validation/elbo'
  checkpointing.save_config(tiny_config, workdir)
  assert run_queue.evaluation_step(workdir) == 500
  tiny_config.early_stopping.metric = ''
  checkpointing.save_config(tiny_config, workdir)
  assert run_queue.evaluation_step(workdir) == 700


def test_the_status_of_a_run_not_started(tmp_path):
  assert run_queue.run_status(str(tmp_path / 'nothing')) == 'not started'


def test_the_status_of_a_run_that_stopped_early(tmp_path, tiny_config):
  workdir = str(tmp_path)
  tiny_config.early_stopping.metric = 'validation/elbo'
  checkpointing.save_config(tiny_config, workdir)
  lines = [{'step': 10, 'epoch': 1.0}]
  for step, value in ((10, -95.0), (20, -90.0), (30, -90.0), (40, -91.0)):
    lines += [{'step': step, 'validation/elbo': value}, {'step': step, 'test/elbo': value + 1}]
  lines.append({'step': 40, 'early_stopping/best_step': 20, 'early_stopping/best_value': -90.0})
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w', encoding='utf-8') as f:
    f.writelines(json.dumps(line) + '\n' for line in lines)
  os.makedirs(os.path.join(workdir, 'checkpoints_best', '20'))
  assert run_queue.run_status(workdir) == (
      'epoch 4; stopped early at epoch 4; best validation/elbo -90.00 (epoch 2); '
      'last test/elbo -90.00')


@pytest.mark.slow
def test_a_queue_trains_evaluates_and_on_a_rerun_does_neither_again(tmp_path):
  config_file = tmp_path / 'tiny.py'
  config_file.write_text('from tests.conftest import make_tiny_config\n\n\n'
                         'def get_config():\n  return make_tiny_config()\n')
  queue = tmp_path / 'queue.txt'
  queue.write_text(f'{config_file} 3 source={REPO_ROOT}\n')
  runs = tmp_path / 'runs'
  command = [sys.executable, '-m', 'scripts.run_queue', f'--queue={queue}', '--core=0',
             f'--runs={runs}', f'--venv={sys.prefix}',
             '--evaluate_flag=--evals=elbo,importance_sampled',
             '--evaluate_flag=--num_importance_samples=5']
  first = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert first.returncode == 0, first.stdout[-1500:] + first.stderr[-1500:]
  workdir = runs / 'tiny' / 'seed=3'
  reports = glob.glob(str(workdir / 'evaluation' / '*.json'))
  assert len(reports) == 1
  with open(reports[0], encoding='utf-8') as f:
    report = json.load(f)
  assert report['step'] == 30 and report['importance_sampled']['num_samples'] == 5  # 2 epochs
  second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert second.returncode == 0, second.stdout[-1500:] + second.stderr[-1500:]
  assert 'already evaluated' in second.stdout and 'experiments.evaluate' not in second.stdout
  assert glob.glob(str(workdir / 'evaluation' / '*.json')) == reports
  status = subprocess.run([*command, '--status'], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=True).stdout
  log_likelihood = report['importance_sampled']['log_likelihood']
  last_test_elbo = [m for m in metric_writers.read_metrics(str(workdir)) if 'test/elbo' in m][-1]
  assert status == (f'{config_file} seed 3: epoch 2; last test/elbo '
                    f'{last_test_elbo["test/elbo"]:.2f}; '
                    f'evaluated: test log p(x) {log_likelihood:.2f} (k = 5, epoch 2)\n')


@pytest.mark.slow
def test_a_queue_naming_a_missing_config_stops_before_anything_runs(tmp_path):
  queue = tmp_path / 'queue.txt'
  queue.write_text('configs/vampprior.py:vamp 0\nconfigs/no_such_paper.py 1\n')
  result = subprocess.run([sys.executable, '-m', 'scripts.run_queue', f'--queue={queue}',
                           f'--runs={tmp_path}', f'--venv={sys.prefix}'], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      f'The queue names configs/no_such_paper.py, but {REPO_ROOT}/configs/no_such_paper.py does '
      'not exist.')
  assert os.listdir(tmp_path) == ['queue.txt']  # nothing started
