r"""Tomczak & Welling (2018), "VAE with a VampPrior": the one-layer VAE on dynamically binarised
MNIST, standard prior against VampPrior (and a mixture-of-Gaussians prior).

Variants: `standard`, `vamp` (500 pseudo-inputs), `mog` (500 learned Gaussians).
Architecture and protocol as in the authors' code (github.com/jmtomczak/vae_vampprior):
encoder 784 - 300 - 300 - z(40) and decoder 40 - 300 - 300 - 784 with gated linear units
(h·sigmoid(g)), He initialisation, Adam at 5e-4, batch 100, KL warm-up over 100 epochs, at most
2,000 epochs, 10,000 training images held out for validation (validation and test binarised
once), test log-likelihood by importance sampling with 5,000 samples.

  python -m experiments.train --config=configs/vampprior.py:vamp --workdir=/tmp/vamp
  python -m experiments.evaluate --workdir=/tmp/vamp

Differences: the authors stop early on the validation loss (50 epochs of patience) and
normalise each gradient tensor before Adam; here training runs for num_epochs and the last
checkpoint is evaluated, with plain Adam. Their posterior log-variance is clipped to [-6, 2];
here the standard deviation is softplus(·) + 1e-4. The paper's numbers were not available
offline when this config was written, so `paper` is left empty rather than filled from memory.
"""

from configs import default

VARIANTS = ('standard', 'vamp', 'mog')


def get_config(variant: str = 'vamp') -> 'ml_collections.ConfigDict':
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r} of configs/vampprior.py; choose one of '
                     f'{VARIANTS}.')
  config = default.get_config()
  config.data.name = 'mnist'
  config.data.binarization = 'dynamic'
  config.data.validation_size = 10_000
  config.model.latent_dim = 40
  config.model.kernel_init = 'he_normal'
  for part in (config.model.encoder, config.model.decoder):
    part.update(kind='mlp', hidden_sizes=(300, 300), activation='gated')
  config.model.likelihood.kind = 'bernoulli'
  config.model.prior.update(
      kind={'standard': 'standard_normal', 'vamp': 'vamp', 'mog': 'mixture'}[variant],
      num_components=500, pseudo_input_mean=0.05, pseudo_input_std=0.01)
  config.objective.update(kind='elbo', num_samples=1, kl_warmup_epochs=100)
  config.optimizer.update(name='adam', learning_rate=5e-4, eps=1e-8)
  config.batch_size = 100
  config.num_epochs = 2000
  config.eval_every_epochs = 10
  config.log_every_steps = 500  # one epoch
  config.checkpoint_every_steps = 5000
  config.paper.source = 'Tomczak & Welling 2018 (value not available offline)'
  return config
