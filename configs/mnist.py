r"""MNIST, dynamically binarised: the IWAE paper's one-stochastic-layer architecture.

Burda, Grosse & Salakhutdinov (2015), "Importance Weighted Autoencoders", section 5: encoder
784-200-200-50 and decoder 50-200-200-784, tanh, Gaussian q(z|x), Bernoulli p(x|z), N(0, I)
prior, Adam (ε = 1e-4). Batch 100 and a constant learning rate 1e-3 here; the paper's full
schedule comes with the paper configs.

Run (real MNIST, prepared TFDS data dir):
  TFDS_DATA_DIR=../shared/tensorflow_datasets \
    python -m experiments.train --config=configs/mnist.py --workdir=/tmp/mnist

Variants: `configs/mnist.py:conv` (convolutional encoder and decoder); `configs/mnist.py:latent2d`
(two latent units, 100 epochs: small enough that log p(x) is exact by quadrature over z, the
oracle the estimators of experiments.evaluate are measured against;
docs/results/log_likelihood_estimators.md).
Sweeps (experiments.sweep): `seeds` (4 seeds), `lr_beta` (3 learning rates x 2 values of β,
vectorised in one program), `latent_dim` (3 sizes: 3 groups, shapes differ).

Measured on 2 CPU cores (docs/results/mnist.md): test ELBO -162.3 nats after 1 epoch, -115.3
after 5, -106.9 after 10; about 2.3 s per epoch, 34 s for the whole command.
"""

from configs import default


def get_config(variant: str = '') -> 'ml_collections.ConfigDict':
  config = default.get_config()
  config.data.name = 'mnist'
  config.data.binarization = 'dynamic'
  config.model.latent_dim = 50
  config.model.encoder.hidden_sizes = (200, 200)
  config.model.decoder.hidden_sizes = (200, 200)
  config.model.encoder.activation = config.model.decoder.activation = 'tanh'
  config.model.likelihood.kind = 'bernoulli'
  config.batch_size = 100
  config.num_epochs = 10
  if variant == 'conv':
    config.model.encoder.update(kind='conv', conv_channels=(32, 64), hidden_sizes=(256,),
                                activation='relu')
    config.model.decoder.update(kind='conv', conv_channels=(64, 32), hidden_sizes=(256,),
                                activation='relu')
  elif variant == 'latent2d':
    config.model.latent_dim = 2
    config.num_epochs = 100
  elif variant:
    raise ValueError(f'Unknown variant {variant!r} of configs/mnist.py; choose conv, latent2d '
                     'or none.')
  return config


def get_sweep(name: str = 'seeds') -> list[dict]:
  """Override lists for experiments.sweep."""
  if name == 'seeds':
    return [{'seed': seed} for seed in range(4)]
  if name == 'lr_beta':
    return [{'optimizer.learning_rate': lr, 'objective.beta': beta}
            for lr in (3e-4, 1e-3, 3e-3) for beta in (0.5, 1.0)]
  if name == 'latent_dim':
    return [{'model.latent_dim': size} for size in (10, 20, 50)]
  raise ValueError(f'Unknown sweep {name!r} of configs/mnist.py; choose seeds, lr_beta or '
                   'latent_dim.')
