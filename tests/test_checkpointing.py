"""The workdir's saved config: differences are listed, resumable ones accepted."""

import json

import pytest

from configs import default, quickstart
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


def test_a_config_saved_before_evals_existed_resumes_and_keeps_its_values(tmp_path):
  # A workdir from before the evaluator rename: eval_num_samples and num_image_samples at the
  # top level, no `evals` block.
  old = json.loads(default.get_config().to_json())
  del old['evals']
  old.update(eval_num_samples=3, num_image_samples=16)
  (tmp_path / checkpointing.CONFIG_FILENAME).write_text(json.dumps(old))
  config = default.get_config()
  config.evals.elbo.num_samples, config.evals.images.num_images = 3, 16
  checkpointing.check_config(config, str(tmp_path))  # no difference: accepted
  loaded = checkpointing.load_config(str(tmp_path), defaults=default.get_config())
  assert (loaded.evals.elbo.num_samples, loaded.evals.images.num_images) == (3, 16)
  assert loaded.evals.importance_sampled.num_samples == 5000  # added since: the default
  assert 'eval_num_samples' not in loaded
  config.seed = 1  # a real difference is still refused
  with pytest.raises(checkpointing.WorkdirConfigMismatchError, match='seed: 0 .saved. -> 1'):
    checkpointing.check_config(config, str(tmp_path))
