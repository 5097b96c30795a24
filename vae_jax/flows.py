"""An inverse-autoregressive-flow posterior (Kingma et al. 2016, "Improved variational inference
with inverse autoregressive flow"): `z_0 = μ(x) + σ(x) ⊙ ε`, then for t = 1 … T

    (m_t, s_t) = MADE_t(z_{t−1}, h(x)),   g_t = sigmoid(s_t),   z_t = g_t ⊙ z_{t−1} + (1 − g_t) ⊙ m_t,

with the units' order reversed between steps. Each MADE (Germain et al. 2015) is masked so that
`m_t[i], s_t[i]` depend on `z_{t−1}[<i]` only: the Jacobian is triangular and

    log q(z_T|x) = log N(ε; 0, I) − Σ log σ(x) − Σ_t Σ_i log g_t[i]

exactly. The density can be evaluated only at the flow's own samples (inverting the flow takes
D sequential passes), which is all that the ELBO and importance sampling need.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vae_jax import distributions, networks


def made_masks(num_units: int, hidden_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Masks `[D, H]` (input → hidden) and `[H, D]` (hidden → output) of a one-hidden-layer MADE:
  output i sees inputs < i only."""
  input_degrees = np.arange(1, num_units + 1)
  hidden_degrees = np.arange(hidden_size) % max(num_units - 1, 1) + 1
  first = (hidden_degrees[None, :] >= input_degrees[:, None]).astype(np.float32)
  second = (input_degrees[None, :] > hidden_degrees[:, None]).astype(np.float32)
  return first, second


@struct.dataclass
class IAFPosterior:
  """`q(z|x)` as the base Gaussian and the flow's (already masked) weights, one entry per step."""

  base: distributions.DiagonalGaussian
  context: jax.Array  # h(x) [..., C]
  steps: tuple  # per step: dict of input, context, hidden-to-m, hidden-to-s weights and biases
  # log q(z|x) is known at the flow's own samples only (`sample_and_log_prob`): inverting the
  # flow at any other z has no closed form. AIS starts from p(z) instead (evals.ais.initial).
  density_anywhere = False

  def _flow(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`z_T` and `Σ_t Σ_i log g_t[i]` from `z_0`."""
    log_gates = jnp.zeros(z.shape[:-1], z.dtype)
    for index, step in enumerate(self.steps):
      if index:
        z = z[..., ::-1]  # alternate the autoregressive order
      hidden = jax.nn.elu(z @ step['input'] + self.context @ step['context'] + step['bias'])
      m = hidden @ step['to_m'] + step['m_bias']
      s = hidden @ step['to_s'] + step['s_bias'] + 1.0  # starts near the identity (g ≈ 0.73)
      log_gate = jax.nn.log_sigmoid(s)
      z = jnp.exp(log_gate) * z + (1 - jnp.exp(log_gate)) * m
      log_gates += log_gate.sum(axis=-1)
    return z, log_gates

  def sample_and_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One reparameterised draw `z [..., D]` and its exact `log q(z|x)` `[...]`."""
    z0 = self.base.sample(key)
    z, log_gates = self._flow(z0)
    return z, self.base.log_prob(z0) - log_gates

  @property
  def mean(self) -> jax.Array:
    """The flow's image of the base mean (ε = 0): the point summary used where a Gaussian
    posterior's mean is (posterior means, reconstructions). q's own mean has no closed form."""
    return self._flow(self.base.mean)[0]


class IAFEncoder(nn.Module):
  """A Gaussian encoder head followed by `num_steps` IAF steps of `hidden_size` hidden units,
  conditioned on a `context_size` summary of the torso's features."""

  torso: nn.Module
  latent_dim: int
  num_steps: int
  hidden_size: int
  context_size: int = 50
  min_scale: float = 1e-4
  kernel_init: str = 'lecun_normal'

  @nn.compact
  def __call__(self, x: jax.Array) -> IAFPosterior:
    features = self.torso(x).astype(jnp.float32)
    init = networks.get_kernel_init(self.kernel_init)
    mean = nn.Dense(self.latent_dim, kernel_init=init, name='mean')(features)
    raw_scale = nn.Dense(self.latent_dim, kernel_init=init, name='raw_scale')(features)
    base = distributions.DiagonalGaussian(mean, nn.softplus(raw_scale) + self.min_scale)
    context = nn.Dense(self.context_size, kernel_init=init, name='context')(features)
    first_mask, second_mask = made_masks(self.latent_dim, self.hidden_size)
    d, h = self.latent_dim, self.hidden_size
    steps = []
    for index in range(self.num_steps):
      weight = lambda name, shape, initializer=init, i=index: self.param(
          f'step_{i}_{name}', initializer, shape)
      small = nn.initializers.normal(1e-3)  # outputs start near 0: the flow near the identity
      steps.append({
          'input': weight('input', (d, h)) * first_mask,
          'context': weight('context', (self.context_size, h)),
          'bias': weight('bias', (h,), nn.initializers.zeros),
          'to_m': weight('to_m', (h, d), small) * second_mask,
          'm_bias': weight('m_bias', (d,), nn.initializers.zeros),
          'to_s': weight('to_s', (h, d), small) * second_mask,
          's_bias': weight('s_bias', (d,), nn.initializers.zeros),
      })
    return IAFPosterior(base, context, tuple(steps))
