"""Discrete latents: exact log p(x) and p(z|x) against brute-force enumeration, the identity
log p(x) − ELBO = KL(q ‖ p(z|x)), and gradient estimators against the exact gradient."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from configs import default
from vae_jax import distributions, models, objectives
from vae_jax.engine import config_checks

NUM_VARIABLES, NUM_CATEGORIES, NUM_PIXELS = 2, 3, 6


def _tiny_model(prior='learned_categorical'):
  config = default.get_config().model
  config.update(latent_kind='categorical', latent_dim=NUM_VARIABLES,
                num_categories=NUM_CATEGORIES)
  config.prior.kind = prior
  config.encoder.hidden_sizes = config.decoder.hidden_sizes = (5,)
  model = models.build_model(config, (NUM_PIXELS,))
  params = model.init(jax.random.key(0), jnp.zeros((1, NUM_PIXELS)))
  # Move the prior away from uniform so that it matters.
  params['params']['prior']['logits'] = jnp.array([[0.5, -0.3, 0.1], [-1.0, 0.2, 0.7]])
  return model, params


X = (np.random.default_rng(0).uniform(size=(4, NUM_PIXELS)) > 0.5).astype(np.float32)


def _brute_force(model, params, x):
  """log p(x) and p(z|x) by looping over every z in numpy."""
  prior_log_probs = np.asarray(jax.nn.log_softmax(params['params']['prior']['logits']))
  log_joint = []
  for values in itertools.product(range(NUM_CATEGORIES), repeat=NUM_VARIABLES):
    z = np.eye(NUM_CATEGORIES)[list(values)][None]  # [1, D, K]
    logits = np.asarray(model.apply(params, jnp.asarray(z, jnp.float32), method='decode').logits,
                        np.float64)[0]
    log_px_given_z = np.sum(stats.bernoulli.logpmf(x, special.expit(logits)), axis=-1)
    log_joint.append(log_px_given_z + sum(prior_log_probs[d, v] for d, v in enumerate(values)))
  log_joint = np.stack(log_joint, axis=-1)  # [B, K^D]
  log_marginal = special.logsumexp(log_joint, axis=-1)
  return log_marginal, np.exp(log_joint - log_marginal[:, None])


def test_exact_log_marginal_and_posterior_match_brute_force_enumeration():
  model, params = _tiny_model()
  terms = model.apply(params, jnp.asarray(X), method='exact_terms')
  log_marginal, posterior = _brute_force(model, params, X)
  np.testing.assert_allclose(terms['log_likelihood'], log_marginal, rtol=1e-5)
  np.testing.assert_allclose(terms['posterior'], posterior, atol=1e-6)
  np.testing.assert_allclose(terms['posterior'].sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(terms['posterior_entropy'],
                             stats.entropy(posterior, axis=-1), rtol=1e-4)


def test_gap_between_log_marginal_and_elbo_is_kl_to_the_posterior():
  model, params = _tiny_model()
  terms = model.apply(params, jnp.asarray(X), method='exact_terms')
  np.testing.assert_allclose(terms['log_likelihood'] - terms['elbo'], terms['kl_to_posterior'],
                             atol=2e-5)
  assert np.all(terms['kl_to_posterior'] > 0)


def test_exact_elbo_is_the_mean_of_sampled_elbos():
  model, params = _tiny_model()
  x = jnp.asarray(X)
  exact = model.apply(params, x, method='exact_terms')
  sampled = objectives.elbo_terms(model, params, x, jax.random.key(1), num_samples=200_000,
                                  analytic_kl=False)
  np.testing.assert_allclose(sampled['elbo'], exact['elbo'], atol=0.02)
  np.testing.assert_allclose(sampled['kl'], exact['kl'], atol=0.01)


def test_enumeration_limit_is_enforced():
  config = default.get_config()
  config.model.update(latent_kind='categorical', latent_dim=13, num_categories=2,
                      max_enumeration=4096)
  config.model.prior.kind = 'uniform'
  config.objective.gradient_estimator = 'exact'
  with pytest.raises(config_checks.ConfigError, match='2\\^13 = 8192 latent values, more than '
                     'model.max_enumeration=4096'):
    config_checks.validate_config(config)


def _flat_gradient(model, params, x, key, estimator, num_samples=1, temperature=1.0):
  def loss(params):
    return objectives.training_loss(model, params, x, key, objective='elbo',
                                    num_samples=num_samples, beta=1.0, analytic_kl=True,
                                    estimator=estimator, temperature=temperature)[0]

  return jnp.concatenate([g.ravel() for g in jax.tree.leaves(jax.grad(loss)(params))])


def _mean_gradient(model, params, estimator, replicates, **kwargs):
  x = jnp.asarray(X)
  grads = jax.vmap(lambda key: _flat_gradient(model, params, x, key, estimator, **kwargs))(
      jax.random.split(jax.random.key(2), replicates))
  return np.asarray(grads.mean(0)), np.asarray(grads.std(0) / np.sqrt(replicates))


@pytest.mark.slow
def test_score_function_gradient_is_unbiased():
  model, params = _tiny_model()
  exact = np.asarray(_flat_gradient(model, params, jnp.asarray(X), jax.random.key(0), 'exact'))
  mean, standard_error = _mean_gradient(model, params, 'score_function', 20_000, num_samples=4)
  z_scores = (mean - exact) / np.maximum(standard_error, 1e-6)
  assert np.max(np.abs(z_scores)) < 5.0
  assert np.linalg.norm(mean - exact) < 0.05 * np.linalg.norm(exact)


@pytest.mark.slow
@pytest.mark.parametrize('estimator', ['gumbel_softmax', 'straight_through'])
def test_relaxed_gradients_point_where_the_exact_gradient_does(estimator):
  # Biased by design; on this small model they keep the exact gradient's direction.
  model, params = _tiny_model()
  exact = np.asarray(_flat_gradient(model, params, jnp.asarray(X), jax.random.key(0), 'exact'))
  mean, _ = _mean_gradient(model, params, estimator, 5_000, temperature=0.5)
  cosine = mean @ exact / (np.linalg.norm(mean) * np.linalg.norm(exact))
  assert cosine > 0.9, cosine


def test_categorical_distribution_against_scipy():
  logits = jnp.array([[0.2, -1.0, 0.7], [1.5, 0.0, -0.5]])
  dist = distributions.Categorical(logits)
  probs = np.asarray(jax.nn.softmax(logits))
  z = jax.nn.one_hot(jnp.array([2, 0]), 3)
  np.testing.assert_allclose(dist.log_prob(z), np.log(probs[0, 2] * probs[1, 0]), rtol=1e-5)
  np.testing.assert_allclose(dist.entropy(), stats.entropy(probs, axis=-1).sum(), rtol=1e-5)
  samples = np.asarray(dist.sample(jax.random.key(0), (100_000,)))
  np.testing.assert_allclose(samples.mean(0), probs, atol=0.01)
  other = distributions.Categorical(jnp.zeros((2, 3)))
  np.testing.assert_allclose(distributions.kl_divergence(dist, other),
                             np.sum(probs * np.log(probs * 3)), rtol=1e-5)


def test_relaxed_samples_lie_on_the_simplex_and_straight_through_is_one_hot():
  dist = distributions.Categorical(jnp.array([[0.2, -1.0, 0.7]]))
  soft = dist.relaxed_sample(jax.random.key(0), 0.5)
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
  assert np.all(soft > 0) and not np.any(soft == 1.0)
  cold = dist.relaxed_sample(jax.random.key(0), 1e-3)
  np.testing.assert_allclose(cold.max(-1), 1.0, atol=1e-4)
  hard = dist.relaxed_sample(jax.random.key(0), 0.5, hard=True)
  assert set(np.unique(hard)) == {0.0, 1.0}

  def first_value(logits, hard):
    return distributions.Categorical(logits).relaxed_sample(jax.random.key(0), 0.5, hard)[0, 0]

  logits = jnp.array([[0.2, -1.0, 0.7]])
  np.testing.assert_allclose(jax.grad(first_value)(logits, True),
                             jax.grad(first_value)(logits, False), rtol=1e-6)


@pytest.mark.slow
def test_discrete_model_trains_and_evaluates_exactly_end_to_end(tiny_config, tmp_path):
  from experiments import evaluate  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import metric_writers, training  # pylint: disable=import-outside-toplevel
  tiny_config.model.update(latent_kind='categorical', latent_dim=1, num_categories=10)
  tiny_config.model.prior.kind = 'uniform'
  tiny_config.num_epochs = 3
  training.train_and_evaluate(tiny_config, str(tmp_path))
  evaluations = [m for m in metric_writers.read_metrics(str(tmp_path)) if 'test/elbo' in m]
  first, last = evaluations[0], evaluations[-1]
  assert last['test/exact/log_likelihood'] > first['test/exact/log_likelihood']
  assert 0.1 < last['test/clusters/accuracy'] <= 1.0  # the exact evaluator scores clusters
  # The loop's ELBO is the exact one: the closed-form KL and the exact expected likelihood.
  np.testing.assert_allclose(last['test/exact/elbo'], last['test/elbo'], atol=0.5)
  assert (tmp_path / 'images' / 'categories_00000045.png').is_file()

  # Importance sampling runs where log p(x) is exact only when named: here, to compare them.
  report = evaluate.evaluate_workdir(str(tmp_path), step=None, split='test',
                                     names=['elbo', 'exact', 'importance_sampled'],
                                     num_importance_samples=50, chunk_size=50, batch_size=100,
                                     seed=0)
  exact = report['exact']
  np.testing.assert_allclose(exact['log_likelihood'] - exact['elbo'], exact['kl_to_posterior'],
                             atol=1e-3)
  # The importance-sampled estimate is a lower bound in expectation, close with K = 10 values.
  assert report['importance_sampled']['log_likelihood'] <= exact['log_likelihood'] + 0.05
  assert 0.1 < report['clusters']['accuracy'] <= report['clusters']['purity'] <= 1.0
  assert 'clusters' in evaluate.format_report(report)


@pytest.mark.slow
def test_marginal_objective_is_maximum_likelihood_for_the_decoder_and_fits_q_to_the_posterior():
  model, params = _tiny_model()
  x = jnp.asarray(X)

  def loss(params):
    return objectives.training_loss(model, params, x, jax.random.key(0), objective='marginal',
                                    num_samples=1, beta=1.0, analytic_kl=True,
                                    estimator='exact')[0]

  def brute_force_negative_log_marginal(params):  # an explicit loop over the 9 values of z
    prior = jax.nn.log_softmax(params['params']['prior']['logits'])
    log_joint = []
    for values in itertools.product(range(NUM_CATEGORIES), repeat=NUM_VARIABLES):
      z = jnp.eye(NUM_CATEGORIES)[jnp.asarray(values)][None]
      logits = model.apply(params, z, method='decode').logits[0]
      log_joint.append(jnp.sum(x * logits - jax.nn.softplus(logits), -1)
                       + sum(prior[d, v] for d, v in enumerate(values)))
    return -jnp.mean(jax.scipy.special.logsumexp(jnp.stack(log_joint, -1), -1))

  def cross_entropy_to_fixed_posterior(params):
    posterior = jax.lax.stop_gradient(model.apply(params, x, method='exact_terms')['posterior'])
    z = model.apply(params, method='all_latent_values')
    log_q = jnp.einsum('zdk,bdk->bz', z, model.apply(params, x, method='encode').log_probs)
    return -jnp.mean(jnp.sum(posterior * log_q, -1))

  grads = jax.grad(loss)(params)['params']
  decoder_and_prior = jax.grad(brute_force_negative_log_marginal)(params)['params']
  encoder = jax.grad(cross_entropy_to_fixed_posterior)(params)['params']
  for part, expected in (('decoder', decoder_and_prior), ('prior', decoder_and_prior),
                         ('encoder', encoder)):
    for a, b in zip(jax.tree.leaves(grads[part]), jax.tree.leaves(expected[part])):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_marginal_objective_needs_an_enumerable_categorical_latent():
  config = default.get_config()
  config.objective.kind = 'marginal'
  with pytest.raises(config_checks.ConfigError, match='objective.kind=marginal trains the exact'):
    config_checks.validate_config(config)
