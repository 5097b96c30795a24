"""The ELBO and its terms, in nats per example, and in bits per dimension."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from vae_jax import compiler_options, objectives, options
from vae_jax.options import Option
from vae_jax.evaluators import batched, registry


def make_elbo_fn(model, *, num_samples: int, analytic_kl: bool,
                 jit_options: dict | None = None):
  """A jitted `(params, images [B, ...], example_ids [B], rng) -> {term: [B]}` of ELBO terms:
  `elbo`, `reconstruction` (E_q log p(x|z)) and `kl`."""

  def example_terms(params, image, key):
    terms = objectives.elbo_terms(model, params, image[None], key, num_samples=num_samples,
                                  analytic_kl=analytic_kl)
    return jax.tree.map(lambda value: value[0], terms)

  @functools.partial(batched.jit_at_full_precision, compiler_options=jit_options)
  def elbo_fn(params, images, example_ids, rng):
    keys = batched.per_example_keys(rng, example_ids)
    return jax.vmap(example_terms, in_axes=(None, 0, 0))(params, images, keys)

  return elbo_fn


def evaluate_elbo(elbo_fn, params, images: np.ndarray, *, batch_size: int,
                  rng: jax.Array) -> dict[str, float]:
  """Mean ELBO terms over `images` (nats per example)."""
  terms = batched.map_examples(elbo_fn, params, images, batch_size=batch_size, rng=rng)
  return {name: float(np.mean(values)) for name, values in terms.items()}


@dataclasses.dataclass
class ElboEvaluator:
  """`elbo`, `reconstruction`, `kl` (nats per example) and `bits_per_dim` (of the ELBO)."""
  elbo_fn: object
  batch_size: int
  num_samples: int = 1

  def work(self, num_examples: int) -> float:
    return num_examples * self.num_samples

  def __call__(self, params, split, rng) -> dict:
    terms = evaluate_elbo(self.elbo_fn, params, split.images, batch_size=self.batch_size,
                          rng=rng)
    num_dims = int(np.prod(split.images.shape[1:]))
    terms['bits_per_dim'] = float(objectives.bits_per_dim(terms['elbo'], num_dims))
    return terms


def report_lines(report: dict, seconds: float) -> list[str]:
  del seconds
  return [f"  ELBO          {report['elbo']:10.3f} nats  = E_q log p(x|z) "
          f"{report['reconstruction']:.3f} − KL {report['kl']:.3f}"]


@registry.register('elbo', during_training=True, report_lines=report_lines, report_rank=5,
                   headline=True,
                   num_samples=Option(1, 'samples of z per example in the evaluation ELBO',
                                      options.at_least(1)))
def create(model, config, dataset) -> ElboEvaluator:
  del dataset
  options = config.evals.elbo
  return ElboEvaluator(make_elbo_fn(model, jit_options=compiler_options.for_run(config),
                                    num_samples=options.num_samples,
                                    analytic_kl=config.objective.analytic_kl),
                       config.eval_batch_size, options.num_samples)
