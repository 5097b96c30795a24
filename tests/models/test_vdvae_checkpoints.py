"""Importing openai/vdvae checkpoints (scripts/import_vdvae.py, vae_jax/torch_files.py,
vae_jax/models/vdvae_checkpoints.py): files written by real `torch.save` (tests/data, made by
`python -m tests.vdvae_reference`) are read without torch, land in a workdir that evaluate,
visualize and train accept, and the imported model computes what VDVAE's network computes
(tests/vdvae_reference.py: the same network in numpy, float64)."""

import os
import shlex
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import top_down as top_down_configs
from scripts import import_vdvae
from tests import vdvae_reference
from vae_jax import models, torch_files
from vae_jax.errors import UserError
from vae_jax.models import vdvae_checkpoints

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


@pytest.mark.slow  # runs the tiny model's network
def test_an_imported_checkpoint_computes_vdvaes_network(mock_tfds, tmp_path):
  from experiments import launch  # pylint: disable=import-outside-toplevel
  config = top_down_configs.get_config('cifar10_small')
  workdir = str(tmp_path / 'imported')
  import_vdvae.import_checkpoint(config, MODEL, EMA, workdir)
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
    # The printed commands evaluate, draw and train: the test below.


@pytest.mark.slow  # runs the tiny model's network twice
def test_a_sharp_checkpoint_scores_as_vdvaes_loss_with_the_small_bin_branch_only():
  # The tiny EMA checkpoint with its output log-scales moved down by 7 (to the floor −7, where a
  # trained VDVAE's are): VDVAE's loss scores most subpixels by the midpoint density there.
  state = _reference_state(1)
  bias = state['decoder.out_net.out_conv.bias']
  for channel in range(3):  # VDVAE's layout: 10 logits, then per channel means, log-scales, ...
    bias[10 + 30 * channel + 10:10 + 30 * channel + 20] -= 7.0
  images = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3)) / 255.0
  expected, means = vdvae_reference.forward(state, vdvae_reference.TINY, images)
  x = images.astype(np.float32)
  reconstruction = {}
  for small_bins in ('midpoint_density', 'exact'):
    config = top_down_configs.get_config('cifar10_small')
    config.model.likelihood.small_bins = small_bins
    model = models.build_model(config.model, (32, 32, 3))
    template = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    params = vdvae_checkpoints.params_from_state_dict(
        {key: value.astype(np.float32) for key, value in state.items()}, template, 10)
    groups = tuple(jnp.asarray(m, jnp.float32) for m in means)  # VDVAE's posterior means
    terms = model.apply(params, x, groups, model.apply(params, x, method='encode_context'),
                        method='latent_log_densities')
    reconstruction[small_bins] = np.asarray(terms['reconstruction'], np.float64)
  np.testing.assert_allclose(reconstruction['midpoint_density'], expected['reconstruction'],
                             rtol=1e-6)
  # The exact bin probabilities: about 5,000 nats per image higher here (1.6 per subpixel).
  assert np.all(reconstruction['exact'] - expected['reconstruction'] > 1_000)


def test_a_checkpoint_of_another_layout_is_refused_naming_the_keys(tmp_path):
  config = top_down_configs.get_config('cifar10_small')
  config.model.top_down.decoder_groups = (2, 1, 1)  # one more group at 32 than the file has
  with pytest.raises(UserError, match=r'no decoder\.dec_blocks\.3\.enc\.c1\.weight.*--hps'):
    import_vdvae.import_checkpoint(config, MODEL, None, str(tmp_path / 'w'))
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


def _run(command, timeout=600):
  return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, PYTHONPATH=REPO_ROOT))


@pytest.mark.slow  # four processes, each compiling the tiny model
def test_the_commands_the_importer_prints_run_as_printed_on_the_workdir_it_wrote(tmp_path):
  # A layout that stops early, as VDVAE's cifar10 does: evaluate's default checkpoint is the
  # best one, which the import writes too. The data: a folder of 32×32 images.
  from vae_jax import images  # pylint: disable=import-outside-toplevel
  folder = tmp_path / 'images'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for index in range(16):
    images.save_png(str(folder / f'{index:02d}.png'),
                    rng.integers(0, 256, (32, 32, 3)).astype(np.uint8))
  workdir = str(tmp_path / 'imported')
  opt = str(tmp_path / 'tiny-opt.th')
  vdvae_reference.save_like_torch(vdvae_reference.optimizer_state_dict(
      torch_files.load_state_dict(MODEL)), opt)
  result = _run([sys.executable, '-m', 'scripts.import_vdvae', f'--model={MODEL}', f'--ema={EMA}',
                 f'--opt={opt}', f'--workdir={workdir}',
                 '--config=configs/top_down.py:cifar10_small',
                 f'--config.data.name={folder}/', '--config.data.test_size=4',
                 '--config.data.validation_size=4',
                 '--config.early_stopping.metric=validation/elbo',
                 '--config.evals.images.num_images=4'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'the moving average (EMA) of {EMA}' in result.stdout
  assert f"Adam's moments and step from {opt}" in result.stdout
  assert 'layout of configs/top_down.py:cifar10_small' in result.stdout
  commands = [line for line in result.stdout.splitlines() if line.startswith('python -m ')]
  assert [shlex.split(command)[2] for command in commands] == [
      'experiments.evaluate', 'experiments.visualize', 'experiments.train']
  assert '--evals=elbo' in commands[0]
  for command in commands:
    ran = _run([sys.executable, *shlex.split(command)[1:]])
    assert ran.returncode == 0, f'{command}\n{ran.stderr[-3000:]}'
  assert os.path.isfile(os.path.join(workdir, 'figures', 'temperatures.png'))
  from vae_jax.engine import checkpointing  # pylint: disable=import-outside-toplevel
  assert checkpointing.step_folders(workdir)[-1] == 1  # 8 training images, batch 8: one step


@pytest.mark.parametrize('hps,side', [('cifar10', 32), ('imagenet32', 32), ('imagenet64', 64),
                                      ('ffhq256', 256), ('ffhq1024', 1024)])
def test_each_of_vdvaes_layouts_imports_at_its_own_image_shape(hps, side):
  # No dataset is opened: the shape is the layout's; train resumes with the config imported.
  assert import_vdvae.image_shape(top_down_configs.get_config(hps)) == (side, side, 3)
  arguments = import_vdvae.config_arguments(['import_vdvae', '--model=m.th', f'--hps={hps}'], hps)
  assert arguments == [f'--config=configs/top_down.py:{hps}']
  train = import_vdvae.printed_commands('/tmp/my run', arguments)[-1]
  assert shlex.split(train) == ['python', '-m', 'experiments.train', *arguments,
                                '--workdir=/tmp/my run']


@pytest.mark.slow  # builds, imports and checkpoints the tiny model (~15 s)
def test_an_imported_optimizer_state_holds_vdvaes_moments_and_takes_adamws_next_step(tmp_path):
  # VDVAE's *-opt.th (apex FusedAdam in AdamW mode, after 1,000 steps) in torch.save's format.
  import optax  # pylint: disable=import-outside-toplevel
  from vae_jax import optimizers  # pylint: disable=import-outside-toplevel
  model_state = torch_files.load_state_dict(MODEL)
  optimizer_file = vdvae_reference.optimizer_state_dict(model_state, seed=2, step=1000)
  path = str(tmp_path / 'tiny-opt.th')
  vdvae_reference.save_like_torch(optimizer_file, path)
  config = top_down_configs.get_config('cifar10_small')
  state = import_vdvae.import_checkpoint(config, MODEL, EMA, str(tmp_path / 'w'), path)
  adam = [node for node in jax.tree.leaves(
      state.opt_state, is_leaf=lambda node: isinstance(node, optax.ScaleByAdamState))
          if isinstance(node, optax.ScaleByAdamState)]
  assert len(adam) == 1 and int(adam[0].count) == 1000
  # The file's moments, each where its parameter went: the input conv (index 0; torch
  # [out, in, kh, kw] -> [kh, kw, in, out]) and the output head's bias (reordered channels).
  names = list(model_state)
  head = names.index('decoder.out_net.out_conv.bias')
  # The config updates all parameters as one vector (optimizer.flatten): its moments too.
  assert config.optimizer.flatten and adam[0].mu.ndim == 1
  mu, nu = (optimizers.unflattened_like(state.params, m) for m in (adam[0].mu, adam[0].nu))
  for moments, key in ((mu, 'exp_avg'), (nu, 'exp_avg_sq')):
    np.testing.assert_array_equal(
        moments['params']['encoder']['Conv_0']['kernel'],
        np.transpose(optimizer_file['state'][0][key], (2, 3, 1, 0)))
    np.testing.assert_array_equal(
        moments['params']['output_head']['bias'],
        optimizer_file['state'][head][key][vdvae_checkpoints.mixture_channel_order(10)])
  # One update from there is AdamW's, by hand: bias correction at step 1001, learning rate
  # past its warm-up, decoupled weight decay.
  optimizer = optimizers.create_optimizer(config.optimizer, num_train_steps=10)
  grads = jax.tree.map(lambda p: 1e-3 * jnp.cos(jnp.arange(p.size).reshape(p.shape) + 0.5),
                       state.params)
  updates, _ = optimizer.update(grads, state.opt_state, state.params)
  b1, b2, lr, wd = 0.9, 0.9, config.optimizer.learning_rate, config.optimizer.weight_decay
  eps, t = config.optimizer.eps, 1001
  expected = jax.tree.map(
      lambda p, g, m, v: -lr * ((b1 * m + (1 - b1) * g) / (1 - b1**t) / (
          np.sqrt((b2 * v + (1 - b2) * g * g) / (1 - b2**t)) + eps) + wd * p),
      *(jax.tree.map(lambda a: np.asarray(a, np.float64), tree)
        for tree in (state.params, grads, mu, nu)))
  jax.tree.map(lambda ours, theirs: np.testing.assert_allclose(ours, theirs, rtol=1e-4,
                                                               atol=1e-10),
               updates, expected)
