r"""Runs the launchers on a battery of bad inputs and prints, for each, the exit code and the
first line of what the user is told.

  python -m scripts.bad_inputs [--root=/tmp/bad_inputs] [--only=typo_in_a_config_key,...]

Every case is a real command (`python -m experiments.train|evaluate ...`) run from the
repository on the bundled digits with a tiny model, in its own workdir under --root; some
first prepare their workdir (train it, corrupt it, hold it with a running job). A case passes
when its exit code is the expected one and the first line of its message matches what is
expected (for commands that must succeed, a warning line they must print). Prints one markdown
table; exits 1 if any case fails.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--config=configs/quickstart.py', '--config.model.latent_dim=2',
        '--config.model.encoder.hidden_sizes=(16,)', '--config.model.decoder.hidden_sizes=(16,)',
        '--config.evals.images.num_images=0', '--config.num_epochs=1']


# Components written from docs/extending.md that each break their kind's contract, by one
# method: {module name: (source, overrides that use it, what the one-line refusal says)}.
_FLAT_PRIOR = '''
import dataclasses
import flax.linen as nn
import jax.numpy as jnp
from vae_jax import registries


@dataclasses.dataclass
class Flat:
  dim: int
{method}

class FlatPrior(nn.Module):
  latent_dim: int

  def __call__(self, encoder=None):
    return Flat(self.latent_dim)


@registries.register('prior', 'flat')
def build(config, latent_dim, data_shape):
  return FlatPrior(latent_dim)
'''
BROKEN_COMPONENTS = {
    'prior_without_sample': (
        _FLAT_PRIOR.format(method='  def log_prob(self, z):\n'
                                  '    return jnp.zeros(z.shape[:-1])\n'),
        ['--config.model.prior.kind=flat'],
        r"prior 'flat' \(module prior_without_sample\) returns a Flat without "
        r"sample\(rng, sample_shape\): a prior's distribution provides log_prob, sample"),
    'prior_without_log_prob': (
        _FLAT_PRIOR.format(method='  def sample(self, rng, sample_shape=()):\n'
                                  '    return jnp.zeros((*sample_shape, self.dim))\n'),
        ['--config.model.prior.kind=flat'],
        r"prior 'flat' \(module prior_without_log_prob\) returns a Flat without log_prob\(z\)"),
    'evaluator_without_call': ('''
import dataclasses
from vae_jax.evaluators import registry


@dataclasses.dataclass
class Count:
  def evaluate(self, params, split, rng):
    return {'count': len(split.images)}


@registry.register('count', during_training=True)
def create(model, config, dataset):
  return Count()
''', [], r"evaluator 'count' \(module evaluator_without_call\) builds a Count without "
        r'__call__\(params, split, rng\) -> dict'),
    'transform_not_optax': ('''
from vae_jax import registries


@registries.register('gradient_transform', 'halve')
def build(config):
  return lambda updates: updates / 2
''', ["--config.optimizer.transforms=('halve',)"],
        r"gradient_transform 'halve' \(module transform_not_optax\) builds a function without "
        r'init\(params\), update\(updates, state, params\)'),
    'schedule_not_callable': ('''
from vae_jax import registries


@registries.register('schedule', 'halfway')
def build(num_train_steps):
  return num_train_steps // 2  # a step, not a function of the step
''', ['--config.optimizer.schedule=halfway'],
        r"schedule 'halfway' \(module schedule_not_callable\) builds an int without "
        r'__call__\(step\) -> factor'),
    'likelihood_without_sample': ('''
import dataclasses
import flax.linen as nn
import jax.numpy as jnp
from vae_jax import registries


@dataclasses.dataclass
class Laplace:
  location: object

  def log_prob(self, x):
    return -jnp.abs(x - self.location).sum(axis=(-3, -2, -1))


class LaplaceLikelihood(nn.Module):
  def raw_channels(self, channels):
    return channels

  def __call__(self, raw):
    return Laplace(raw)


@registries.register('likelihood', 'laplace')
def build(config, data_shape):
  return LaplaceLikelihood()
''', ['--config.model.likelihood.kind=laplace', '--config.data.binarization=none'],
        r"likelihood 'laplace' \(module likelihood_without_sample\) returns a Laplace without "
        r'sample\(rng, sample_shape\)'),
    'family_without_interface': ('''
import flax.linen as nn
from vae_jax import models


@models.register('dense')
def build(model_config, data_shape):
  return nn.Dense(model_config.latent_dim)  # not a latent-variable model
''', ['--config.model.family=dense'],
        r"family 'dense' \(module family_without_interface\) builds a Dense without "
        r'sample_log_weight_terms\(x, key\)'),
    'categorical_prior_without_sample': ('''
import dataclasses
import flax.linen as nn
import jax.numpy as jnp
from vae_jax import registries


@dataclasses.dataclass
class Even:
  num_categories: int

  def log_prob(self, z):
    return -jnp.log(self.num_categories) * z.sum(axis=(-2, -1))


class UniformPrior(nn.Module):
  num_categories: int

  def __call__(self, encoder=None):
    return Even(self.num_categories)


@registries.register('categorical_prior', 'flat_categorical')
def build(config, num_variables, num_categories):
  return UniformPrior(num_categories)
''', ['--config.model.latent_kind=categorical', '--config.model.num_categories=2',
      '--config.model.prior.kind=flat_categorical'],
        r"categorical_prior 'flat_categorical' \(module categorical_prior_without_sample\) "
        r'returns an Even without sample\(rng, sample_shape\)'),
    'optimizer_not_optax': ('''
from vae_jax import registries


@registries.register('optimizer', 'sign_descent')
def build(schedule, *, b1, b2, eps, weight_decay):
  return lambda updates: -updates  # a function of the gradients, not an optax transform
''', ['--config.optimizer.name=sign_descent'],
        r"optimizer 'sign_descent' \(module optimizer_not_optax\) builds a function without "
        r'init\(params\), update\(updates, state, params\)'),
    'data_source_without_load': ('''
from vae_jax import data


@data.register_source('my_tables')
class MyTables(data.Source):
  def traits(self):
    return data.Traits(kind=data.VECTORS, shape=(4,), bits=None)

  def read(self, *, stream_train):  # the method is named load
    raise NotImplementedError
''', ['--config.data.name=my_tables'],
        r"data_source 'my_tables' \(module data_source_without_load\) builds a MyTables "
        r'without load'),
}


@dataclasses.dataclass
class Case:
  name: str
  what: str  # the bad input, in words
  command: list[str]  # after `python -m`; {workdir} is replaced
  exit_code: int
  expected: str  # a regular expression the first message line must match
  prepare: str = ''  # how the workdir is readied first: see `prepare`
  cwd: str = REPO_ROOT
  table: str = ''  # written to {workdir}.csv first, when given
  module: str = ''  # a BROKEN_COMPONENTS module written to {workdir}_lab/ (on PYTHONPATH) first


_ROWS = ''.join(f'{i},{i % 7}\n' for i in range(60))  # 60 good rows of two columns


def train(*flags: str) -> list[str]:
  return ['experiments.train', *TINY, '--workdir={workdir}', *flags]


def cases() -> list[Case]:
  return [
      Case('bad_config_value', 'a value out of range', train('--config.batch_size=0'), 1,
           r'^error: Invalid config: batch_size=0 must be at least 1'),
      Case('typo_in_a_config_key', 'a misspelled config key',
           train('--config.optimzer.learning_rate=0.1'), 2,
           r"^error: --config.optimzer.learning_rate: the config has no key 'optimzer'; did you "
           r'mean optimizer\?$'),
      Case('typo_in_a_nested_key', 'a misspelled key of an evaluator',
           train('--config.evals.ais.num_step=5'), 2,
           r"^error: --config.evals.ais.num_step: evals.ais has no key 'num_step'; did you mean "
           r'num_steps\?$'),
      Case('option_of_an_unimported_component', "an option of a prior whose module is not in "
           'config.imports', train('--config.model.prior.student_t.dof=3'), 2,
           r"^error: --config.model.prior.student_t.dof: model.prior has no key 'student_t'; its "
           r'keys are kind, .*config.imports names that module.$'),
      Case('unknown_kind', 'a misspelled prior', train('--config.model.prior.kind=laplce'), 1,
           r"^error: Invalid config: model.prior.kind='laplce' is not a registered prior: the "
           r'priors are standard_normal, .* \(closest: .*config.imports names that module.$'),
      *(Case(name, f"a user's component that breaks its kind's contract ({name})", train(
          f"--config.imports=('{name}',)", *overrides), 1, f'^error: {message}', module=name)
        for name, (_, overrides, message) in BROKEN_COMPONENTS.items()),
      Case('bad_value_type', 'a value of the wrong type', train('--config.batch_size=ten'), 2,
           r'^error: .*batch_size'),
      Case('unknown_dataset', 'a misspelled dataset name', train('--config.data.name=mnsit'), 1,
           r"^error: data.name='mnsit' is neither .* Did you mean 'mnist'"),
      Case('missing_data', 'a TFDS dataset that is not prepared in the data dir',
           train('--config.data.name=mnist', '--data_dir={workdir}/no_data'), 1,
           r"^error: TFDS dataset 'mnist' is not prepared in"),
      Case('missing_data_file', 'Frey Face without its file',
           ['experiments.train', '--config=configs/frey_face.py', '--workdir={workdir}'], 1,
           r'^error: Frey Face is not bundled'),
      Case('table_non_numeric', 'a table with a column of words',
           train('--config.data.name={workdir}.csv'), 1,
           r"^error: .*\.csv: column 'b' is not numeric \(row 2 holds 'red'\)",
           table='a,b\n1,2\n3,red\n' + _ROWS),
      Case('table_not_finite', 'a table with a missing value',
           train('--config.data.name={workdir}.csv'), 1,
           r"^error: .*\.csv: row 3, column 'a' holds nan",
           table='a,b\n1,2\n3,4\nnan,6\n' + _ROWS),
      Case('table_too_few_rows', 'a table with fewer rows than the test split',
           train('--config.data.name={workdir}.csv'), 1,
           r'^error: data.test_size=297 must be in \(0, 60\)', table='a,b\n' + _ROWS),
      Case('table_smaller_than_a_batch', 'a table with fewer training rows than a batch',
           train('--config.data.name={workdir}.csv', '--config.data.test_size=10',
                 '--config.data.binarization=none', '--config.model.likelihood.kind=gaussian',
                 '--config.batch_size=64'), 1,
           r'^error: Invalid config for this dataset: batch_size=64 exceeds the 50 training',
           table='a,b\n' + _ROWS),
      Case('vectors_to_an_image_family', 'a table given to the top-down (image-only) family',
           train('--config.data.name={workdir}.csv', '--config.data.test_size=10',
                 '--config.data.binarization=none', '--config.model.likelihood.kind=gaussian',
                 '--config.model.family=top_down'), 1,
           r'^error: Invalid config for this dataset: model.family=top_down reads images.*'
           r'use a family for vectors', table='a,b\n' + _ROWS),
      Case('batch_larger_than_data', 'a batch larger than the training split',
           train('--config.batch_size=5000'), 1,
           r'^error: Invalid config for this dataset: batch_size=5000 exceeds'),
      Case('corrected_after_failure', 'the corrected command after a failed launch in the '
           'same workdir', train(), 0, r'^$', prepare='failed_launch'),
      Case('stray_argument', 'a flag missing its --', train('num_epochs=3'), 2,
           r'^error: unexpected arguments'),
      Case('changed_config_on_resume', 'a resume with another learning rate, not allowed',
           train('--config.optimizer.learning_rate=0.01'), 1,
           r'^error: .* holds a run with a different config: optimizer.learning_rate',
           prepare='trained'),
      Case('changed_model_on_resume', 'a resume with another model, even when allowed',
           train('--config.model.latent_dim=3', '--allow_config_change'), 1,
           r'^error: .* holds a run with a different config: model.latent_dim',
           prepare='trained'),
      Case('all_checkpoints_corrupt', 'every checkpoint unreadable (first launch)', train(), 1,
           r'^error: No checkpoint in .* can be read', prepare='all_checkpoints_corrupt'),
      Case('all_checkpoints_corrupt_again', 'the same command once more', train(), 1,
           r'^error: No checkpoint in .* can be read', prepare='all_checkpoints_corrupt_twice'),
      Case('latest_checkpoint_metadata_missing', 'evaluate a workdir whose latest checkpoint '
           'lost its metadata', ['experiments.evaluate', '--workdir={workdir}',
                                  '--num_importance_samples=10', '--probe_train_examples=0'], 0,
           r'Using the checkpoint at step \d+: the later step \d+ .* cannot be read',
           prepare='latest_metadata_missing'),
      Case('evaluate_unknown_step', 'evaluate a step that was never saved',
           ['experiments.evaluate', '--workdir={workdir}', '--step=7'], 1,
           r'^error: No checkpoint at step 7 in .*available steps', prepare='trained'),
      Case('evaluate_not_a_workdir', 'evaluate a folder that holds no run',
           ['experiments.evaluate', '--workdir={workdir}'], 1, r'^error: .* not a vae_jax workdir'),
      Case('concurrent_launch', 'a second launch while the first one trains',
           train('--config.num_epochs=100000'), 1, r'^error: .* is in use: process \d+ on',
           prepare='busy'),
      Case('truncated_npz', 'an .npz array file cut short', train(
          '--config.data.name={workdir}/images.npz'), 1,
           r'^error: .*images.npz cannot be read as a .npy/.npz array \(File is not a zip',
           prepare='truncated_npz'),
      Case('zero_epochs', 'nothing to train at all', train('--config.num_epochs=0'), 1,
           r'^error: Invalid config: num_epochs=0 must be at least 1'),
      Case('variant_typo', 'a misspelled config variant',
           ['experiments.train', '--config=configs/mnist.py:convv', '--workdir={workdir}'], 2,
           r"^error: flag --config=configs/mnist.py:convv: .*Unknown variant 'convv' of "
           r'configs/mnist.py; choose conv'),
      Case('variant_of_a_config_without_variants', 'a variant the config does not have',
           ['experiments.train', '--config=configs/quickstart.py:big', '--workdir={workdir}'], 2,
           r"^error: .*Unknown variant 'big' of configs/quickstart.py: it has none"),
      Case('missing_config_file', 'a config file that does not exist',
           ['experiments.train', '--config=configs/mnsit.py', '--workdir={workdir}'], 2,
           r'^error: --config=configs/mnsit.py: there is no file configs/mnsit.py'),
      Case('override_without_config', '--config.* overrides without --config',
           ['experiments.train', '--config.num_epochs=3', '--workdir={workdir}'], 2,
           r'^error: .*--config.KEY=VALUE overrides need --config=FILE'),
      Case('workdir_is_a_file', 'a workdir path that is an existing file', train(), 1,
           r'^error: File exists: .*workdir_is_a_file \(a file stands where a folder',
           prepare='file_at_workdir'),
      Case('nothing_left_to_train', 'a finished run resumed with fewer epochs, allowed',
           train('--allow_config_change'), 1,
           r'^error: .*checkpoint is at step \d+, past the \d+ steps.*nothing would be trained',
           prepare='trained'),
      Case('relaunch_over_a_record', 'a relaunch where the checkpoints were removed and the '
           'metrics kept', train(), 1, r'^error: .*metrics.jsonl holds metrics up to step \d+ of '
           'an earlier run', prepare='trained_then_no_checkpoints'),
      Case('checkpoints_without_config', 'a workdir whose config.json was removed, relaunched '
           'with another model', train('--config.model.latent_dim=7'), 1,
           r'^error: .* holds checkpoints but no config.json', prepare='trained_then_no_config'),
      Case('unwritable_report_folder', 'evaluate into a report folder that cannot be made',
           ['experiments.evaluate', '--workdir={workdir}', '--evals=elbo',
            '--report_dir={workdir}/config.json/reports'], 1,
           r'^error: The evaluation report cannot be written to .*nothing was computed',
           prepare='trained'),
      Case('divergence', 'a learning rate that makes the loss run away',
           train('--config.optimizer.learning_rate=3', '--config.num_epochs=20',
                 '--config.log_every_steps=10'), 1, r'^error: .*the run diverged',),
  ]


def run(command: list[str], workdir: str, cwd: str, timeout: float = 300):
  arguments = [sys.executable, '-m', *(part.replace('{workdir}', workdir) for part in command)]
  environment = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, f'{workdir}_lab']))
  return subprocess.run(arguments, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                        env=environment)


def corrupt(workdir: str, step_filter) -> None:
  """Truncates the data files (and with `step_filter` choosing, the metadata) of checkpoints."""
  folder = os.path.join(workdir, 'checkpoints')
  for step in sorted((int(name) for name in os.listdir(folder) if name.isdigit())):
    action = step_filter(step, folder)
    if action is None:
      continue
    for directory, _, files in os.walk(os.path.join(folder, str(step))):
      for name in files:
        path = os.path.join(directory, name)
        if action == 'garbage':
          with open(path, 'wb') as f:
            f.write(b'garbage')
        elif action == 'no_metadata' and name == '_METADATA':  # orbax's tree metadata
          os.remove(path)


def prepare(case: Case, workdir: str):
  """Readies the workdir; returns a background process to stop afterwards, if any."""
  if case.table:
    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    with open(f'{workdir}.csv', 'w', encoding='utf-8') as f:
      f.write(case.table)
  if case.module:
    os.makedirs(f'{workdir}_lab', exist_ok=True)
    with open(os.path.join(f'{workdir}_lab', f'{case.module}.py'), 'w', encoding='utf-8') as f:
      f.write(BROKEN_COMPONENTS[case.module][0])
  if case.prepare == 'failed_launch':
    run(train('--config.data.name=mnsit'), workdir, REPO_ROOT)
  if case.prepare == 'truncated_npz':
    os.makedirs(workdir)
    path = os.path.join(workdir, 'images.npz')
    np.savez(path, images=np.zeros((200, 8, 8), np.uint8))
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)
  if case.prepare == 'file_at_workdir':
    with open(workdir, 'w', encoding='utf-8') as f:
      f.write('a file, not a folder\n')
  if case.prepare in ('trained', 'all_checkpoints_corrupt', 'all_checkpoints_corrupt_twice',
                      'latest_metadata_missing', 'trained_then_no_checkpoints',
                      'trained_then_no_config'):
    result = run(train('--config.num_epochs=2', '--config.checkpoint_every_steps=10'), workdir,
                 REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    if case.command[0] == 'experiments.train' and case.name != 'nothing_left_to_train':
      # resume the 2-epoch run, not a 1-epoch one
      case.command = [*case.command, '--config.num_epochs=2', '--config.checkpoint_every_steps=10']
  if case.prepare == 'trained_then_no_checkpoints':
    shutil.rmtree(os.path.join(workdir, 'checkpoints'))
  if case.prepare == 'trained_then_no_config':
    os.remove(os.path.join(workdir, 'config.json'))
  if case.prepare.startswith('all_checkpoints_corrupt'):
    corrupt(workdir, lambda step, folder: 'garbage')
    if case.prepare.endswith('twice'):
      run(case.command, workdir, REPO_ROOT)  # the first refusal moves them aside
  if case.prepare == 'latest_metadata_missing':
    latest = max(int(name) for name in os.listdir(os.path.join(workdir, 'checkpoints'))
                 if name.isdigit())
    corrupt(workdir, lambda step, folder: 'no_metadata' if step == latest else None)
  if case.prepare == 'busy':
    job = subprocess.Popen(
        [sys.executable, '-m', *(p.replace('{workdir}', workdir) for p in train(
            '--config.num_epochs=100000'))], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
      if time.time() > deadline or job.poll() is not None:
        raise RuntimeError('the background job did not start training')
      time.sleep(0.2)
    return job
  return None


def first_message_line(result, expected: str) -> str:
  """The first `error:` line; for a command that must succeed, the first line matching
  `expected` (a warning it must give), or '' when nothing is expected."""
  lines = result.stderr.splitlines()
  errors = [line for line in lines if line.startswith('error:')]
  if errors:
    return errors[0]
  if expected == '^$':
    return '' if result.returncode == 0 else (lines[-1] if lines else '')
  matching = [line for line in lines if re.search(expected, line)]
  return matching[0].split('] ', 1)[-1] if matching else (lines[-1] if lines else '')


def main(argv) -> None:
  del argv
  options = flags.FLAGS
  root = os.path.abspath(options.root or tempfile.mkdtemp(prefix='bad_inputs_'))
  chosen = [c for c in cases() if not options.only or c.name in options.only.split(',')]
  print('| case | bad input | exit code | first line of the message | as expected |')
  print('|---|---|---|---|---|')
  failures = 0
  for case in chosen:
    workdir = os.path.join(root, case.name)
    job = prepare(case, workdir)
    try:
      result = run(case.command, workdir, case.cwd)
    finally:
      if job is not None:
        job.kill()
        job.wait()
    line = first_message_line(result, case.expected)
    passed = result.returncode == case.exit_code and bool(re.search(case.expected, line))
    failures += not passed
    shown = line.replace(root, 'ROOT').replace('|', '\\|')
    print(f'| {case.name} | {case.what} | {result.returncode} | {shown or "(none)"} | '
          f'{"yes" if passed else "NO"} |', flush=True)
  if not options.root:
    shutil.rmtree(root, ignore_errors=True)
  if failures:
    sys.exit(1)


if __name__ == '__main__':
  flags.DEFINE_string('root', None, 'Folder for the workdirs (default: a temporary one, '
                      'removed afterwards).')
  flags.DEFINE_string('only', '', 'Comma-separated case names.')
  app.run(main)
