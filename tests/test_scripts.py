"""scripts/: the results table, the reproduction driver's commands, the run summary."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from experiments import evaluate
from tests.conftest import REPO_ROOT
from vae_jax.engine import metric_writers


def _run(*args, timeout=120):
  result = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout


@pytest.mark.slow
def test_results_table_puts_our_evaluation_beside_the_papers(trained_workdir, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_workdir, workdir, ignore=shutil.ignore_patterns('evaluation'))
  report = evaluate.evaluate_workdir(workdir, step=None, split='test',
                                     num_importance_samples=10, chunk_size=10, batch_size=100,
                                     seed=0)
  table = _run('-m', 'scripts.results_table', f'--workdirs={workdir}')
  header, _, row = table.strip().splitlines()
  assert header.startswith('| run | model | epochs | train time | test log p(x) |')
  ours = report['importance_sampled']['log_likelihood']
  assert 'IWAE k=3, 2 layers' in row and f'{ours:.2f} ±' in row and '(k=10)' in row
  assert '| -30.00 | 2+1 |' in row and f'{ours + 30:+.2f}' in row


@pytest.mark.slow
def test_reproduce_scales_every_epoch_schedule_by_the_budget(tmp_path):
  commands = _run('-m', 'scripts.reproduce', '--configs=configs/vampprior.py:vamp,configs/iwae.py',
                  '--budget=0.1', f'--root={tmp_path}', '--print_commands').strip().splitlines()
  assert len(commands) == 1 + 12  # one VampPrior variant, all of Table 1
  assert commands[0] == (
      f'python -m experiments.train --config=configs/vampprior.py:vamp '
      f'--workdir={tmp_path}/vampprior_vamp --config.num_epochs=200 '
      f'--config.objective.kl_warmup_epochs=10 --config.early_stopping.patience_epochs=5 '
      f'--config.early_stopping.start_epoch=10 && python -m experiments.evaluate '
      f'--workdir={tmp_path}/vampprior_vamp --num_importance_samples=5000')
  assert f'--workdir={tmp_path}/iwae_iwae_k50_l2 --config.num_epochs=328' in commands[-1]


@pytest.mark.slow
def test_summarize_run_prints_one_row_per_evaluation(trained_workdir):
  table = _run('-m', 'scripts.summarize_run', f'--workdir={trained_workdir}').strip().splitlines()
  assert table[0].startswith('| step | epoch | test ELBO')
  assert [line.split('|')[1].strip() for line in table[2:]] == ['15', '30']


@pytest.mark.slow
def test_benchmark_prints_json_lines_for_each_measurement():
  # A smoke run: tiny numbers of steps; the timings themselves are not asserted.
  output = _run('-m', 'scripts.benchmark', '--threads=1', '--repeats=1', '--steps=2',
                '--sweep_sizes=2', '--eval_images=1', '--only=device_scan,sweep')
  lines = [json.loads(line) for line in output.strip().splitlines()]
  names = [line['benchmark'] for line in lines]
  assert names[:4] == ['matmul'] * 4 and 'train_flops' in names
  assert {'device_scan', 'sweep_2', 'memory'} <= set(names) and 'host_loop' not in names
  scan = next(line for line in lines if line['benchmark'] == 'device_scan')
  assert scan['examples_per_sec'] > 0 and 0 < scan['fraction_of_matmul_bound']


def test_compare_estimators_measures_errors_and_how_the_flags_match():
  from scripts import compare_estimators  # pylint: disable=import-outside-toplevel
  reference = np.array([-100.0, -90.0, -80.0, -70.0])
  sampled = {'importance_sampled': {
      'per_example_log_likelihood': [-100.1, -95.0, -80.0, -69.5], 'num_samples': 50,
      'per_example_pareto_k': [0.2, 1.3, 0.9, 0.1], 'reliable_pareto_k': 0.7},
      'seconds': {'importance_sampled': 3.0}}
  row, = compare_estimators.comparison_rows(reference, [sampled])
  np.testing.assert_allclose(row['mean_error'], (0.1 + 5.0 + 0.0 - 0.5) / 4)
  assert row['worst_error'] == pytest.approx(5.0) and row['worst_index'] == 1
  assert row['overestimate'] == pytest.approx(0.5) and row['off_by_1_nat'] == 0.25
  # Two flagged (k̂ 1.3 and 0.9), one of them off by more than a nat; the one off is flagged.
  assert (row['flagged'], row['precision'], row['recall']) == (0.5, 0.5, 1.0)
  assert '| IS k=50 |' in compare_estimators.markdown(-80.0, [row])
  # A k̂ that could not be fitted (NaN) is flagged, never passed as reliable.
  sampled['importance_sampled']['per_example_pareto_k'] = [0.2, float('nan'), 0.3, 0.1]
  row, = compare_estimators.comparison_rows(reference, [sampled])
  assert (row['flagged'], row['precision'], row['recall']) == (0.25, 1.0, 1.0)


@pytest.mark.slow
def test_learning_curves_reports_each_runs_best_evaluation(trained_workdir, tmp_path):
  output = str(tmp_path / 'curves.png')
  lines = _run('-m', 'scripts.learning_curves', f'--workdirs={trained_workdir}',
               '--metric=test/elbo', f'--output={output}', '--log_epochs',
               '--mark_epochs=1,2').strip().splitlines()
  values = {m['step']: m['test/elbo'] for m in metric_writers.read_metrics(trained_workdir)
            if 'test/elbo' in m}
  best_step = max(values, key=values.get)
  assert f'best test/elbo {values[best_step]:.3f} at epoch {best_step / 15:g}' in lines[0]
  assert lines[-1] == f'wrote {output}' and os.path.getsize(output) > 1000
  # Runs whose last path components agree are named by as many components as tell them apart.
  for seed_folder in ('vamp/seed=0', 'standard/seed=0'):
    shutil.copytree(trained_workdir, tmp_path / seed_folder)
  lines = _run('-m', 'scripts.learning_curves', '--metric=test/elbo',
               f'--workdirs={tmp_path}/vamp/seed=0,{tmp_path}/standard/seed=0').splitlines()
  assert [line.split(':')[0] for line in lines] == ['vamp/seed=0', 'standard/seed=0']


@pytest.mark.slow
def test_accelerator_check_runs_end_to_end_on_a_cpu_and_says_what_it_skipped():
  output = _run('-m', 'scripts.accelerator_check', '--scale=smoke', timeout=300)
  checks = {json.loads(line)['check']: json.loads(line) for line in output.splitlines()
            if line.startswith('{')}
  assert {'mnist_epoch', 'iwae_eval', 'sweep_1', 'sweep_4', 'sweep_16', 'top_down_step',
          'cifar10_step', 'cifar10_step_remat', 'mixed_precision', 'memory',
          'mnist_efficient_vdvae_epoch', 'mnist_nvae_epoch', 'cifar10_small_throughput'
          } <= set(checks)
  throughput = checks['cifar10_small_throughput']
  assert throughput['flops_per_step'] > 0 and throughput['steps_per_second'] > 0
  assert throughput['fraction_of_peak'].startswith('not computed: pass --peak_tflops')
  assert checks['mnist_nvae_epoch']['seconds'] > checks['mnist_nvae_epoch']['step_seconds'] > 0
  assert checks['mnist_efficient_vdvae_epoch']['skipped'].startswith('smoke run')
  assert checks['cifar10_step']['seconds'] > 0 and checks['cifar10_step_remat']['program_mb'] > 0
  assert checks['mixed_precision']['skipped'].startswith('bfloat16 is emulated on a CPU')
  assert checks['iwae_eval']['extrapolated'] and checks['sweep_16']['models'] == 16
  assert checks['sweep_map_16']['models'] == 16 and checks['sweep_map_16']['speedup'] > 0
  assert '| mnist_epoch |' in output and 'seconds below 0.25' in output


@pytest.mark.slow
def test_accelerator_check_runs_only_the_parts_named():
  output = _run('-m', 'scripts.accelerator_check', '--scale=smoke', '--only=memory',
                timeout=300)
  assert [json.loads(line)['check'] for line in output.splitlines()
          if line.startswith('{')] == ['memory']


# Reports and metrics written before the renaming of 2026-11-29 (README changelog).
_OLD_REPORT = {'elbo': {'elbo': -90.0, 'log_likelihood': -80.0, 'kl': 10.0},
               'exact': {'log_marginal': -85.0, 'elbo': -90.0},
               'importance_sampled': {'log_likelihood': -86.0}}
_OLD_METRICS = {'step': 30, 'test/elbo': -90.0, 'test/log_likelihood': -80.0, 'test/kl': 10.0,
                'test/exact/log_marginal': -85.0, 'test/importance_sampled/log_likelihood': -86.0}


def test_old_metric_names_are_read_under_todays_names_in_reports_and_metric_lines():
  assert metric_writers.with_current_names(_OLD_REPORT) == {
      'elbo': -90.0, 'reconstruction': -80.0, 'kl': 10.0,
      'exact': {'log_likelihood': -85.0, 'elbo': -90.0},
      'importance_sampled': {'log_likelihood': -86.0}}  # an estimate of log p(x): unchanged
  assert metric_writers.with_current_names(metric_writers.split_metrics(_OLD_METRICS, 'test')) == {
      'elbo': -90.0, 'reconstruction': -80.0, 'kl': 10.0, 'exact/log_likelihood': -85.0,
      'importance_sampled/log_likelihood': -86.0}
  current = metric_writers.with_current_names(_OLD_REPORT)
  assert metric_writers.with_current_names(current) == current


def test_a_seed_group_says_how_many_seeds_its_log_likelihood_is_from(tiny_config):
  from scripts import results_table  # pylint: disable=import-outside-toplevel
  group = []
  for seed, estimate in ((0, -84.5), (1, -84.4), (2, None)):  # seed 2 still training
    config = tiny_config.copy_and_resolve_references()
    config.seed = seed
    group.append({'run': f'seed={seed}', 'config': config, 'epochs': 1000.0 + seed,
                  'seconds': 60.0, 'log_likelihood': estimate, 'log_likelihood_cell': '',
                  'elbo': -88.0, 'active': '20'})
  row = results_table.table_row(group)
  k = tiny_config.evals.importance_sampled.num_samples
  assert row['test log p(x)'] == f'-84.45 ± 0.07 (k={k}; 2 of 3 seeds)'
  assert results_table.table_row(group[:2])['test log p(x)'] == f'-84.45 ± 0.07 (k={k})'


def test_both_scripts_read_old_names_through_the_one_helper(monkeypatch):
  from scripts import results_table, summarize_run  # pylint: disable=import-outside-toplevel
  row = {**_OLD_METRICS, 'epoch': 3.0, 'examples_per_sec': None}
  assert '| 30 | 3 | -90.00 | -80.00 | 10.00 |' in summarize_run.markdown_table([row])
  monkeypatch.setattr(results_table, 'latest_evaluation', lambda workdir: {
      **_OLD_REPORT, 'epoch': 3.0, 'active_units': {'z': 2}})
  monkeypatch.setattr(results_table.checkpointing, 'load_config', lambda *args, **kwargs: None)
  summary = results_table.run_summary('/nowhere/run')
  assert summary['log_likelihood'] == -85.0 and summary['elbo'] == -90.0
  for script in (results_table, summarize_run):  # no mapping of its own
    with open(script.__file__, encoding='utf-8') as f:
      source = f.read()
    assert 'log_marginal' not in source and "/log_likelihood'" not in source


@pytest.mark.slow
def test_the_model_summary_counts_every_parameter_of_the_quickstart_mlp_by_hand():
  result = subprocess.run([sys.executable, '-m', 'scripts.model_summary',
                           '--config=configs/quickstart.py', '--data_shape=8,8,1'],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  dense = lambda inputs, outputs: inputs * outputs + outputs  # kernel and bias
  torso = dense(64, 128) + dense(128, 128)  # 8x8 pixels, hidden (128, 128)
  heads = 2 * dense(128, 8)  # mean and raw scale of 8 latent units
  decoder = dense(8, 128) + dense(128, 128) + dense(128, 64)  # one Bernoulli logit per pixel
  lines = result.stdout.strip().splitlines()
  assert lines[-1] == f'total parameters: {torso + heads + decoder}'
  assert any(line.split()[0] == 'encoder/torso' and line.split()[-1] == f'{torso:,}'
             for line in lines)


@pytest.mark.slow
def test_the_model_summary_needs_no_dataset_on_disk_for_a_tfds_layout(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'scripts.model_summary',
                           '--config=configs/top_down.py:cifar10', f'--data_dir={tmp_path}'],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == 'total parameters: 39145700'  # VDVAE's
  assert not os.listdir(tmp_path)  # nothing was prepared or downloaded


def test_timed_calls_wait_for_the_warm_up_before_the_clock_starts(monkeypatch):
  # scripts.benchmark_top_down once dispatched its warm-up step without waiting for it, so its
  # first timed step also timed the rest of the warm-up: with --steps=1, two steps.
  from scripts import timing
  events = []
  monkeypatch.setattr(timing.jax, 'block_until_ready',
                      lambda outputs: events.append(('wait', outputs)) or outputs)
  monkeypatch.setattr(timing.time, 'perf_counter', lambda: events.append('clock') or len(events))

  def call(index):
    events.append(('call', index))
    return f'outputs of call {index}'

  warm_up, seconds = timing.seconds_of_calls(call, 2)
  assert events == ['clock', ('call', None), ('wait', 'outputs of call None'), 'clock',
                    'clock', ('call', 0), ('wait', 'outputs of call 0'), 'clock',
                    'clock', ('call', 1), ('wait', 'outputs of call 1'), 'clock']
  assert (warm_up, seconds) == (3, [3, 3])  # each timed span: the call and its wait



@pytest.mark.slow
def test_step_time_times_the_configs_own_step_at_its_batch_size_and_profiles_it():
  lines = [json.loads(line) for line in _run(
      '-m', 'scripts.step_time', '--config=configs/quickstart.py', '--config.batch_size=10',
      '--steps=2', '--profile=3').splitlines() if line.startswith('{')]
  result, kernels = lines[0], lines[1:]
  # The three most expensive kernels, in order, each a share of the traced steps' time, named
  # by the JAX operation it computes.
  assert [kernel['benchmark'] for kernel in kernels] == ['step_time_kernel'] * 3
  times = [kernel['ms_per_step'] for kernel in kernels]
  assert times == sorted(times, reverse=True) and times[-1] > 0
  assert 0 < sum(kernel['share'] for kernel in kernels) <= 1
  assert any('train_step' in kernel['op'] for kernel in kernels)
  assert (result['config'], result['batch_size'], result['data_shape'], result['steps']) == (
      'configs/quickstart.py', 10, [8, 8, 1], 2)
  # The quickstart MLP's matrix products (8x8 pixels, hidden 128, 8 latents: mean and scale
  # heads), forward and to the weights, bound XLA's count of the step's FLOPs from below.
  forward = 64 * 128 + 128 * 128 + 128 * 16 + 8 * 128 + 128 * 128 + 128 * 64
  assert result['xla_flops_per_step'] >= 2 * 2 * forward * 10
  assert 0 < result['seconds_per_step'] < result['compile_seconds'] + result['init_seconds']


@pytest.mark.slow
def test_step_time_asks_for_the_shape_of_a_folder_it_does_not_read(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'scripts.step_time', '--config=configs/images.py',
                           f'--config.data.name={tmp_path}/missing/'], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False, timeout=120)
  assert result.returncode != 0
  assert '--data_shape=H,W,C' in result.stderr and 'Traceback' not in result.stderr
