"""vae_jax/flows.py: the IAF's log-determinant against `jax.jacfwd`, its autoregressive masks,
and importance sampling with a flow posterior above its ELBO."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import small_model_config
from vae_jax import flows, models, objectives
from vae_jax.evaluators import batched, importance_sampling


def _flow_vae(steps=2):
  config = small_model_config()
  config.encoder.update(flow_steps=steps, flow_hidden_size=7)
  model = models.build_model(config, (6,))
  x = (np.random.default_rng(0).uniform(size=(4, 6)) > 0.5).astype(np.float32)
  params = model.init(jax.random.key(0), x[:1])
  # Move the flow away from its near-identity start, so that the test sees a real Jacobian.
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(1), p.shape), params)
  return model, params, x


@pytest.mark.slow  # over 10 s of compilation
def test_the_log_density_is_the_base_density_minus_log_det_of_the_jacobian():
  model, params, x = _flow_vae()
  posterior = model.apply(params, x[:1], method='encode')
  z, log_q = posterior.sample_and_log_prob(jax.random.key(2))
  epsilon = (posterior.base.sample(jax.random.key(2)) - posterior.base.mean) / posterior.base.scale

  def flow_of_epsilon(e):  # ε -> z for the one example
    return posterior._flow(posterior.base.mean + posterior.base.scale * e)[0]  # pylint: disable=protected-access

  np.testing.assert_allclose(flow_of_epsilon(epsilon), z, rtol=1e-6)
  jacobian = jax.jacfwd(lambda e: flow_of_epsilon(e[None])[0])(epsilon[0])
  _, log_det = np.linalg.slogdet(np.asarray(jacobian, np.float64))
  standard_normal = -0.5 * np.sum(np.asarray(epsilon, np.float64)**2) - 3 * np.log(2 * np.pi) / 2
  np.testing.assert_allclose(log_q[0], standard_normal - log_det, rtol=1e-5, atol=1e-5)
  # Autoregressive: output o of a MADE depends on inputs i < o only (paths[i, o] counts the
  # hidden units joining them), so each step's Jacobian is triangular.
  paths = np.matmul(*flows.made_masks(3, 7))
  assert np.all(np.tril(paths) == 0) and np.all(paths[np.triu_indices(3, 1)] > 0)


@pytest.mark.slow  # compile-heavy: over 9 s on 2 cores
def test_importance_sampling_with_a_flow_posterior_is_above_the_elbo():
  model, params, x = _flow_vae()
  assert model.apply(params, x, method='analytic_kl') is None  # no closed form: sampled KL
  fn = importance_sampling.make_importance_sampling_fn(model, num_samples=500, chunk_size=100)
  sampled = batched.map_examples(fn, params, x, batch_size=4, rng=jax.random.key(3))
  elbo = objectives.elbo_terms(model, params, jnp.asarray(x), jax.random.key(4), num_samples=500)
  assert np.mean(sampled['log_likelihood']) > float(np.mean(elbo['elbo']))


def test_zero_flow_steps_is_the_gaussian_encoder():
  model, params, x = _flow_vae(steps=0)
  assert not isinstance(model.apply(params, x, method='encode'), flows.IAFPosterior)


def test_a_flow_posterior_says_its_density_is_at_its_samples_only_and_the_vae_leaves_it_out():
  flow_model, flow_params, x = _flow_vae(steps=1)
  gaussian_model = models.build_model(small_model_config(), (6,))
  gaussian_params = gaussian_model.init(jax.random.key(0), x[:1])
  for model, params, has_density_anywhere in [(flow_model, flow_params, False),
                                              (gaussian_model, gaussian_params, True)]:
    context = model.apply(params, x, method='encode_context')
    assert context.density_anywhere is has_density_anywhere
    z = model.apply(params, jax.random.key(3), context, len(x), False, method='draw_latents')
    terms = model.apply(params, x, z, context, method='latent_log_densities')
    assert ('log_posterior' in terms) is has_density_anywhere
