"""Every key a run reads, with its default. Other configs start from this one and override.

Sizes are tuples (ml_collections overrides them as `--config.model.encoder.hidden_sizes='(400, 400)'`).
Values are in nats per example unless named otherwise.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # every random stream of the run (init, data order, noise) derives from it

  config.data = ml_collections.ConfigDict()
  config.data.name = 'mnist'  # a TFDS image dataset, or 'digits' / 'frey_face'
  config.data.tfds_data_dir = ''  # '' -> $TFDS_DATA_DIR -> ~/tensorflow_datasets
  config.data.download = True  # prepare a missing TFDS dataset (needs TensorFlow and internet)
  config.data.path = ''  # the data file, for datasets read from one (frey_face)
  config.data.binarization = 'dynamic'  # 'dynamic' | 'static' | 'none'
  config.data.binarization_seed = 0  # static binarisation, and eval splits under 'dynamic'
  config.data.validation_size = 0  # examples carved from the end of train for validation
  config.data.test_size = 0  # test examples, for datasets without a test split (digits, frey_face)
  config.data.split_seed = 0  # the train/test split of those datasets

  config.model = ml_collections.ConfigDict()
  # The model family (vae_jax/models/): a registered name, or 'auto': 'discrete' for
  # categorical latents, 'hierarchical' with upper_layers, else 'vae'.
  config.model.family = 'auto'
  config.model.latent_kind = 'gaussian'  # 'gaussian' | 'categorical'
  config.model.latent_dim = 50  # Gaussian units, or categorical variables D
  config.model.num_categories = 2  # categorical: values per variable K (2: binary units)
  config.model.max_enumeration = 4096  # categorical: sum over z exactly when K^D <= this
  config.model.kernel_init = 'lecun_normal'  # weights: also 'glorot_uniform', 'he_normal', 'normal_0.01'
  # 'bfloat16': networks compute in bfloat16 (for accelerators); parameters, posterior and
  # likelihood parameters, and the loss stay float32.
  config.model.compute_dtype = 'float32'
  config.model.encoder = ml_collections.ConfigDict(dict(
      kind='mlp',  # 'mlp' | 'conv'
      hidden_sizes=(200, 200),  # dense layers (after the convolutions, for 'conv')
      activation='tanh',  # tanh, relu, elu, gelu, softplus, swish, leaky_relu, or 'gated'
      conv_channels=(32, 64),  # strided 3x3 convolutions, each halving H and W ('conv')
      min_scale=1e-4,  # floor of the posterior standard deviation
      # (low, high): log σ² = clip(·, low, high) instead (VampPrior code: (-6, 2)); (): softplus
      log_variance_range=(),
      # Inverse-autoregressive-flow steps on top of the Gaussian q(z|x) (Kingma et al. 2016;
      # vae_jax/flows.py); 0: the Gaussian itself. Gaussian latents, any prior but 'vamp'.
      flow_steps=0,
      flow_hidden_size=200,  # hidden units of each step's MADE
  ))
  config.model.decoder = ml_collections.ConfigDict(dict(
      kind='mlp',  # 'mlp' | 'conv'
      hidden_sizes=(200, 200),  # dense layers (before the transposed convolutions, for 'conv')
      activation='tanh',  # as for the encoder
      conv_channels=(64, 32),  # transposed convolutions, coarse to fine, each doubling H and W
  ))
  config.model.upper_layers = ml_collections.ConfigDict(dict(
      # Stochastic layers above the first (Burda et al.'s two-layer models): h2, h3, ... sizes.
      # Empty: a one-layer VAE. Both q(h_l|h_l-1) and p(h_l-1|h_l) are MLPs of hidden_sizes.
      latent_dims=(),
      hidden_sizes=(100, 100),  # dense layers of every q(h_l|h_l-1) and p(h_l-1|h_l)
      activation='tanh',  # their activation
  ))
  config.model.top_down = ml_collections.ConfigDict(dict(
      # model.family='top_down' (vae_jax/models/top_down.py): a bottom-up ResNet encoder and a
      # top-down decoder of stochastic groups, at each of these resolutions (finest first; the
      # first is the image size, each next one divides the one before).
      resolutions=(28, 14, 7),
      encoder_blocks=(2, 2, 2),  # residual blocks per resolution in the encoder
      decoder_groups=(2, 2, 2),  # stochastic groups per resolution in the decoder
      width=32,  # channels of the residual streams
      bottleneck_ratio=0.25,  # a residual block's middle channels: width × this
      latent_channels=4,  # channels of each group's z, per position
      min_scale=1e-3,  # floor of every prior and posterior standard deviation
      patch_size=1,  # p: the network sees p×p pixel patches (a 28×28 image as 14×14 for p = 2)
      remat=False,  # recompute each block's activations in the backward pass (less memory)
  ))
  config.model.prior = ml_collections.ConfigDict(dict(
      # gaussian latents: 'standard_normal' | 'learned_gaussian' | 'mixture' | 'vamp';
      # categorical latents: 'uniform' | 'learned_categorical'
      kind='standard_normal',
      num_components=500,  # mixture: Gaussians; vamp: pseudo-inputs
      pseudo_input_mean=0.05,  # vamp: pseudo-inputs start as N(mean, std^2) pixels
      pseudo_input_std=0.01,  # vamp: see pseudo_input_mean
  ))
  config.model.likelihood = ml_collections.ConfigDict(dict(
      # 'bernoulli' (binary pixels) | 'gaussian' | 8-bit pixels: 'discretized_logistic' |
      # 'discretized_logistic_mixture' (PixelCNN++ / VDVAE)
      kind='bernoulli',
      # bernoulli, MLP decoder: 'zeros', or 'data_mean_logit': the output bias starts at the
      # logit of the mean training image (Burda et al.'s IWAE code)
      output_bias_init='zeros',
      scale='decoded',  # gaussian: 'decoded' (per pixel, from z) | 'learned' | 'fixed'
      fixed_scale=1.0,  # gaussian, scale='fixed'
      min_scale=1e-3,  # gaussian: floor of the learned or decoded scale
      mean_activation='sigmoid',  # gaussian: 'sigmoid' (data in [0, 1]) | 'identity'
      num_components=10,  # discretized_logistic_mixture: logistics per pixel (VDVAE: 10)
  ))

  config.objective = ml_collections.ConfigDict(dict(
      # 'elbo' (k-sample VAE objective) | 'iwae' (k-sample importance-weighted) | 'marginal'
      # (exact log p(x), an enumerable discrete z; encoder fitted to the exact posterior)
      kind='elbo',
      num_samples=1,  # k: samples of z per example in the training objective
      beta=1.0,  # weight of the KL term in the training loss (the reported ELBO is unweighted)
      kl_warmup_epochs=0,  # beta rises linearly from 0 over this many epochs (0: off)
      analytic_kl=True,  # closed-form KL when one exists, else Monte-Carlo
      # How gradients pass through z: 'reparameterized' (Gaussian latents); for categorical
      # latents 'exact' (sum over all z), 'gumbel_softmax', 'straight_through' or
      # 'score_function' (leave-one-out baseline, num_samples >= 2). 'auto': reparameterized
      # for Gaussian latents; exact if enumerable, else gumbel_softmax, for categorical ones.
      gradient_estimator='auto',
      # Gumbel-softmax temperature: max(minimum, initial * exp(-anneal_rate * step)).
      temperature=ml_collections.ConfigDict(dict(
          initial=1.0,  # temperature at step 0
          minimum=0.5,  # never annealed below this
          anneal_rate=3e-5,  # per step, in the exponent
      )),
  ))

  config.optimizer = ml_collections.ConfigDict(dict(
      name='adam',  # 'adam' | 'adamw' | 'adamax' | 'adagrad'
      learning_rate=1e-3,  # the peak learning rate, scaled by the schedule
      schedule='constant',  # 'constant' | 'iwae' (3^i epochs at lr * 10^(-i/7), i = 0..7)
      b1=0.9,  # adam, adamw: first-moment decay
      b2=0.999,  # adam, adamw: second-moment decay
      eps=1e-4,  # as in the IWAE paper
      weight_decay=0.0,  # adamw: decoupled; adam, adagrad: an L2 penalty on the gradient
      grad_clip_norm=0.0,  # 0 disables clipping
      # Divide each gradient tensor by its L2 norm before the optimizer (VampPrior's AdamNormGrad)
      normalize_gradients=False,
      warmup_steps=0,  # the learning rate rises linearly from 0 over these steps (0: none)
      # Skip (and count) every update whose gradient norm exceeds this, as VDVAE does against
      # rare huge gradients; 0: skip only non-finite ones.
      skip_threshold=0.0,
      # Evaluate and sample with an exponential moving average of the parameters, kept in the
      # optimizer state (VDVAE: 0.9999); 0: the parameters themselves.
      ema_decay=0.0,
  ))

  config.batch_size = 100  # per step, over all devices (each gets batch_size / device count)
  config.num_epochs = 10  # passes over the training split (the remainder batch is dropped)
  # 'device': the training split lives on the accelerator and steps_per_call steps run in one
  # compiled lax.scan; 'host': the host holds the split and feeds every batch (for data too
  # large for the device); 'grain': grain streams the batches from the records on disk (for
  # data too large for host memory; vae_jax/streaming.py; it draws its own batch order).
  config.input_pipeline = 'device'
  config.steps_per_call = 100  # 'device': steps per compiled call (single steps up to log/eval points)
  # A group of runs (experiments.sweep) runs in one compiled program, its runs either vmapped
  # ('vmap': batched matrix products; fastest on accelerators) or looped ('map': lax.map, one
  # run after another inside the program); 'auto' compiles both, times one training call of
  # each when the group starts, trains with the faster and logs the choice. Results agree up
  # to float rounding.
  config.sweep_execution = 'auto'
  # 'grain': how the records are read ahead of the step (none of these change the batches).
  config.streaming = ml_collections.ConfigDict(dict(
      read_threads=4,  # threads reading and decoding records
      prefetch_batches=8,  # batches read ahead
      worker_processes=0,  # >0: that many processes read instead (for costly decoding)
  ))
  config.eval_every_epochs = 1  # config.evals marked during_training, and a checkpoint
  config.eval_batch_size = 1000  # examples per evaluation batch (does not change the results)
  config.log_every_steps = 100  # training metrics (means since the last log) and progress
  config.checkpoint_every_steps = 1000  # also at every evaluation and at the end
  config.checkpoints_to_keep = 3  # the latest ones; older checkpoints are deleted
  # Early stopping (vae_jax/early_stopping.py): the run stops at the first evaluation at which
  # more than patience_epochs epochs have passed since its best one (or since start_epoch, if
  # later); the best evaluation's checkpoint is kept in WORKDIR/checkpoints_best/, apart from
  # the latest ones, and experiments.evaluate evaluates it. num_epochs stays the upper limit.
  config.early_stopping = ml_collections.ConfigDict(dict(
      metric='',  # '<split>/<name>' of an evaluation during training, e.g. 'validation/elbo'; '': off
      mode='max',  # 'max' | 'min': the better direction of the metric
      patience_epochs=50,  # epochs without improvement before stopping
      start_epoch=0,  # patience is spent only after this epoch (e.g. the KL warm-up's end)
      min_delta=0.0,  # an improvement must exceed this
  ))
  # Updates with a non-finite loss or gradient are skipped and counted; this many in a row stop
  # the run with an error (the last checkpoint stays the last good state).
  config.max_consecutive_nonfinite_steps = 20
  # The run stops with an error (before checkpointing) once its mean training loss since the
  # last log, or its negative test ELBO, exceeds the loss at step 0, L0, by this many times
  # max(|L0|, 1): a diverged run is reported, not finished with exit code 0. 0: never.
  config.divergence_factor = 10.0

  # Evaluators by name (vae_jax/evaluators/), with their options. Those with
  # during_training=True run on the validation and test splits at every evaluation of the
  # training loop; `python -m experiments.evaluate` runs all of them on a chosen checkpoint.
  config.evals = ml_collections.ConfigDict()
  config.evals.elbo = ml_collections.ConfigDict(dict(
      during_training=True,  # at every evaluation of the training loop (else evaluate only)
      num_samples=1,  # samples of z per example in the evaluation ELBO
  ))
  config.evals.active_units = ml_collections.ConfigDict(dict(
      during_training=True,  # and the closed-form KL of each unit
  ))
  config.evals.exact = ml_collections.ConfigDict(dict(
      during_training=True,  # exact log p(x), ELBO, posterior gap: small discrete z only
  ))
  config.evals.images = ml_collections.ConfigDict(dict(
      during_training=True,  # PNG files under WORKDIR/images/, and TensorBoard images
      num_images=64,  # tiles in the sample and reconstruction grids (0: none)
      splits=('test',),  # the splits whose reconstructions are drawn during training
  ))
  config.evals.importance_sampled = ml_collections.ConfigDict(dict(
      during_training=False,  # minutes per split at K = 5000: experiments.evaluate
      num_samples=5000,  # K: importance samples per example (Burda et al. use 5000)
      chunk_size=100,  # samples drawn at a time (memory: chunk_size × eval_batch_size draws)
      num_repeats=2,  # independent seeds: the Monte-Carlo error is measured across them
  ))
  # log p(x) by annealed importance sampling with HMC (Wu et al. 2017), continuous z; run by
  # experiments.evaluate only when named (--evals=ais): its cost is set by the options below.
  config.evals.ais = ml_collections.ConfigDict(dict(
      during_training=False,
      by_default=False,  # experiments.evaluate runs it only when --evals names it
      num_steps=400,  # intermediate distributions (a sigmoidal schedule of β)
      num_chains=16,  # chains per example; the estimate is their log-mean-exp
      leapfrog_steps=2,  # per HMC transition
      step_size=0.05,  # initial; each chain adapts it towards acceptance 0.65
      # The path starts at q(z|x) ('posterior'), p(z) ('prior'), or their even mixture
      # ('mixture': half the chains from each), which finds posterior modes q misses; with many
      # latent units 'posterior' spends the budget better (docs/results.md).
      initial='mixture',
  ))
  # Bidirectional Monte Carlo (Grosse et al. 2015): AIS (evals.ais settings) forward and in
  # reverse on data simulated from the model; the gap bounds the AIS error there.
  config.evals.bdmc = ml_collections.ConfigDict(dict(
      during_training=False,
      by_default=False,
      num_simulated=100,  # examples drawn from the model
  ))
  # Exact log p(x) by quadrature over z, for the one-layer family with 1 or 2 latent units.
  config.evals.quadrature = ml_collections.ConfigDict(dict(
      during_training=False,
      points_per_dim=256,  # of the first grid; each refinement doubles it
      max_refinements=3,
      tolerance=0.01,  # nats: refinement stops once no example moves by more
      posterior_widths=10.0,  # the box holds each posterior mean ± this many q standard deviations
      batch_size=10_000,  # examples per pass over the grid (memory: this × 4096 floats)
  ))
  config.evals.linear_probe = ml_collections.ConfigDict(dict(
      during_training=False,  # logistic regression from posterior means to labels
      train_examples=10_000,  # training images the probe is fitted on (0: no probe)
  ))

  # The published result this config reproduces, shown beside ours by scripts/results_table.py.
  config.paper = ml_collections.ConfigDict(dict(
      source='',  # e.g. 'Burda et al. 2015, Table 1'
      test_log_likelihood=config_dict.placeholder(float),  # nats (negative: -NLL)
      active_units=config_dict.placeholder(str),  # as printed, e.g. '19' or '16+5'
      # The data the published number is on: 'dynamic', or 'static' (the fixed binarisation of
      # Larochelle & Murray, not available here: a measured row cannot match it exactly).
      binarization=config_dict.placeholder(str),
      num_samples=config_dict.placeholder(int),  # k of the published importance-sampled log p(x)
  ))
  return config
