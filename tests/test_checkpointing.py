"""The workdir's saved config: differences are listed, resumable ones accepted."""

import json

import pytest

from configs import quickstart
from vae_jax import checkpointing


def test_config_differences_lists_nested_keys():
  saved = {'a': 1, 'model': {'latent_dim': 2, 'sizes': [3]}, 'gone': 0}
  new = {'a': 1, 'model': {'latent_dim': 5, 'sizes': [3]}, 'added': 1}
  assert checkpointing.config_differences(saved, new) == [
      ('added', '<absent>', 1), ('gone', 0, '<absent>'), ('model.latent_dim', 2, 5)]


def test_resumable_changes_are_recorded_and_others_refused(tmp_path):
  config = quickstart.get_config()
  checkpointing.save_or_check_config(config, str(tmp_path))
  config.num_epochs = 7  # how long: may change on resume
  checkpointing.save_or_check_config(config, str(tmp_path))
  assert json.loads((tmp_path / 'config.json').read_text())['num_epochs'] == 7
  config.objective.beta = 0.5  # what is trained: may not
  with pytest.raises(checkpointing.WorkdirConfigMismatchError, match='objective.beta'):
    checkpointing.save_or_check_config(config, str(tmp_path))
  assert checkpointing.load_config(str(tmp_path)).objective.beta == 1.0


def test_load_config_restores_tuples_and_names_a_missing_workdir(tmp_path):
  config = quickstart.get_config()
  checkpointing.save_or_check_config(config, str(tmp_path))
  assert checkpointing.load_config(str(tmp_path)).model.encoder.hidden_sizes == (128, 128)
  with pytest.raises(FileNotFoundError, match='not a vae_jax workdir'):
    checkpointing.load_config(str(tmp_path / 'missing'))
