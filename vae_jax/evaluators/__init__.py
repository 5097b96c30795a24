"""Evaluators by name, one module each; `config.evals` lists those a run uses and their options.

  elbo.py                 elbo          ELBO, E_q log p(x|z) (`reconstruction`), KL, bits/dim
  posterior.py            active_units  active units per layer, KL per unit
  exact.py                exact         exact log p(x), ELBO and posterior gap (small discrete z)
  importance_sampling.py  importance_sampled  log p(x) by importance sampling, its errors, k̂
  ais.py                  ais           log p(x) by annealed importance sampling (HMC)
  bdmc.py                 bdmc          AIS lower and upper bounds on simulated data
  quadrature.py           quadrature    exact log p(x) over a 1- or 2-D latent (the oracle)
  linear_probe.py         linear_probe  logistic regression from posterior means to labels
  image_grids.py          images        samples, reconstructions, category decodings
  registry.py             `register(name)`, `create(model, config, dataset)`
  batched.py              per-example functions over a split in fixed-size batches

A new evaluator is a module with a `@registry.register('name', during_training=..., **options)`
factory: imported below (or, outside the package, named in `config.imports`), its options are
in every config's `config.evals.<name>` (docs/extending.md).
"""

from vae_jax.evaluators import (ais, bdmc, elbo, exact, image_grids, importance_sampling,
                                linear_probe, posterior, quadrature)  # registers the evaluators
from vae_jax.evaluators.registry import (Evaluator, create, images_of, register, scalars,
                                        work)

__all__ = ['Evaluator', 'ais', 'bdmc', 'create', 'elbo', 'exact', 'image_grids',
           'images_of', 'importance_sampling', 'linear_probe', 'posterior', 'quadrature',
           'register', 'scalars', 'work']
