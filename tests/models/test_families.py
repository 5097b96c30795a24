"""vae_jax/models/families.py: families built by name, each with its capabilities."""

import dataclasses

import flax.linen as nn
import pytest

from tests.helpers import small_model_config as _model_config
from vae_jax import models, objectives, registries
from vae_jax.errors import UserError


@pytest.mark.parametrize('latent_kind,upper,family,cls,enumerable,categorical', [
    ('gaussian', (), 'vae', models.VAE, False, False),
    ('gaussian', (2,), 'hierarchical', models.HierarchicalVAE, False, False),
    ('categorical', (), 'discrete', models.DiscreteVAE, True, True),
])
def test_each_family_is_built_by_name_with_its_capabilities(latent_kind, upper, family, cls,
                                                            enumerable, categorical):
  config = _model_config(prior='uniform' if latent_kind == 'categorical' else 'standard_normal')
  config.latent_kind, config.upper_layers.latent_dims = latent_kind, upper
  assert models.family_name(config) == family
  model = models.build_model(config, (4, 4, 1))
  assert type(model) is cls and isinstance(model, models.LatentVariableModel)
  assert models.can_enumerate(model) == enumerable
  assert isinstance(model, models.CategoricalLatents) == categorical
  assert objectives.resolve_gradient_estimator('auto', model) == (
      'exact' if enumerable else 'reparameterized')


def test_a_discrete_space_too_large_to_list_is_not_enumerated():
  config = _model_config(prior='uniform')
  config.latent_kind, config.latent_dim, config.max_enumeration = 'categorical', 20, 1000
  model = models.build_model(config, (4, 4, 1))
  assert isinstance(model, models.Enumerable) and not models.can_enumerate(model)
  assert objectives.resolve_gradient_estimator('auto', model) == 'gumbel_softmax'


def test_the_registry_refuses_a_second_family_of_one_name_and_a_model_without_the_interface(
    monkeypatch):
  with pytest.raises(ValueError, match="'vae' is registered twice"):
    models.register('vae')(lambda config, shape: None)
  with pytest.raises(ValueError, match="'exact' is registered twice"):
    models.register('exact_too', estimators={'exact': lambda *args, **kwargs: None})
  assert 'exact_too' not in registries.names('family')
  assert models.families.estimators()['score_function'] is models.discrete.score_function_loss
  assert objectives.gradient_estimators() == ('auto', 'reparameterized', 'exact',
                                              'gumbel_softmax', 'straight_through',
                                              'score_function')
  vae = registries.get('family', 'vae')
  monkeypatch.setitem(registries.COMPONENTS['family'], 'vae', dataclasses.replace(
      vae, build=lambda config, shape: nn.Dense(3)))
  with pytest.raises(UserError, match=r"^family 'vae' \(module tests.models.test_families\) "
                     r'builds a Dense without sample_log_weight_terms\(x, key\)'):
    models.build_model(_model_config(), (4, 4, 1))
