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


def test_which_changes_a_resume_accepts(tmp_path):
  config = quickstart.get_config()
  checkpointing.save_or_check_config(config, str(tmp_path))
  config.log_every_steps = 7  # operational: accepted and recorded
  checkpointing.save_or_check_config(config, str(tmp_path))
  assert json.loads((tmp_path / 'config.json').read_text())['log_every_steps'] == 7
  config.num_epochs = 9  # changes the result: only when allowed explicitly
  with pytest.raises(checkpointing.WorkdirConfigMismatchError, match='--allow_config_change'):
    checkpointing.save_or_check_config(config, str(tmp_path))
  checkpointing.save_or_check_config(config, str(tmp_path), allow_changes=True)
  assert checkpointing.load_config(str(tmp_path)).num_epochs == 9
  config.model.latent_dim = 3  # changes the state's shapes: never
  with pytest.raises(checkpointing.WorkdirConfigMismatchError, match='use a new --workdir'):
    checkpointing.save_or_check_config(config, str(tmp_path), allow_changes=True)
  assert checkpointing.load_config(str(tmp_path)).model.latent_dim == 8


def test_load_config_restores_tuples_and_names_a_missing_workdir(tmp_path):
  config = quickstart.get_config()
  checkpointing.save_or_check_config(config, str(tmp_path))
  assert checkpointing.load_config(str(tmp_path)).model.encoder.hidden_sizes == (128, 128)
  with pytest.raises(FileNotFoundError, match='not a vae_jax workdir'):
    checkpointing.load_config(str(tmp_path / 'missing'))
