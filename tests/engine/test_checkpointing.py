"""The workdir's saved config: differences are listed, resumable ones accepted."""

import dataclasses
import json

import pytest

from configs import default, quickstart
from vae_jax import registries
from vae_jax.engine import checkpointing


def test_config_differences_lists_nested_keys():
  saved = {'a': 1, 'model': {'latent_dim': 2, 'sizes': [3]}, 'gone': 0}
  new = {'a': 1, 'model': {'latent_dim': 5, 'sizes': [3]}, 'added': 1}
  assert checkpointing.config_differences(saved, new) == [
      ('added', '<absent>', 1), ('gone', 0, '<absent>'), ('model.latent_dim', 2, 5)]


def _check_and_save(config, workdir: str, allow_changes: bool = False) -> None:
  """What a launch does with its config: checked against the workdir's, then saved there."""
  checkpointing.check_config(config, workdir, defaults=default.get_config(),
                             allow_changes=allow_changes)
  checkpointing.save_config(config, workdir)


def test_which_changes_a_resume_accepts(tmp_path):
  config = quickstart.get_config()
  _check_and_save(config, str(tmp_path))
  config.log_every_steps = 7  # operational: accepted and recorded
  _check_and_save(config, str(tmp_path))
  assert json.loads((tmp_path / 'config.json').read_text())['log_every_steps'] == 7
  config.num_epochs = 9  # changes the result: only when allowed explicitly
  with pytest.raises(checkpointing.WorkdirConfigMismatchError, match='--allow_config_change'):
    _check_and_save(config, str(tmp_path))
  _check_and_save(config, str(tmp_path), allow_changes=True)
  assert checkpointing.load_config(str(tmp_path)).num_epochs == 9
  config.model.latent_dim = 3  # changes the state's shapes: never
  with pytest.raises(checkpointing.WorkdirConfigMismatchError, match='use a new --workdir'):
    _check_and_save(config, str(tmp_path), allow_changes=True)
  assert checkpointing.load_config(str(tmp_path)).model.latent_dim == 8


def test_load_config_restores_tuples_and_names_a_missing_workdir(tmp_path):
  config = quickstart.get_config()
  checkpointing.save_config(config, str(tmp_path))
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
  checkpointing.check_config(config, str(tmp_path), defaults=default.get_config())  # accepted
  loaded = checkpointing.load_config(str(tmp_path), defaults=default.get_config())
  assert (loaded.evals.elbo.num_samples, loaded.evals.images.num_images) == (3, 16)
  assert loaded.evals.importance_sampled.num_samples == 5000  # added since: the default
  assert 'eval_num_samples' not in loaded
  config.seed = 1  # a real difference is still refused
  with pytest.raises(checkpointing.WorkdirConfigMismatchError, match='seed: 0 .saved. -> 1'):
    checkpointing.check_config(config, str(tmp_path), defaults=default.get_config())


def test_the_caller_passes_the_defaults_that_fill_in_what_a_saved_config_predates(tmp_path):
  old = json.loads(default.get_config().to_json())
  del old['optimizer']['skip_threshold']  # a key added after this workdir was trained
  (tmp_path / checkpointing.CONFIG_FILENAME).write_text(json.dumps(old))
  config = default.get_config()
  checkpointing.check_config(config, str(tmp_path), defaults=default.get_config())  # filled in
  with pytest.raises(checkpointing.WorkdirConfigMismatchError,
                     match="optimizer.skip_threshold: '<absent>'"):
    checkpointing.check_config(config, str(tmp_path), defaults=None)  # nothing fills it
  with pytest.raises(TypeError, match='defaults'):  # the library has no defaults of its own
    checkpointing.check_config(config, str(tmp_path))  # pylint: disable=missing-kwoa


def test_a_resume_may_change_a_key_only_within_a_group_of_values_that_give_the_same_run(
    tmp_path, monkeypatch):
  saved = quickstart.get_config()
  checkpointing.save_config(saved, str(tmp_path))

  def accepted(key, value):
    config = quickstart.get_config()
    config[key] = value
    try:
      checkpointing.check_config(config, str(tmp_path), defaults=default.get_config())
    except checkpointing.WorkdirConfigMismatchError:
      return False
    return True

  assert saved.input_pipeline == 'device'
  assert accepted('input_pipeline', 'host') and not accepted('input_pipeline', 'grain')
  assert not accepted('batch_size', 10)
  # The rule is the option's declaration, for any key: a batch size declared resumable between
  # two values would be accepted between them.
  engine_options = registries.get('run', 'engine').options
  monkeypatch.setitem(engine_options, 'batch_size', dataclasses.replace(
      engine_options['batch_size'], resumable_between=(frozenset({saved.batch_size, 10}),)))
  assert accepted('batch_size', 10) and not accepted('batch_size', 20)


def test_a_top_down_workdir_from_before_the_flat_optimizer_is_refused_naming_the_key(tmp_path):
  # Written before optimizer.flatten and cpu_optimization_level existed: its optimizer state is
  # one tree per moment, which the configs' one vector cannot restore. The one message names
  # the key and the value to resume with; the compiler level alone would be accepted.
  from configs import top_down  # pylint: disable=import-outside-toplevel
  old = json.loads(top_down.get_config('mnist_small').to_json())
  del old['optimizer']['flatten'], old['cpu_optimization_level']
  (tmp_path / checkpointing.CONFIG_FILENAME).write_text(json.dumps(old))
  config = top_down.get_config('mnist_small')
  with pytest.raises(checkpointing.WorkdirConfigMismatchError,
                     match=r'optimizer.flatten: False \(saved\) -> True \(now\)\n'
                     'These change the shapes of the saved state'):
    checkpointing.check_config(config, str(tmp_path), defaults=default.get_config())
  config.optimizer.flatten = False
  checkpointing.check_config(config, str(tmp_path), defaults=default.get_config())  # resumes
