r"""Frey Face with a Gaussian decoder, after Kingma & Welling (2013), "Auto-Encoding
Variational Bayes", section 5: one hidden layer of 200 units in encoder and decoder, a small
latent space, a Gaussian p(x|z) whose mean and per-pixel variance the decoder outputs.

The data is not bundled: download frey_rawface.mat (https://cs.nyu.edu/~roweis/data/) and
  python -m experiments.train --config=configs/frey_face.py --workdir=/tmp/frey \
    --config.data.path=/path/to/frey_rawface.mat

The paper does not state a test split; 200 of the 1,965 faces are held out (fixed seed).
K&W used Adagrad and small minibatches; Adam at 1e-3 with batch 100 trains in minutes here.
"""

from configs import default


def get_config(variant: str = '') -> 'ml_collections.ConfigDict':
  config = default.get_config()
  config.data.name = 'frey_face'
  config.data.binarization = 'none'
  config.data.test_size = 200
  config.model.latent_dim = 2 if variant == 'latent2' else 10
  config.model.encoder.hidden_sizes = (200,)
  config.model.decoder.hidden_sizes = (200,)
  config.model.encoder.activation = config.model.decoder.activation = 'tanh'
  config.model.likelihood.update(kind='gaussian', scale='decoded', mean_activation='sigmoid')
  config.batch_size = 100
  config.num_epochs = 1000
  config.eval_every_epochs = 50
  config.log_every_steps = 170
  config.checkpoint_every_steps = 1700
  if variant not in ('', 'latent2'):
    raise ValueError(f'Unknown variant {variant!r} of configs/frey_face.py; choose latent2 or none.')
  return config
