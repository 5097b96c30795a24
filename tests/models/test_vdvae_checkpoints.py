"""Importing openai/vdvae checkpoints (scripts/import_vdvae.py, vae_jax/torch_files.py,
vae_jax/models/vdvae_checkpoints.py): files written by real `torch.save` (tests/data, made by
`python -m tests.vdvae_reference`) are read without torch, land in a workdir that evaluate,
visualize and train accept, and the imported model computes what VDVAE's network computes
(tests/vdvae_reference.py: the same network in numpy, float64)."""

import os

import numpy as np
import pytest

from configs import top_down as top_down_configs
from scripts import import_vdvae
from tests import vdvae_reference
from vae_jax import torch_files
from vae_jax.errors import UserError
from vae_jax.models import vdvae_checkpoints

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data')
MODEL, EMA = (os.path.join(DATA, f'vdvae_tiny-model{suffix}.th') for suffix in ('', '-ema'))


def _reference_state(seed):
  # as saved: float32 values, computed on in float64
  return {key: value.astype(np.float32).astype(np.float64)
          for key, value in vdvae_reference.state_dict(vdvae_reference.TINY, seed).items()}


def test_a_torch_save_file_reads_without_torch_to_the_values_saved():
  state = torch_files.load_state_dict(MODEL)
  reference = _reference_state(0)
  assert sorted(state) == sorted(reference)
  for key, value in reference.items():
    np.testing.assert_array_equal(state[key], value.astype(np.float32), err_msg=key)


def test_the_mixture_channels_are_reordered_from_vdvaes_layout():
  order = vdvae_checkpoints.mixture_channel_order(10)
  assert sorted(order) == list(range(100))
  # ours: 10 logits, then means (R, G, B), log-scales (R, G, B), coefficients (α, β, γ);
  # VDVAE: 10 logits, then per channel c its means, log-scales, coefficients.
  assert list(order[10:20]) == list(range(10, 20))  # red means
  assert list(order[20:30]) == list(range(40, 50))  # green means
  assert list(order[40:50]) == list(range(20, 30))  # red log-scales
  assert list(order[90:100]) == list(range(90, 100))  # γ: blue's coefficients block


@pytest.mark.slow  # compiles the tiny model's evaluation, visualisation and a training step
def test_an_imported_checkpoint_computes_vdvaes_network_and_evaluates_and_resumes(
    mock_tfds, tmp_path):
  from experiments import evaluate, launch, visualize  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import checkpointing, training
  config = top_down_configs.get_config('cifar10_small')
  workdir = str(tmp_path / 'imported')
  import_vdvae.import_checkpoint(config, MODEL, EMA, workdir, (32, 32, 3))
  images = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3)) / 255.0
  with mock_tfds(num_examples=16):
    trained = launch.load_trained(workdir)
    for params, seed in ((trained.state.params, 0), (trained.eval_params, 1)):
      expected, means = vdvae_reference.forward(_reference_state(seed), vdvae_reference.TINY,
                                                images)
      x = images.astype(np.float32)
      context = trained.model.apply(params, x, method='encode_context')
      ours_means = trained.model.apply(params, x, method='posterior_means')
      for ours, theirs in zip(ours_means.values(), means):
        np.testing.assert_allclose(ours, theirs.reshape(len(x), -1), rtol=1e-3, atol=1e-4)
      groups = tuple(m.reshape(len(x), *shape.shape[1:]) for m, shape in
                     zip(ours_means.values(), means))
      terms = trained.model.apply(params, x, groups, context, method='latent_log_densities')
      for name in ('reconstruction', 'log_prior', 'log_posterior'):
        np.testing.assert_allclose(terms[name], expected[name], rtol=2e-4, err_msg=name)
    report = evaluate.evaluate_workdir(workdir, names=['elbo'], num_examples=8, batch_size=8)
    assert np.isfinite(report['elbo']['mean'] if isinstance(report['elbo'], dict)
                       else report['elbo'])
    assert visualize.write_figures(workdir, num_points=8)
    config.update(num_epochs=1)
    state = training.train_and_evaluate(config, workdir)  # resumes from the imported step 0
  assert int(state.step) == 2 and checkpointing.step_folders(workdir)[-1] == 2


def test_a_checkpoint_of_another_layout_is_refused_naming_the_keys(tmp_path):
  config = top_down_configs.get_config('cifar10_small')
  config.model.top_down.decoder_groups = (2, 1, 1)  # one more group at 32 than the file has
  with pytest.raises(UserError, match=r'no decoder\.dec_blocks\.3\.enc\.c1\.weight.*--hps'):
    import_vdvae.import_checkpoint(config, MODEL, None, str(tmp_path / 'w'), (32, 32, 3))
  assert not os.listdir(tmp_path) or not os.listdir(tmp_path / 'w')


def test_a_file_torch_did_not_write_is_refused(tmp_path):
  path = tmp_path / 'not_torch.th'
  path.write_bytes(b'plain bytes')
  with pytest.raises(torch_files.TorchFileError):
    torch_files.load_state_dict(str(path))


@pytest.mark.slow
def test_fresh_torch_save_files_read_as_torch_load_reads_them(tmp_path):
  torch = pytest.importorskip('torch', reason='the torch extra is not installed '
                              "(pip install -e '.[torch]')")
  tensors = {'w': torch.randn(3, 4, 5).transpose(0, 2),  # not contiguous
             'h': torch.randn(6).half(), 'i': torch.arange(7), 'b': torch.tensor([True, False]),
             'module.scalar': torch.tensor(2.5, dtype=torch.float64)}
  path = str(tmp_path / 'state.th')
  torch.save(tensors, path)
  read = torch_files.load_state_dict(path)
  for key, value in tensors.items():
    np.testing.assert_array_equal(read[key], value.numpy(), err_msg=key)
    assert read[key].dtype == value.numpy().dtype
  vdvae_reference.save_with_torch(vdvae_reference.state_dict(vdvae_reference.TINY, 5), path)
  loaded = torch.load(path)
  for key, value in torch_files.load_state_dict(path).items():
    np.testing.assert_array_equal(value, loaded[key].numpy())
