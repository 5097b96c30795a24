"""Evaluation on whole splits, in nats per example: the ELBO and its terms, the
importance-sampled log-likelihood, KL per latent unit and active units.

Every per-example function draws example `i`'s noise from `fold_in(rng, i)`, so results depend
on (params, images, rng) only, never on the batch size. Batches are zero-padded to one size (one
compiled program per split) and the padding rows are dropped before averaging.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import models, objectives

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2015: active when Cov_x(E_q[u|x]) > 10⁻²


def per_example_keys(rng: jax.Array, example_ids: jax.Array) -> jax.Array:
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, example_ids)


def make_elbo_fn(model, *, num_samples: int, analytic_kl: bool):
  """A jitted `(params, images [B, ...], example_ids [B], rng) -> {term: [B]}` of ELBO terms."""

  def example_terms(params, image, key):
    terms = objectives.elbo_terms(model, params, image[None], key, num_samples=num_samples,
                                  analytic_kl=analytic_kl)
    return jax.tree.map(lambda value: value[0], terms)

  @jax.jit
  def elbo_fn(params, images, example_ids, rng):
    keys = per_example_keys(rng, example_ids)
    return jax.vmap(example_terms, in_axes=(None, 0, 0))(params, images, keys)

  return elbo_fn


def make_importance_sampling_fn(model, *, num_samples: int, chunk_size: int):
  """A jitted `(params, images [B, ...], example_ids [B], rng) -> {'log_likelihood': [B],
  'standard_error': [B]}`: the importance-sampled estimate

      log p(x) ≈ log (1/K) Σ_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x),   K = num_samples,

  (the IWAE bound with K samples, which tends to log p(x) from below as K grows). The K draws
  are made `chunk_size` at a time inside a `lax.scan`, keeping running log-sums of the weights
  and of their squares, so memory is set by `chunk_size`, not K. The standard error is the
  delta-method Monte-Carlo error of log p̂: the sample standard deviation of the weights over
  √K times their mean.
  """
  chunk_size = min(chunk_size, num_samples)
  num_chunks = math.ceil(num_samples / chunk_size)

  def example_estimate(params, image, key):
    x = image[None]

    def add_chunk(carry, chunk_index):
      log_sum_w, log_sum_w2 = carry
      terms = objectives.log_weight_terms(model, params, x, jax.random.fold_in(key, chunk_index),
                                          chunk_size)
      log_w = objectives.log_weights(terms)[:, 0]
      in_range = chunk_index * chunk_size + jnp.arange(chunk_size) < num_samples
      log_w = jnp.where(in_range, log_w, -jnp.inf)
      return (jnp.logaddexp(log_sum_w, jax.scipy.special.logsumexp(log_w)),
              jnp.logaddexp(log_sum_w2, jax.scipy.special.logsumexp(2 * log_w))), None

    init = (jnp.asarray(-jnp.inf, jnp.float32), jnp.asarray(-jnp.inf, jnp.float32))
    (log_sum_w, log_sum_w2), _ = jax.lax.scan(add_chunk, init, jnp.arange(num_chunks))
    # Var(w) / mean(w)² = K Σw² / (Σw)² − 1.
    relative_variance = jnp.maximum(num_samples * jnp.exp(log_sum_w2 - 2 * log_sum_w) - 1.0, 0.0)
    return {'log_likelihood': log_sum_w - math.log(num_samples),
            'standard_error': jnp.sqrt(relative_variance / num_samples)}

  @jax.jit
  def importance_sampling_fn(params, images, example_ids, rng):
    keys = per_example_keys(rng, example_ids)
    return jax.vmap(example_estimate, in_axes=(None, 0, 0))(params, images, keys)

  return importance_sampling_fn


def map_examples(fn, params, images: np.ndarray, *, batch_size: int, rng: jax.Array):
  """Applies `fn(params, batch, example_ids, rng)` to `images` in padded batches; returns its
  per-example outputs for the real examples only, as float64 host arrays."""
  outputs = []
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    example_ids = np.arange(start, start + batch_size)
    outputs.append(jax.device_get(fn(params, _pad_to(batch, batch_size), example_ids, rng)))
  return jax.tree.map(lambda *parts: np.concatenate(parts)[:len(images)].astype(np.float64),
                      *outputs)


def evaluate_elbo(elbo_fn, params, images: np.ndarray, *, batch_size: int,
                  rng: jax.Array) -> dict[str, float]:
  """Mean ELBO terms over `images` (nats per example)."""
  terms = map_examples(elbo_fn, params, images, batch_size=batch_size, rng=rng)
  return {name: float(np.mean(values)) for name, values in terms.items()}


def importance_sampled_log_likelihood(importance_sampling_fn, params, images: np.ndarray, *,
                                      batch_size: int, rng: jax.Array) -> dict[str, float]:
  """Mean estimate of log p(x) over `images`, the Monte-Carlo standard error of that mean, and
  the per-example estimates' standard deviation across the split."""
  result = map_examples(importance_sampling_fn, params, images, batch_size=batch_size, rng=rng)
  estimates = result['log_likelihood']
  return {
      'log_likelihood': float(np.mean(estimates)),
      'standard_error': float(np.sqrt(np.sum(result['standard_error']**2)) / len(estimates)),
      'std_across_examples': float(np.std(estimates)),
  }


def make_posterior_statistics_fn(model):
  """A jitted `(params, images, example_ids, rng) -> {'means/<layer>': [B, D], 'kl_per_dimension':
  [B, D] (absent without a closed form)}`."""

  @jax.jit
  def statistics_fn(params, images, example_ids, rng):
    del example_ids, rng  # deterministic
    means = model.apply(params, images, method='posterior_means')
    statistics = {f'means/{layer}': value for layer, value in means.items()}
    kl_per_dimension = model.apply(params, images, method='kl_per_dimension')
    if kl_per_dimension is not None:
      statistics['kl_per_dimension'] = kl_per_dimension
    return statistics

  return statistics_fn


def posterior_features(statistics: dict[str, np.ndarray]) -> np.ndarray:
  """The first layer's posterior means as a `[B, features]` matrix (probes, projections)."""
  means = next(value for name, value in statistics.items() if name.startswith('means/'))
  return means.reshape(len(means), -1)


def posterior_summary(statistics: dict[str, np.ndarray]) -> dict:
  """Active units per layer (Burda et al.: `Cov_x(E_q[u|x]) > 0.01`), the per-unit variances
  they are decided on, and the mean closed-form KL of each unit where there is one.

  A unit whose mean is a vector (a categorical variable's one-hot probabilities, `[B, D, K]`)
  is scored by the trace of that vector's covariance across the data.
  """
  summary = {'active_units': {}, 'posterior_mean_variance': {}}
  for name, means in statistics.items():
    if name.startswith('means/'):
      layer = name.removeprefix('means/')
      variances = np.var(means, axis=0).reshape(means.shape[1], -1).sum(axis=-1)
      summary['active_units'][layer] = int(np.sum(variances > ACTIVE_UNIT_THRESHOLD))
      summary['posterior_mean_variance'][layer] = variances.tolist()
  if 'kl_per_dimension' in statistics:
    summary['kl_per_dimension'] = np.mean(statistics['kl_per_dimension'], axis=0).tolist()
  return summary


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, test_labels: np.ndarray) -> dict[str, float]:
  """Test accuracy of a logistic regression from features (e.g. posterior means) to labels,
  fitted on the training features: how linearly the representation separates the classes."""
  from sklearn import linear_model, pipeline, preprocessing  # pylint: disable=import-outside-toplevel
  probe = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                 linear_model.LogisticRegression(max_iter=2000))
  probe.fit(train_features, train_labels)
  return {'accuracy': float(probe.score(test_features, test_labels)),
          'train_accuracy': float(probe.score(train_features, train_labels)),
          'num_train_examples': int(len(train_labels))}


def supports_exact_evaluation(model) -> bool:
  """Whether log p(x) and p(z|x) are exact sums for this model (small discrete latent spaces)."""
  return models.can_enumerate(model)


def make_exact_fn(model):
  """A jitted `(params, images, example_ids, rng) -> {term: [B]}` of the exact quantities of
  `DiscreteVAE.exact_terms`, with `map_latent`, the index of the most probable z under p(z|x),
  in place of the full posterior."""

  @jax.jit
  def exact_fn(params, images, example_ids, rng):
    del example_ids, rng  # no randomness: sums over every z
    terms = dict(model.apply(params, images, method='exact_terms'))
    terms['map_latent'] = jnp.argmax(terms.pop('posterior'), axis=-1)
    return terms

  return exact_fn


def exact_summary(terms: dict[str, np.ndarray]) -> dict[str, float]:
  """Means over the split of `make_exact_fn`'s per-example terms (nats)."""
  return {name: float(np.mean(values)) for name, values in terms.items() if name != 'map_latent'}


def cluster_scores(clusters: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """How well clusters (e.g. the MAP value of one categorical latent) match the labels.

  purity    each cluster takes its most frequent label (many clusters may share a label);
  accuracy  the best one-to-one matching of clusters to labels (Hungarian algorithm), the
            usual unsupervised clustering accuracy; clusters left unmatched count as errors.
  """
  from scipy import optimize  # pylint: disable=import-outside-toplevel
  clusters, labels = np.asarray(clusters, np.int64), np.asarray(labels, np.int64)
  counts = np.zeros((clusters.max() + 1, labels.max() + 1), np.int64)
  np.add.at(counts, (clusters, labels), 1)
  rows, columns = optimize.linear_sum_assignment(counts, maximize=True)
  return {'purity': float(counts.max(axis=1).sum() / len(labels)),
          'accuracy': float(counts[rows, columns].sum() / len(labels)),
          'num_clusters_used': int(np.sum(counts.sum(axis=1) > 0))}


def evaluate_split(model, params, images: np.ndarray, *, rng: jax.Array,
                   num_importance_samples: int, chunk_size: int, batch_size: int,
                   elbo_num_samples: int = 1, analytic_kl: bool = True,
                   labels: np.ndarray | None = None) -> dict:
  """Everything `experiments.evaluate` reports about one split, with the seconds each part took.

  For discrete latents that can be enumerated, also the exact log p(x), ELBO, the gap
  KL(q ‖ p(z|x)), posterior entropies, and — for a single categorical variable and labelled
  data — how well its values cluster the labels.
  """
  elbo_key, importance_key = jax.random.split(rng)
  result, seconds = {'num_examples': len(images)}, {}

  start = time.perf_counter()
  elbo_fn = make_elbo_fn(model, num_samples=elbo_num_samples, analytic_kl=analytic_kl)
  result['elbo'] = evaluate_elbo(elbo_fn, params, images, batch_size=batch_size, rng=elbo_key)
  seconds['elbo'] = time.perf_counter() - start

  start = time.perf_counter()
  statistics = map_examples(make_posterior_statistics_fn(model), params, images,
                            batch_size=batch_size, rng=rng)
  result.update(posterior_summary(statistics))
  seconds['posterior'] = time.perf_counter() - start

  if supports_exact_evaluation(model):
    start = time.perf_counter()
    exact = map_examples(make_exact_fn(model), params, images, batch_size=batch_size, rng=rng)
    result['exact'] = exact_summary(exact)
    if labels is not None and model.num_variables == 1:
      result['clusters'] = cluster_scores(exact['map_latent'], labels)
    seconds['exact'] = time.perf_counter() - start

  if num_importance_samples:
    start = time.perf_counter()
    importance_fn = make_importance_sampling_fn(model, num_samples=num_importance_samples,
                                                chunk_size=chunk_size)
    result['importance_sampled'] = importance_sampled_log_likelihood(
        importance_fn, params, images, batch_size=batch_size, rng=importance_key)
    result['importance_sampled']['num_samples'] = num_importance_samples
    seconds['importance_sampled'] = time.perf_counter() - start
  result['seconds'] = seconds
  return result


def _pad_to(batch: np.ndarray, size: int) -> np.ndarray:
  if len(batch) == size:
    return batch
  padding = np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)
  return np.concatenate([batch, padding])


@functools.partial(jax.jit, static_argnames=('model', 'num_samples'))
def prior_samples(model, params, rng: jax.Array, *, num_samples: int) -> jax.Array:
  """Mean of `p(x|z)` for `num_samples` draws `z ~ p(z)`: `[num_samples, *data_shape]`."""
  return model.apply(params, rng, num_samples, method='generate')


@functools.partial(jax.jit, static_argnames=('model',))
def category_means(model, params) -> jax.Array:
  """For a single categorical latent: the mean of p(x|z) for each of its K values `[K, ...]`."""
  z = jnp.eye(model.num_categories)[:, None, :]  # [K, 1, K]
  return model.apply(params, z, method='decode').mean


@functools.partial(jax.jit, static_argnames=('model',))
def reconstructions(model, params, images: jax.Array) -> jax.Array:
  """Mean of `p(x|z)` at the posterior mean, for each image."""
  return model.apply(params, images, method='reconstruct')
