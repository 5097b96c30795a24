r"""Quickstart: scikit-learn's bundled 8x8 handwritten digits, no download; about a minute on
2 CPU cores.

  python -m experiments.train --config=configs/quickstart.py --workdir=/tmp/quickstart

1,797 real 8x8 digits (UCI optdigits) ship inside scikit-learn; 297 are held out as the test
set. Dynamically binarised, a small MLP VAE with a Bernoulli decoder.
"""

from configs import default


def get_config(variant: str = '') -> 'ml_collections.ConfigDict':
  del variant  # one variant only
  config = default.get_config()
  config.data.name = 'digits'
  config.data.test_size = 297
  config.data.binarization = 'dynamic'
  config.model.latent_dim = 8
  config.model.encoder.hidden_sizes = (128, 128)
  config.model.decoder.hidden_sizes = (128, 128)
  config.batch_size = 50
  config.num_epochs = 1000
  config.eval_every_epochs = 100
  config.eval_batch_size = 297
  config.log_every_steps = 1500
  config.checkpoint_every_steps = 3000
  return config
