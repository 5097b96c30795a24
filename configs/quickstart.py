r"""Quickstart: scikit-learn's bundled 8x8 handwritten digits, no download; 20 to 40 s on
2 CPU cores.

  python -m experiments.train --config=configs/quickstart.py --workdir=/tmp/quickstart

1,797 real 8x8 digits (UCI optdigits) ship inside scikit-learn; 297 are held out as the test
set. Dynamically binarised, a small MLP VAE with a Bernoulli decoder.
"""

from configs import default


def get_config(variant: str = '') -> 'ml_collections.ConfigDict':
  if variant:
    raise ValueError(f'Unknown variant {variant!r} of configs/quickstart.py: it has none (drop '
                     'the ":...").')
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


def get_sweep(name: str = 'seeds') -> list[dict]:
  """Override lists for experiments.sweep: `seeds` (4 seeds in one vectorised program) or
  `lr` (3 learning rates)."""
  if name == 'seeds':
    return [{'seed': seed} for seed in range(4)]
  if name == 'lr':
    return [{'optimizer.learning_rate': lr} for lr in (3e-4, 1e-3, 3e-3)]
  raise ValueError(f'Unknown sweep {name!r} of configs/quickstart.py; choose seeds or lr.')
