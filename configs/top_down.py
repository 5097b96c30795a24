r"""Deep top-down hierarchical VAEs (model.family='top_down': vae_jax/models/top_down.py) on
images: binarised MNIST, grey-level 8-bit MNIST, CIFAR-10, ImageNet 32×32 and FFHQ 256×256.

Variants:
  mnist_small      dynamically binarised MNIST, 14-7 on 2×2 patches, 6 groups of 4 channels,
                   width 32 (45k parameters): trains on a CPU.
  mnist            dynamically binarised MNIST at a size for one accelerator: 28-14-7-1,
                   width 64, 23 groups (our layout, not a published one).
  mnist_8bit       grey-level MNIST (the pixels' 256 values), discretised logistic mixture,
                   reported in bits/dim.
  mnist_efficient_vdvae  binarised MNIST after Efficient-VDVAE's baseline (Hazami et al. 2022,
                   egs/binarized_mnist_baseline.cfg: 79.09 nats, negative ELBO): padded to 32,
                   widths 32/64/128/256/512 at 32/16/8/4/1, 23 groups of 32 channels, Adamax,
                   cosine learning rate, EMA; see _EFFICIENT_VDVAE_MNIST_GAPS for what differs.
  mnist_nvae       binarised MNIST after NVAE's MNIST command (Vahdat & Kautz 2020: 78.01 nats,
                   k = 1000): padded to 32, two latent scales 8 and 4 with 10 and 5 groups of
                   20 channels, widths 32/64/128/256; see _NVAE_MNIST_GAPS.
  cifar10          VDVAE's CIFAR-10 model and protocol exactly (openai/vdvae hps `cifar10`,
                   Child 2021: 2.87 bits/dim): see below.
  imagenet32       VDVAE's `imagenet32` layout (width 512, 78 groups).
  imagenet64       VDVAE's `imagenet64` layout (width 512, 75 groups).
  ffhq256          VDVAE's `ffhq256` layout (width 512, 66 groups, the likelihood on 5 bits
                   as VDVAE's); FFHQ is read from a folder of images
                   (data.name='path/to/ffhq256/').
  ffhq1024         VDVAE's `ffhq1024` layout (widths 16/32/64 at 1024/512/256, 512 below;
                   2 logistics per pixel; 69 groups), from a folder of 1024×1024 images.
  cifar10_efficient_vdvae  Efficient-VDVAE's CIFAR-10 baseline layout (47 groups of 32).
  cifar10_small    the CIFAR-10 protocol at a size that takes steps on a CPU (tests, smoke runs).
  mnist_efficient_vdvae_small, mnist_nvae_small   the two MNIST layouts at width 8-16 (CPU).

VDVAE's model (cifar10, imagenet32, imagenet64, ffhq256, ffhq1024), each choice an option of the
family: the layout of its `enc_blocks`/`dec_blocks` strings (top_down_options.vdvae_layout; cifar10:
encoder 12/7/7/4/3 blocks and 22/11/6/3/1 stochastic groups at 32/16/8/4/1, 43 in all, each
residual branch scaled by 1/√43), a learned stream bias at every decoder resolution, 1×1 middle
convolutions at resolutions ≤ 2, the encoder activation taken before each down-sampling block,
the posterior reading the stream before the prior's features join it, scales exp(log σ) with no
floor, PyTorch's default initialisation, its input normalisation, and the output head (gain,
bias, 1×1 conv to a mixture of 10 discretised logistics, scoring a bin of probability below 1e-5
by the density at its midpoint times its width: model.likelihood.small_bins='midpoint_density',
as VDVAE's loss does; the exact bin probability, the default elsewhere, gives a higher
log-likelihood on a sharp model, see docs/results/top_down.md). Protocol: 45k training / 5k
validation images, AdamW (β2 = 0.9, weight decay 0.01, learning rate 2e-4 after 100 warm-up
steps, ε scaled like the loss), batch 16 (VDVAE's per-GPU n_batch; it trained on 32 GPUs... see
docs/results/top_down.md), gradient clipping 200 and skip threshold 400 per dimension, EMA
0.9999 evaluated on validation every 10 epochs, early stopping on it.

Published numbers (`config.paper` records the row each variant reproduces):
  binarised MNIST  NVAE 78.01 nats (k = 1000; Vahdat & Kautz 2020, Table 2); Efficient-VDVAE
                   79.09 nats (negative ELBO; github.com/Rayhane-mamah/Efficient-VDVAE README).
  CIFAR-10         VDVAE 2.87 bits/dim (Child 2021, Table 1; seeds 2.879, 2.842, 2.898,
                   2.864); NVAE 2.91; Efficient-VDVAE 2.87.
  ImageNet 32      VDVAE 3.80 bits/dim.      ImageNet 64   VDVAE 3.52 bits/dim.
  FFHQ 256 (5 bits)   VDVAE 0.61 bits/dim.   FFHQ 1024   VDVAE 2.42 bits/dim.

Run:
  TFDS_DATA_DIR=../shared/tensorflow_datasets \
    python -m experiments.train --config=configs/top_down.py:mnist_small
  python -m experiments.train --config=configs/top_down.py:cifar10   # downloads CIFAR-10
"""

from configs import default
from vae_jax.models import top_down_options

VARIANTS = ('mnist_small', 'mnist', 'mnist_8bit', 'mnist_efficient_vdvae',
            'mnist_efficient_vdvae_small', 'mnist_nvae', 'mnist_nvae_small', 'cifar10',
            'cifar10_small', 'imagenet32', 'imagenet64', 'ffhq256', 'ffhq1024',
            'cifar10_efficient_vdvae')

# openai/vdvae hps.py: enc_blocks, dec_blocks, width, batch per GPU, learning rate, EMA rate,
# gradient clip and skip threshold (per dimension), input shift and scale (data.py).
VDVAE_HPS = {
    'cifar10': ('32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3',
                '1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21', 384, 16, 2e-4, 0.9999, 200.0,
                400.0, 120.63838, 64.16736),
    'imagenet32': ('32x15,32d2,16x9,16d2,8x8,8d2,4x6,4d4,1x6',
                   '1x2,4m1,4x4,8m4,8x9,16m8,16x19,32m16,32x40', 512, 8, 1.5e-4, 0.999, 200.0,
                   300.0, 116.2373, 69.37404),
    'imagenet64': ('64x11,64d2,32x20,32d2,16x9,16d2,8x8,8d2,4x7,4d4,1x5',
                   '1x2,4m1,4x3,8m4,8x7,16m8,16x15,32m16,32x31,64m32,64x12', 512, 4, 1.5e-4,
                   0.999, 220.0, 380.0, 115.92961967, 69.37404),
    'ffhq256': ('256x3,256d2,128x8,128d2,64x12,64d2,32x17,32d2,16x7,16d2,8x5,8d2,4x5,4d4,1x4',
                '1x2,4m1,4x3,8m4,8x4,16m8,16x9,32m16,32x21,64m32,64x13,128m64,128x7,256m128',
                512, 1, 1.5e-4, 0.999, 130.0, 180.0, 112.8666, 69.84780),
    'ffhq1024': ('1024x1,1024d2,512x3,512d2,256x5,256d2,128x7,128d2,64x10,64d2,32x14,32d2,16x7,'
                 '16d2,8x5,8d2,4x5,4d4,1x4',
                 '1x2,4m1,4x3,8m4,8x4,16m8,16x9,32m16,32x20,64m32,64x14,128m64,128x7,256m128,'
                 '256x2,512m256,1024m512', 16, 1, 7e-5, 0.999, 360.0, 500.0, 0.4387 * 255,
                 0.2743 * 255),
}
# What else a layout of hps.py sets: ffhq1024's custom_width_str (widths per resolution, finest
# first; width 16 elsewhere) and num_mixtures; ffhq256's 5-bit likelihood (data.py's low_bit).
VDVAE_LIKELIHOODS = {'ffhq256': dict(num_bits=5), 'ffhq1024': dict(num_components=2)}
VDVAE_WIDTHS = {'ffhq1024': (16, 32, 64, 512, 512, 512, 512, 512, 512, 512)}
# Folders of images, or TFDS names.
VDVAE_DATA = {'ffhq256': 'ffhq256/', 'ffhq1024': 'ffhq1024/',
              'imagenet32': 'imagenet_resized/32x32', 'imagenet64': 'imagenet_resized/64x64'}
# The model choices VDVAE's code makes (vae.py, vae_helpers.py), as model.top_down options.
VDVAE_MODEL = dict(scale_function='exp', min_scale=0.0, encoder_output='before_down_block',
                   pointwise_up_to=2, stream_biases='per_resolution', no_bias_above=64,
                   posterior_input='stream', output_head='gain_bias_conv', init='torch',
                   gelu='erf', bottleneck_ratio=0.25, latent_channels=16)

_EFFICIENT_VDVAE_MNIST_GAPS = """Efficient-VDVAE links every encoder block to its mirrored
decoder block through a 384-channel skip projection (here: one activation per resolution, as in
VDVAE); its input conv is 1×1 (here 3×3); it anneals the KL weight linearly from 1e-4 over 500
steps from step 21 and balances the groups' KLs (NVAE's γ) for 1,000 steps (here: β = 1); its
cosine decay starts at step 5,000 and ends at 1e-4 (here: from step 0 to 0 over the run); L2
weight decay 1e-2 on all parameters (here: the same, as an L2 penalty)."""

_NVAE_MNIST_GAPS = """NVAE's cells (squeeze-and-excitation, batch norm, depthwise 5×5 convs
in the decoder), its residual posterior parameterisation, spectral regularisation (1e-2), KL
balancing and its KL warm-up over 30% of training, preprocessing/postprocessing cells between
32 and 8 (here: plain residual blocks at 32 and 16), and 2 cells per group; the family has
VDVAE's blocks only. Architecture sizes follow NVAE's MNIST command (README): 2 latent scales,
10 groups at the finest (ada_groups: 5 at the next), 20 latent channels, 32 channels doubling
per down-sampling, 400 epochs, batch 200, Adamax 1e-2 cosine to 1e-4, weight decay 3e-4. Its
cells are not residual bottlenecks; the blocks here take a quarter of the width in the middle,
as VDVAE's."""


def get_config(variant: str = 'mnist_small') -> 'ml_collections.ConfigDict':
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r} of configs/top_down.py; choose one of '
                     f'{VARIANTS}.')
  config = default.get_config()
  config.model.family = 'top_down'
  config.optimizer.update(name='adamw', learning_rate=1e-3, b1=0.9, b2=0.9, eps=1e-8,
                          weight_decay=0.01, warmup_steps=100)
  config.evals.images.num_images = 36
  # LLVM at level 2 on XLA:CPU: the step compiles 20-37 % faster and runs as fast (the same
  # bits in our tests; docs/results/speed.md).
  config.cpu_optimization_level = 2
  # One update of all parameters as a vector: some hundred kernels fewer to compile (cifar10's
  # step 25 % faster), the same update.
  config.optimizer.flatten = True
  if variant.startswith('mnist_efficient_vdvae') or variant.startswith('mnist_nvae'):
    _padded_mnist(config, variant)
  elif variant.startswith('mnist'):
    _mnist(config, variant)
  elif variant in VDVAE_HPS or variant == 'cifar10_small':
    _vdvae(config, variant)
  else:
    _cifar10_efficient_vdvae(config)
  return config


def per_dimension(config, num_dims: int, *, clip: float, skip: float, eps: float) -> None:
  """Thresholds and Adam's ε given for a loss in nats per dimension (VDVAE's, Efficient-VDVAE's)
  applied to ours, in nats per image: its gradient is larger by the number of dimensions."""
  config.optimizer.update(grad_clip_norm=clip * num_dims, skip_threshold=skip * num_dims,
                          eps=eps * num_dims)


def _mnist(config, variant: str) -> None:
  config.data.name = 'mnist'
  if variant == 'mnist_8bit':
    config.data.binarization = 'none'
    config.model.likelihood.update(kind='discretized_logistic_mixture', num_components=5)
  else:
    config.data.binarization = 'dynamic'
    config.model.likelihood.kind = 'bernoulli'
  config.batch_size = 100
  config.num_epochs = 100
  per_dimension(config, 28 * 28, clip=200.0, skip=400.0, eps=1e-8 / (28 * 28))
  if variant == 'mnist_small':
    config.model.top_down.update(resolutions=(14, 7), patch_size=2, encoder_blocks=(2, 2),
                                 decoder_groups=(3, 3), width=32, latent_channels=4)
    config.batch_size = 32
    # On XLA:CPU a convolutional step runs about 2x faster fed from the host than inside the
    # device-resident lax.scan (measured on this project's 2-core machine, 2026-11-29).
    config.input_pipeline = 'host'
  else:
    config.model.top_down.update(resolutions=(28, 14, 7, 1), encoder_blocks=(3, 3, 3, 2),
                                 decoder_groups=(6, 8, 6, 3), width=64, latent_channels=8)
    config.num_epochs = 400


def _padded_mnist(config, variant: str) -> None:
  """Binarised MNIST padded to 32×32, the Bernoulli likelihood on the 28×28 crop."""
  config.data.update(name='mnist', binarization='dynamic', validation_size=10_000)
  config.model.likelihood.kind = 'bernoulli'
  small = variant.endswith('_small')
  if variant.startswith('mnist_efficient_vdvae'):
    # egs/binarized_mnist_baseline.cfg: up_strides 2 | 1,2 | 1×9,2 | 1×4,4 | 1×5 (a stride
    # block counted at the resolution it leaves), mirrored down; every block stochastic.
    config.model.top_down.update(
        resolutions=(32, 16, 8, 4, 1), encoder_blocks=(1, 2, 10, 5, 5),
        decoder_groups=(1, 2, 10, 5, 5),
        widths=(8, 8, 16, 16, 16) if small else (32, 64, 128, 256, 512),
        bottleneck_ratio=1.0, latent_channels=4 if small else 32, pointwise_up_to=2,
        scale_function='unit_softplus', min_scale=0.0, padded_size=32,
        encoder_output='before_down_block', stream_biases='per_resolution',
        posterior_input='stream', output_head='gain_bias_conv')
    config.optimizer.update(name='adamax', learning_rate=1e-3, b1=0.9, b2=0.999,
                            weight_decay=1e-2, schedule='cosine', warmup_steps=100,
                            ema_decay=0.9999)
    per_dimension(config, 28 * 28, clip=0.0, skip=800.0, eps=1e-8)
    config.batch_size = 32
    config.num_epochs = 128  # 200,000 steps of 32 over 50,000 images
    config.paper.update(source='Efficient-VDVAE (Hazami et al. 2022), README: binarised MNIST '
                        'negative ELBO 79.09 nats', test_elbo=-79.09)
  else:
    config.model.top_down.update(
        resolutions=(32, 16, 8, 4), encoder_blocks=(2, 2, 10, 5), decoder_groups=(0, 0, 10, 5),
        widths=(8, 8, 16, 16) if small else (32, 64, 128, 256), bottleneck_ratio=0.25,
        latent_channels=4 if small else 20, padded_size=32, stream_biases='per_resolution',
        output_head='gain_bias_conv')
    config.optimizer.update(name='adamax', learning_rate=1e-2, b1=0.9, b2=0.999, eps=1e-8,
                            weight_decay=3e-4, schedule='cosine', warmup_steps=1500,
                            ema_decay=0.9999)
    config.batch_size = 200
    config.num_epochs = 400
    config.paper.update(source='NVAE (Vahdat & Kautz 2020), Table 2: binarised MNIST, k = '
                        '1000', test_log_likelihood=-78.01, num_samples=1000)
  if small:  # a CPU smoke run: an average over 0.9999 of the steps would still be the init
    config.update(batch_size=32, num_epochs=1, input_pipeline='host')
    config.optimizer.ema_decay = 0.0


def _vdvae(config, variant: str) -> None:
  """VDVAE's model and protocol (see the module docstring)."""
  hps = VDVAE_HPS['cifar10' if variant == 'cifar10_small' else variant]
  enc_blocks, dec_blocks, width, batch, lr, ema, clip, skip, shift, scale = hps
  name = variant.removesuffix('_small')
  config.data.update(name=VDVAE_DATA.get(name, name), binarization='none')
  # VDVAE scores a bin of probability below 1e-5 by its midpoint density (vae_helpers.py).
  config.model.likelihood.update({'kind': 'discretized_logistic_mixture', 'num_components': 10,
                                  'small_bins': 'midpoint_density',
                                  **VDVAE_LIKELIHOODS.get(variant, {})})
  config.model.top_down.update(**top_down_options.vdvae_layout(enc_blocks, dec_blocks), width=width,
                               widths=VDVAE_WIDTHS.get(variant, ()), input_mean=shift / 255,
                               input_std=scale / 255, **VDVAE_MODEL)
  side = int(enc_blocks.split('x')[0])
  per_dimension(config, side * side * 3, clip=clip, skip=skip, eps=1e-8)
  config.optimizer.update(name='adamw', learning_rate=lr, b1=0.9, b2=0.9, weight_decay=0.01,
                          warmup_steps=100, ema_decay=ema)
  config.batch_size = batch
  config.eval_batch_size = 100
  config.num_epochs = 10_000  # VDVAE's default; early stopping ends it
  if variant in ('cifar10', 'cifar10_small'):
    config.data.validation_size = 5_000  # VDVAE: 45k / 5k
    config.eval_every_epochs = 10
    config.early_stopping.update(metric='validation/elbo', mode='max', patience_epochs=100)
    config.paper.update(source='VDVAE (Child 2021), Table 1: 2.87 bits/dim',
                        test_log_likelihood=None)
  if variant == 'cifar10_small':
    config.model.top_down.update(resolutions=(32, 16, 8), encoder_blocks=(1, 1, 1),
                                 decoder_groups=(1, 1, 1), width=16, latent_channels=4)
    config.data.validation_size = 0
    config.early_stopping.metric = ''
    config.update(batch_size=8, num_epochs=1, eval_every_epochs=1)


def _cifar10_efficient_vdvae(config) -> None:
  """egs/cifar10_baseline.cfg of Efficient-VDVAE: VDVAE's encoder, 47 decoder groups of 32
  channels (3/4/7/11/22 at 1/4/8/16/32), unit-softplus scales, Adamax with a cosine learning
  rate, 800k steps of 32 (its per-block skip connections are one activation per resolution
  here, as in VDVAE)."""
  _vdvae(config, 'cifar10')
  config.model.likelihood.small_bins = 'exact'  # VDVAE's convention, not checked in its code
  config.model.top_down.update(decoder_groups=(22, 11, 7, 4, 3), latent_channels=32,
                               scale_function='unit_softplus', init='lecun_normal')
  per_dimension(config, 32 * 32 * 3, clip=0.0, skip=800.0, eps=1e-8)
  config.optimizer.update(name='adamax', learning_rate=1e-3, b2=0.999, weight_decay=1e-2,
                          schedule='cosine', ema_decay=0.9999)
  config.batch_size = 32
  config.num_epochs = 570  # 800,000 steps of 32 over 45,000 images
  config.early_stopping.metric = ''
  config.paper.update(source='Efficient-VDVAE (Hazami et al. 2022): CIFAR-10 2.87 bits/dim')
