"""vae_jax/models/top_down.py: the ELBO's terms against a composition of the groups' densities
by SciPy, the per-group closed-form KLs against Monte-Carlo, importance sampling above the
ELBO, temperatures, patches, rematerialisation, and the CIFAR-10 config on mock data."""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import default, top_down as top_down_configs
from vae_jax import models, objectives
from vae_jax.evaluators import batched, importance_sampling
from vae_jax.models import top_down, top_down_blocks, top_down_layout, top_down_options

SHAPE = (8, 8, 1)


def _tiny(patch_size=1, remat=False):
  config = default.get_config().model
  config.family = 'top_down'
  config.top_down.update(resolutions=(8 // patch_size, 4 // patch_size), patch_size=patch_size,
                         encoder_blocks=(1, 1), decoder_groups=(1, 2), width=8,
                         latent_channels=2, remat=remat)
  model = models.build_model(config, SHAPE)
  x = (np.random.default_rng(0).uniform(size=(3, *SHAPE)) > 0.5).astype(np.float32)
  return model, model.init(jax.random.key(0), x[:1]), x


@pytest.mark.slow  # over 10 s of compilation
def test_terms_are_the_groups_densities_composed_by_scipy():
  model, params, x = _tiny()
  key = jax.random.key(5)
  terms = model.apply(params, x, key, method='sample_log_weight_terms')
  keys = jax.random.split(key, 3)
  likelihood, chosen = model.apply(
      params, x, method=lambda m, x: m._top_down(  # pylint: disable=protected-access
          x.shape[0], lambda key, prior, posterior: posterior.sample(key), m.encoder(x), keys))
  log_prior = log_posterior = kl = 0.0
  for z, prior, posterior in chosen:
    z, pm, ps, qm, qs = (np.asarray(a, np.float64) for a in (
        z, prior.mean, prior.scale, posterior.mean, posterior.scale))
    log_prior += stats.norm.logpdf(z, pm, ps).sum(axis=(1, 2, 3))
    log_posterior += stats.norm.logpdf(z, qm, qs).sum(axis=(1, 2, 3))
    kl += (np.log(ps / qs) + (qs**2 + (qm - pm)**2) / (2 * ps**2) - 0.5).sum(axis=(1, 2, 3))
  reconstruction = stats.bernoulli.logpmf(
      x, 1 / (1 + np.exp(-np.asarray(likelihood.logits, np.float64)))).sum(axis=(1, 2, 3))
  np.testing.assert_allclose(terms['log_prior'], log_prior, rtol=1e-5)
  np.testing.assert_allclose(terms['log_posterior'], log_posterior, rtol=1e-5)
  np.testing.assert_allclose(terms['analytic_kl'], kl, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(terms['reconstruction'], reconstruction, rtol=1e-5)
  np.testing.assert_allclose(sum(terms[f'kl/{name}'] for name in model.group_names),
                             terms['analytic_kl'], rtol=1e-6)
  assert model.group_names == ('g00_r4', 'g01_r4', 'g02_r8')


@pytest.mark.slow
def test_the_groups_closed_form_kls_average_to_the_monte_carlo_kl():
  # E_q[Σ_l KL_l(z_<l)] = E_q[log q(z|x) − log p(z)]: the same draws, two estimators.
  model, params, x = _tiny()
  terms = objectives.log_weight_terms(model, params, jnp.asarray(x), jax.random.key(1), 4000)
  closed = np.asarray(terms['analytic_kl'])
  sampled = np.asarray(terms['log_posterior'] - terms['log_prior'])
  error = np.sqrt(closed.var(0) / 4000 + sampled.var(0) / 4000)
  assert np.all(np.abs(closed.mean(0) - sampled.mean(0)) < 4 * error + 1e-3)


@pytest.mark.slow
def test_importance_sampling_is_above_the_elbo_and_the_elbo_has_group_terms():
  model, params, x = _tiny()
  fn = importance_sampling.make_importance_sampling_fn(model, num_samples=200, chunk_size=50)
  sampled = batched.map_examples(fn, params, x, batch_size=3, rng=jax.random.key(2))
  elbo = objectives.elbo_terms(model, params, jnp.asarray(x), jax.random.key(3), num_samples=200)
  assert np.all(sampled['log_likelihood'] > np.asarray(elbo['elbo']))
  assert {f'kl/{name}' for name in model.group_names} <= set(elbo)


@pytest.mark.slow  # compile-heavy: over 9 s on 2 cores
def test_temperature_zero_generates_the_prior_means_path():
  model, params, _ = _tiny()
  assert isinstance(model, models.Hierarchy)
  cold = [model.apply(params, jax.random.key(seed), 2, 0.0, method='generate') for seed in (0, 1)]
  np.testing.assert_array_equal(cold[0], cold[1])
  warm = model.apply(params, jax.random.key(0), 2, method='generate')
  assert warm.shape == (2, *SHAPE) and not np.array_equal(warm, cold[0])


@pytest.mark.slow  # compile-heavy: over 9 s on 2 cores
def test_patches_round_trip_and_a_patched_model_reads_whole_images():
  x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
  patched = top_down_blocks.space_to_depth(x, 2)
  assert patched.shape == (2, 4, 4, 12)
  np.testing.assert_array_equal(patched[0, 0, 0], x[0, :2, :2].reshape(-1))
  np.testing.assert_array_equal(top_down_blocks.depth_to_space(patched, 2), x)
  model, params, images = _tiny(patch_size=2)
  assert model.apply(params, images, method='reconstruct').shape == images.shape


@pytest.mark.slow
def test_rematerialisation_changes_neither_values_nor_gradients():
  (plain, params, x), (remat, _, _) = _tiny(), _tiny(remat=True)

  def loss(model, params):
    return -objectives.elbo_terms(model, params, jnp.asarray(x), jax.random.key(0))['elbo'].sum()

  np.testing.assert_allclose(loss(remat, params), loss(plain, params), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(jax.grad(functools.partial(loss, remat))(params)),
                  jax.tree.leaves(jax.grad(functools.partial(loss, plain))(params))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_layout_that_does_not_fit_the_images_is_refused_with_every_problem():
  from vae_jax import data  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import config_checks
  config = top_down_configs.get_config('mnist_small')
  config.model.top_down.update(resolutions=(14, 6), decoder_groups=(1, 1, 1))
  config.data.binarization = 'dynamic'
  config.model.likelihood.kind = 'discretized_logistic'
  images = np.zeros((4, 28, 28, 1), np.float32)
  dataset = data.Dataset('test', data.Split(images, None), None, data.Split(images, None))
  with pytest.raises(config_checks.ConfigError) as error:
    config_checks.validate_config(config)
  assert 'data.binarization=dynamic makes them binary' in str(error.value)
  config.data.binarization = 'none'
  with pytest.raises(config_checks.ConfigError, match=r'(?s)decoder_groups=\(1, 1, 1\) needs one '
                     r'count.*each must divide the one before'):
    config_checks.validate_config_for_data(config, dataset)


@pytest.mark.slow
def test_the_cifar10_config_trains_evaluates_and_draws_on_mock_data(mock_tfds, tmp_path):
  # The launchers' functions on the CIFAR-10 protocol (AdamW, warm-up, clipping, skip
  # threshold, EMA, discretised logistic mixture), on mock 8-bit images.
  from experiments import evaluate, visualize  # pylint: disable=import-outside-toplevel
  from vae_jax import optimizers  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import metric_writers, training
  config = top_down_configs.get_config('cifar10_small')
  config.update(num_epochs=2, log_every_steps=1)
  config.evals.images.num_images = 4
  workdir = str(tmp_path)
  with mock_tfds(num_examples=16):
    state = training.train_and_evaluate(config, workdir)
    report = evaluate.evaluate_workdir(workdir, names=['elbo'], num_examples=8, batch_size=8)
    paths = visualize.write_figures(workdir, num_points=16)
  assert int(state.step) == 4 and int(state.skipped_steps) == 0
  average = optimizers.evaluation_params(state.params, state.opt_state)
  assert not np.array_equal(jax.tree.leaves(average)[0], jax.tree.leaves(state.params)[0])
  last = [m for m in metric_writers.read_metrics(workdir) if 'test/elbo' in m][-1]
  assert {'test/kl/g00_r8', 'test/kl/g02_r32', 'test/active_units/g01_r16'} <= set(last)
  assert 0 < last['test/bits_per_dim'] < 20  # 8 bits/dim is a uniform guess
  assert report['num_examples'] == 8 and report['path'].endswith('_elbo_n8.json')
  assert 'kl/g00_r8' in report  # the ELBO evaluator reports each group's KL
  assert {'kl_per_group', 'temperatures', 'samples'} <= set(paths)


def _vdvae_parameter_counts(enc_blocks: str, dec_blocks: str, width: int, zdim: int,
                            image_channels: int = 3, num_mixtures: int = 10,
                            custom_width_str: str = '') -> dict[str, int]:
  """Parameters of openai/vdvae's VAE, module by module, counted from its vae.py (parse_layer_string,
  get_width_settings, Block, DecBlock, Decoder) independently of vae_jax."""
  widths = collections.defaultdict(lambda: width)
  for part in filter(None, custom_width_str.split(',')):
    resolution, channels = part.split(':')
    widths[int(resolution)] = int(channels)

  def layers(spec):
    out = []
    for part in spec.split(','):
      if 'x' in part:
        res, num = part.split('x')
        out += [(int(res), None)] * int(num)
      else:
        res, other = part.replace('d', 'm').split('m')
        out.append((int(res), int(other)))
    return out

  def conv(cin, cout, k):
    return cin * cout * k * k + cout

  def block(cin, mid, cout, use_3x3):
    k = 3 if use_3x3 else 1
    return conv(cin, mid, 1) + 2 * conv(mid, mid, k) + conv(mid, cout, 1)

  mid = lambda res: int(widths[res] * 0.25)
  encoder = conv(image_channels, width, 3) + sum(block(widths[res], mid(res), widths[res], res > 2)
                                                 for res, _ in layers(enc_blocks))
  decoder_blocks = [block(2 * widths[res], mid(res), 2 * zdim, res > 2)
                    + block(widths[res], mid(res), 2 * zdim + widths[res], res > 2)
                    + conv(zdim, widths[res], 1)
                    + block(widths[res], mid(res), widths[res], res > 2)
                    for res, _ in layers(dec_blocks)]
  resolutions = {res for res, _ in layers(dec_blocks)}
  counts = {'encoder': encoder, 'decoder_blocks': sum(decoder_blocks),
            'bias_xs': sum(widths[res] * res * res for res in resolutions if res <= 64),
            'gain_bias_out_net': 2 * width + conv(width, num_mixtures * 10, 1),
            'num_decoder_blocks': len(decoder_blocks)}
  counts['total'] = sum(value for name, value in counts.items() if name != 'num_decoder_blocks')
  return counts


# hps.py's settings beyond the block strings and width: ffhq1024's widths and mixture size.
_VDVAE_EXTRA_HPS = {'ffhq1024': dict(num_mixtures=2, custom_width_str=(
    '512:32,256:64,128:512,64:512,32:512,16:512,8:512,4:512,1:512'))}


def _vdvae_count(variant):
  enc, dec, width, *_ = top_down_configs.VDVAE_HPS[variant]
  return _vdvae_parameter_counts(enc, dec, width, zdim=16, **_VDVAE_EXTRA_HPS.get(variant, {}))


def _parameter_count(config, side):
  model = models.build_model(config.model, (side, side, 3))
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, side, side, 3)))['params']
  shapes = top_down_layout.unstacked(shapes)  # one module per group, as VDVAE's
  return sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(shapes)), shapes


@pytest.mark.slow  # traces the 43-group model (~15 s)
def test_the_cifar10_config_is_vdvaes_model_parameter_for_parameter():
  # VDVAE's CIFAR-10 network has 39,145,700 parameters by its own module structure; ours must
  # hold the same number in each part (encoder, the 43 stochastic blocks, stream biases, head).
  config = top_down_configs.get_config('cifar10')
  enc, dec, width, *_ = top_down_configs.VDVAE_HPS['cifar10']
  expected = _vdvae_count('cifar10')
  model = models.build_model(config.model, (32, 32, 3))
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))['params']
  shapes = top_down_layout.unstacked(shapes)  # one module per group, as VDVAE's
  counts = {name: sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree))
            for name, tree in shapes.items()}
  groups = {name: count for name, count in counts.items() if name.startswith('groups_')}
  assert len(groups) == expected['num_decoder_blocks'] == 43
  assert counts['encoder'] == expected['encoder']
  assert sum(groups.values()) == expected['decoder_blocks']
  assert sum(count for name, count in counts.items()
             if name.startswith('bias_r')) == expected['bias_xs']
  assert counts['output_gain'] + counts['output_bias'] + counts['output_head'] == (
      expected['gain_bias_out_net'])
  assert sum(counts.values()) == 39_145_700
  assert top_down_options.vdvae_layout(enc, dec) == {'resolutions': (32, 16, 8, 4, 1),
                                             'encoder_blocks': (12, 7, 7, 4, 3),
                                             'decoder_groups': (22, 11, 6, 3, 1)}


@pytest.mark.slow  # traces models of 66 and 78 groups
@pytest.mark.parametrize('variant', ['imagenet32', 'ffhq256'])
def test_vdvaes_other_layouts_load_their_data_and_fit_it(variant, mock_tfds, tmp_path):
  # imagenet32 reads TFDS imagenet_resized/32x32 (its validation split is the test split);
  # ffhq256 reads a folder of 256×256 images. Each layout must fit its images.
  from vae_jax import data, images  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import config_checks
  config = top_down_configs.get_config(variant)
  if variant == 'ffhq256':
    folder = tmp_path / 'ffhq256'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(5):
      images.save_png(str(folder / f'{index:05d}.png'),
                      rng.integers(0, 256, (256, 256, 3)).astype(np.uint8))
    config.data.update(name=str(folder) + '/', test_size=1)
    dataset = data.load_dataset(config.data)
  else:
    assert data.test_split(config.data.name) == 'validation'
    with mock_tfds(num_examples=12):
      dataset = data.load_dataset(config.data)
  side = {'imagenet32': 32, 'ffhq256': 256}[variant]
  assert dataset.data_shape == (side, side, 3)
  config_checks.validate_config_for_data(config, dataset)
  count, shapes = _parameter_count(config, side)
  groups = [name for name in shapes if name.startswith('groups_')]
  assert len(groups) == {'imagenet32': 78, 'ffhq256': 66}[variant]
  assert count == _vdvae_count(variant)['total'] == {'imagenet32': 119_280_868,
                                                     'ffhq256': 114_874_852}[variant]


@pytest.mark.slow  # traces models of 75 and 70 groups, the second at 1024×1024 (shapes only)
@pytest.mark.parametrize('variant,side,total', [('imagenet64', 64, 125_005_860),
                                                ('ffhq1024', 1024, 109_366_904)])
def test_vdvaes_imagenet64_and_ffhq1024_layouts_hold_vdvaes_parameters(variant, side, total):
  # The paper's table rounds to 125M and 115M; VDVAE's own modules (hps.py's ffhq1024 with its
  # custom_width_str and 2 logistics) count 109,366,904 for the second.
  config = top_down_configs.get_config(variant)
  count, shapes = _parameter_count(config, side)
  expected = _vdvae_count(variant)
  assert count == expected['total'] == total
  assert sum(name.startswith('groups_') for name in shapes) == expected['num_decoder_blocks']
  assert shapes['output_head']['kernel'].shape[-1] == (20 if variant == 'ffhq1024' else 100)


def test_padding_and_cropping_are_inverse_and_centred():
  x = np.arange(2 * 28 * 28).reshape(2, 28, 28, 1).astype(np.float32)
  padded = top_down_blocks.pad_images(x, 32)
  assert padded.shape == (2, 32, 32, 1) and float(padded[:, :2].sum()) == 0.0
  np.testing.assert_array_equal(top_down_blocks.crop_images(padded, 28), x)


@pytest.mark.slow  # compiles a 15-group model
def test_a_padded_mnist_model_sees_32_pixels_and_models_the_28_it_was_given():
  config = top_down_configs.get_config('mnist_nvae_small')
  model = models.build_model(config.model, (28, 28, 1))
  x = (np.random.default_rng(0).uniform(size=(2, 28, 28, 1)) > 0.5).astype(np.float32)
  params = model.init(jax.random.key(0), x[:1])
  context = model.apply(params, x, method='encode_context')
  assert context[32].shape == (2, 32, 32, 8) and set(context) == {32, 16, 8, 4}
  terms = model.apply(params, x, jax.random.key(1), method='sample_log_weight_terms')
  assert terms['reconstruction'].shape == (2,) and np.all(np.isfinite(terms['reconstruction']))
  # Bernoulli over 784 pixels: at initialisation each is near 1/2, so about 784 · log 2 nats.
  assert 400 < -float(terms['reconstruction'].mean()) < 1000
  assert model.apply(params, jax.random.key(2), 3, method='generate').shape == (3, 28, 28, 1)
