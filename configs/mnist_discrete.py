r"""Discrete latent variables on dynamically binarised MNIST.

Variants (encoder 784-512-256 and mirrored decoder, relu, Bernoulli p(x|z), uniform prior):
  categorical_k10, categorical_k20, categorical_k50
      one categorical z with K values: p(x) = (1/K) Σ_k p(x|z=k) is a mixture of K learned
      images, summed exactly; its values cluster the digits (accuracy and purity reported).
      Trained on the exact log p(x) (objective.kind=marginal), the encoder fitted to the exact
      posterior.
  categorical_k10_elbo
      the same model trained on the (exact) ELBO instead: on MNIST q(z|x) turns one-hot early
      and a poor assignment of images to values is never revised (log p(x) -202.8 against
      -166.9) — kept to show it (docs/results/discrete.md).
  binary_d10      10 binary units: 1,024 values of z, summed exactly in every step (marginal).
  gumbel_softmax_d30_k10, straight_through_d30_k10, score_function_d30_k10
      30 categoricals of 10 values (10^30 values, too many to sum; Jang et al. 2017's setup):
      Gumbel-softmax (temperature annealed from 1 to 0.5), its straight-through variant, or
      REINFORCE with a leave-one-out baseline over 5 samples.
  gaussian_d30    the continuous model to compare with: 30 Gaussian latents, N(0, I) prior, the
      same networks, the reparameterised ELBO.

  python -m experiments.train --config=configs/mnist_discrete.py:categorical_k10 --workdir=/tmp/k10
  python -m experiments.evaluate --workdir=/tmp/k10   # exact log p(x), posterior, clusters

The exact variants sum over every z in each step (no sampling, no gradient variance): the
marginal ones train log p(x) itself, categorical_k10_elbo the ELBO with its expectation over
q(z|x) summed. Their evaluation reports the exact log p(x), the ELBO and the gap
log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)).
"""

from configs import default

VARIANTS = ('categorical_k10', 'categorical_k20', 'categorical_k50', 'categorical_k10_elbo',
            'binary_d10',
            'gumbel_softmax_d30_k10', 'straight_through_d30_k10', 'score_function_d30_k10',
            'gaussian_d30')


def get_config(variant: str = 'categorical_k10') -> 'ml_collections.ConfigDict':
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r} of configs/mnist_discrete.py; choose one of '
                     f'{VARIANTS}.')
  config = default.get_config()
  config.data.update(name='mnist', binarization='dynamic')
  config.model.latent_kind = 'categorical'
  config.model.prior.kind = 'uniform'
  config.model.encoder.update(kind='mlp', hidden_sizes=(512, 256), activation='relu')
  config.model.decoder.update(kind='mlp', hidden_sizes=(256, 512), activation='relu')
  config.model.likelihood.kind = 'bernoulli'
  if variant.startswith('categorical'):
    num_categories = int(variant.removeprefix('categorical_k').removesuffix('_elbo'))
    config.model.latent_dim, config.model.num_categories = 1, num_categories
    config.objective.update(gradient_estimator='exact',
                            kind='elbo' if variant.endswith('_elbo') else 'marginal')
  elif variant == 'gaussian_d30':
    config.model.update(latent_kind='gaussian', latent_dim=30)
    config.model.prior.kind = 'standard_normal'
  elif variant == 'binary_d10':
    config.model.latent_dim, config.model.num_categories = 10, 2
    config.objective.update(gradient_estimator='exact', kind='marginal')
  else:
    config.model.latent_dim, config.model.num_categories = 30, 10
    config.objective.gradient_estimator = variant.removesuffix('_d30_k10')
    config.objective.temperature.update(initial=1.0, minimum=0.5, anneal_rate=3e-5)
    if variant.startswith('score_function'):
      config.objective.num_samples = 5
  config.batch_size = 100
  config.num_epochs = 20
  config.eval_every_epochs = 2
  config.log_every_steps = 600
  config.checkpoint_every_steps = 3000
  return config
