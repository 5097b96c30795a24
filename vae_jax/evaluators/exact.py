"""Exact log p(x), ELBO and posterior quantities, by summing over every value of a small
discrete latent; and, for one categorical variable on labelled data, how its values cluster."""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

from vae_jax import compiler_options, models
from vae_jax.evaluators import batched, registry


def make_exact_fn(model, *, jit_options: dict | None = None):
  """A jitted `(params, images, example_ids, rng) -> {term: [B]}` of the exact quantities of
  `DiscreteVAE.exact_terms`, with `map_latent`, the index of the most probable z under p(z|x),
  in place of the full posterior."""

  @functools.partial(batched.jit_at_full_precision, compiler_options=jit_options)
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


@dataclasses.dataclass
class ExactEvaluator:
  """`{'exact': {log_likelihood, elbo, reconstruction, kl, kl_to_posterior, ...}}` (split
  means), and `{'clusters': ...}` for a single categorical variable on labelled data."""
  exact_fn: object
  batch_size: int
  score_clusters: bool
  num_latent_values: int = 1
  computes_log_likelihood = 'exact'

  def work(self, num_examples: int) -> float:
    return num_examples * self.num_latent_values

  def __call__(self, params, split, rng) -> dict:
    terms = batched.map_examples(self.exact_fn, params, split.images,
                                 batch_size=self.batch_size, rng=rng)
    result = {'exact': exact_summary(terms)}
    if self.score_clusters and split.labels is not None:
      result['clusters'] = cluster_scores(terms['map_latent'], split.labels)
    return result


def report_lines(report: dict, seconds: float) -> list[str]:
  exact = report['exact']
  lines = [f"  log p(x)      {exact['log_likelihood']:10.3f} nats  exact: a sum over every z "
           f"({seconds:.0f} s)",
           f"  ELBO (exact)  {exact['elbo']:10.3f} nats  gap KL(q ‖ p(z|x)) "
           f"{exact['kl_to_posterior']:.3f}; H[p(z|x)] {exact['posterior_entropy']:.3f}, "
           f"H[q(z|x)] {exact['q_entropy']:.3f} nats"]
  if 'clusters' in report:
    clusters = report['clusters']
    lines.append(f"  clusters      accuracy {clusters['accuracy']:.3f}, purity "
                 f"{clusters['purity']:.3f} ({clusters['num_clusters_used']} values of z used)")
  return lines


# Small discrete z only: the model must be `Enumerable`.
@registry.register('exact', during_training=True, report_lines=report_lines, report_rank=4,
                   applies_to='a small discrete latent')
def create(model, config, dataset) -> ExactEvaluator | None:
  del dataset
  if not models.can_enumerate(model):
    return None
  single_variable = isinstance(model, models.CategoricalLatents) and model.num_variables == 1
  exact_fn = make_exact_fn(model, jit_options=compiler_options.for_run(config))
  return ExactEvaluator(exact_fn, config.eval_batch_size,
                        score_clusters=single_variable,
                        num_latent_values=int(model.num_latent_values))
