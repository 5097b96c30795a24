r"""Kingma & Welling (2013), "Auto-Encoding Variational Bayes", section 5: MNIST and Frey Face
with several latent sizes.

Variants: `mnist_z{3,5,10,20,200}` (500 tanh hidden units, Bernoulli decoder) and
`frey_z{2,5,10,20}` (200 tanh hidden units, Gaussian decoder with sigmoid mean and per-pixel
variance). One hidden layer in encoder and decoder; Adagrad (global step size 0.02, from the
paper's grid {0.01, 0.02, 0.1}), minibatches of 100, one sample of z per example, weight decay
1/N_train (the per-example share of the paper's N(0, I) prior on the weights), weights
initialised from N(0, 0.01²). The paper trains up to 10^8 training samples (1,667 MNIST epochs)
and reports its results only as curves (Figure 2), not as numbers; `paper` is left empty.

  python -m experiments.train --config=configs/kingma_welling.py:mnist_z20 --workdir=/tmp/kw20
  python -m experiments.train --config=configs/kingma_welling.py:frey_z10 --workdir=/tmp/kwf10 \
    --config.data.path=/path/to/frey_rawface.mat

The paper does not say how MNIST was binarised; dynamic binarisation is used here. "N(0, 0.01)"
is read as a standard deviation of 0.01.
"""

from configs import default

MNIST_LATENTS = (3, 5, 10, 20, 200)
FREY_LATENTS = (2, 5, 10, 20)
VARIANTS = (*(f'mnist_z{z}' for z in MNIST_LATENTS), *(f'frey_z{z}' for z in FREY_LATENTS))


def get_config(variant: str = 'mnist_z20') -> 'ml_collections.ConfigDict':
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r} of configs/kingma_welling.py; choose one of '
                     f'{VARIANTS}.')
  dataset, latent = variant.split('_z')
  config = default.get_config()
  config.model.latent_dim = int(latent)
  config.model.kernel_init = 'normal_0.01'
  hidden = 500 if dataset == 'mnist' else 200
  for part in (config.model.encoder, config.model.decoder):
    part.update(kind='mlp', hidden_sizes=(hidden,), activation='tanh')
  if dataset == 'mnist':
    config.data.update(name='mnist', binarization='dynamic')
    config.model.likelihood.kind = 'bernoulli'
    num_train, config.num_epochs = 60_000, 1667  # 10^8 training samples
  else:
    config.data.update(name='frey_face', binarization='none', test_size=200)
    config.model.likelihood.update(kind='gaussian', scale='decoded', mean_activation='sigmoid')
    num_train, config.num_epochs = 1765, 5000
  config.optimizer.update(name='adagrad', learning_rate=0.02, eps=1e-8, weight_decay=1 / num_train)
  config.batch_size = 100
  config.eval_every_epochs = 10 if dataset == 'mnist' else 100
  config.log_every_steps = 600 if dataset == 'mnist' else 170
  config.checkpoint_every_steps = 6000 if dataset == 'mnist' else 1700
  config.paper.source = 'Kingma & Welling 2013, Figure 2 (curves only)'
  return config
