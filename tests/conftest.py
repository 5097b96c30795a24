"""Shared fixtures: tiny configs, the shared real-data folder, a fixed TFDS mock."""

from __future__ import annotations

import os
import tempfile

# One on-disk compilation cache for the whole run (and the next), set before anything imports
# jax: the launcher subprocesses (fault injection, multi-process, CLI tests) compile the same
# programs again and again. A cached program runs exactly as a freshly compiled one.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'vae_jax_tests_jax_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import pytest  # pylint: disable=wrong-import-position

from configs import quickstart  # pylint: disable=wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DIR = os.path.join(os.path.dirname(REPO_ROOT), 'shared')
SHARED_TFDS_DIR = os.path.join(SHARED_DIR, 'tensorflow_datasets')
SHARED_FREY_FACE = os.path.join(SHARED_DIR, 'data', 'frey_rawface.mat')


def make_tiny_config():
  """The quickstart config shrunk to a few seconds of training: digits, 2 epochs."""
  config = quickstart.get_config()
  config.model.latent_dim = 2
  config.model.encoder.hidden_sizes = (16,)
  config.model.decoder.hidden_sizes = (16,)
  config.batch_size = 100
  config.num_epochs = 2
  config.eval_every_epochs = 1
  config.log_every_steps = 5
  config.checkpoint_every_steps = 10
  config.evals.images.num_images = 4
  return config


@pytest.fixture
def tiny_config():
  return make_tiny_config()


@pytest.fixture(scope='session')
def trained_workdir(tmp_path_factory):
  """A workdir holding a tiny two-layer IWAE trained for 2 epochs (shared by several tests)."""
  from vae_jax.engine import training  # pylint: disable=import-outside-toplevel
  config = make_tiny_config()
  config.model.upper_layers.latent_dims = (2,)
  config.model.upper_layers.hidden_sizes = (8,)
  config.objective.kind, config.objective.num_samples = 'iwae', 3
  config.paper.update(source='A made-up paper', test_log_likelihood=-30.0, active_units='2+1')
  workdir = str(tmp_path_factory.mktemp('trained'))
  training.train_and_evaluate(config, workdir)
  return workdir


def require_file(path: str, what: str) -> str:
  if not os.path.exists(path):
    pytest.skip(f'{what} not found at {path} (the ../shared folder beside the checkout holds it).')
  return path


@pytest.fixture
def shared_tfds_dir():
  return require_file(os.path.join(SHARED_TFDS_DIR, 'mnist'), 'Prepared TFDS MNIST') and SHARED_TFDS_DIR


@pytest.fixture
def shared_frey_face():
  return require_file(SHARED_FREY_FACE, 'Frey Face (frey_rawface.mat)')


@pytest.fixture
def mock_tfds(monkeypatch):
  """`tfds.testing.mock_data` for `tfds.data_source`, with TFDS 4.9.10's mock of
  `__getitems__` fixed: the mock installs it as a plain attribute, so it is called without
  `self` and fails; here it reads the same fake examples one by one."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.testing import mocking

  def getitems(record_keys, generator, serialized=False):
    return [mocking._getitem(None, key, generator, serialized) for key in record_keys]  # pylint: disable=protected-access

  monkeypatch.setattr(mocking, '_getitems', getitems)

  def mock(num_examples: int):
    return tfds.testing.mock_data(num_examples=num_examples)

  return mock
