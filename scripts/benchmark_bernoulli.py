r"""Benchmarks ways of computing a Bernoulli log-likelihood over 28×28×1 pixels, inside the
importance-sampling evaluation of the 784-200-200-50 MLP VAE (its hot loop).

  python -m scripts.benchmark_bernoulli [--num_examples=400] [--num_samples=200]

Prints one JSON line per variant: importance samples per second (median of --repeats) and the
ratio to vae_jax's own implementation, measured in one run. The variants:
  vae_jax         x·l − softplus(l), softplus = max(l, 0) + log1p(e^−|l|), on flattened pixels
  optax_bce       −optax.sigmoid_binary_cross_entropy(l, x) summed over (28, 28, 1)
  logaddexp       x·l − logaddexp(0, l) summed over (28, 28, 1)
  vae_jax_unflat  vae_jax's formula summed over (28, 28, 1) without flattening first
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from configs import mnist
from vae_jax import distributions, models
from vae_jax.evaluators import batched, importance_sampling

_NUM_EXAMPLES = flags.DEFINE_integer('num_examples', 400, 'Test images per measurement.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 200, 'Importance samples per image.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Measurements per variant (the median is kept).')

VARIANTS = {
    'vae_jax': distributions.Bernoulli.log_prob,
    'optax_bce': lambda self, x: distributions.sum_event(
        -optax.sigmoid_binary_cross_entropy(self.logits, x), self.event_ndims),
    'logaddexp': lambda self, x: distributions.sum_event(
        x * self.logits - jnp.logaddexp(0.0, self.logits), self.event_ndims),
    'vae_jax_unflat': lambda self, x: distributions.sum_event(
        x * self.logits - distributions.softplus(self.logits), self.event_ndims),
}


def samples_per_second(model, params, images) -> float:
  fn = importance_sampling.make_importance_sampling_fn(model, num_samples=_NUM_SAMPLES.value, chunk_size=50)
  batched.map_examples(fn, params, images[:100], batch_size=100, rng=jax.random.key(0))
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    batched.map_examples(fn, params, images, batch_size=100, rng=jax.random.key(0))
    times.append(time.perf_counter() - start)
  return len(images) * _NUM_SAMPLES.value / float(np.median(times))


def main(argv):
  del argv
  model = models.build_model(mnist.get_config().model, (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  images = (np.random.default_rng(0).uniform(size=(_NUM_EXAMPLES.value, 28, 28, 1)) < 0.13)
  images = images.astype(np.float32)
  original = distributions.Bernoulli.log_prob
  rates = {}
  try:
    for name, log_prob in VARIANTS.items():
      distributions.Bernoulli.log_prob = log_prob
      rates[name] = samples_per_second(model, params, images)
  finally:
    distributions.Bernoulli.log_prob = original
  for name, rate in rates.items():
    print(json.dumps({'benchmark': 'bernoulli_log_prob_in_importance_sampling', 'variant': name,
                      'samples_per_sec': round(rate), 'relative_to_vae_jax':
                      round(rate / rates['vae_jax'], 3), 'device': jax.devices()[0].device_kind}))


if __name__ == '__main__':
  app.run(main)
