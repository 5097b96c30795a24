"""Bad configs are refused before any data is read, with messages naming key, value and fix."""

import ast
import pathlib

import pytest

from configs import (frey_face, iwae, kingma_welling, mnist, mnist_discrete, quickstart, vampprior,
                     vectors)
from vae_jax import data, registries
from vae_jax.engine import config_checks, runners

BAD_CONFIGS = [
    ('data.binarization', 'sometimes', "data.binarization='sometimes' is not one of"),
    ('model.encoder.kind', 'resnet', "model.encoder.kind='resnet' is not one of ['mlp', 'conv']"),
    ('model.decoder.activation', 'sigmoidal', "model.decoder.activation='sigmoidal'"),
    ('model.prior.kind', 'laplce', "model.prior.kind='laplce' is not a registered prior: the "
     "priors are standard_normal, learned_gaussian, mixture, vamp (closest: "),
    ('objective.kind', 'rws', "objective.kind='rws' is not one of ['elbo', 'iwae', 'marginal']"),
    ('optimizer.schedule', 'linear', "optimizer.schedule='linear' is not a registered schedule"),
    ('model.upper_layers.latent_dims', (0,), 'model.upper_layers.latent_dims=(0,)'),
    ('model.likelihood.kind', 'poisson', "model.likelihood.kind='poisson'"),
    ('optimizer.name', 'sgdd', "optimizer.name='sgdd' is not a registered optimizer: the "
     "optimizers are adam, adamw, adamax, adagrad (closest: 'adagrad'); an optimizer from your "
     'own module is registered only when config.imports names that module.'),
    ('batch_size', 0, 'batch_size=0 must be at least 1'),
    ('model.latent_dim', -3, 'model.latent_dim=-3 must be at least 1'),
    ('objective.num_samples', 0, 'objective.num_samples=0 must be at least 1'),
    ('objective.beta', -1.0, 'objective.beta=-1.0 must be non-negative'),
    ('optimizer.learning_rate', 0.0, 'optimizer.learning_rate=0.0 must be positive'),
    ('model.encoder.hidden_sizes', (200, 0), 'model.encoder.hidden_sizes=(200, 0)'),
    ('data.binarization', 'none', 'model.likelihood.kind=bernoulli needs binary data'),
    ('early_stopping.metric', 'test/elbo', 'would choose the checkpoint on the test set'),
    ('early_stopping.metric', 'elbo', "must be '<split>/<name>'"),
    ('model.encoder.log_variance_range', (2.0, -6.0), 'must be () or (low, high) with low < high'),
    ('cpu_optimization_level', 5, 'cpu_optimization_level=5 is not one of [0, 1, 2, 3] (or None)'),
]


def _set(config, dotted_key, value):
  *parents, leaf = dotted_key.split('.')
  for parent in parents:
    config = config[parent]
  config[leaf] = value


@pytest.mark.parametrize('key,value,message', BAD_CONFIGS)
def test_bad_config_is_refused_with_a_clear_message(key, value, message):
  config = mnist.get_config()
  _set(config, key, value)
  with pytest.raises(config_checks.ConfigError) as error:
    config_checks.validate_config(config)
  assert message in str(error.value)


def test_every_problem_is_reported_at_once():
  config = mnist.get_config()
  config.batch_size = 0
  config.model.prior.kind = 'flow'
  with pytest.raises(config_checks.ConfigError) as error:
    config_checks.validate_config(config)
  assert 'batch_size=0' in str(error.value) and 'model.prior.kind' in str(error.value)


SHIPPED = [('mnist', ''), ('mnist', 'conv'), ('frey_face', ''), ('frey_face', 'latent2'),
           ('quickstart', ''), ('vectors', ''), ('vectors', 'latent2'), ('vectors', 'binary')]
SHIPPED += [(name, variant) for name, module in (('iwae', iwae), ('vampprior', vampprior),
                                                 ('kingma_welling', kingma_welling),
                                                 ('mnist_discrete', mnist_discrete))
            for variant in module.VARIANTS]


@pytest.mark.parametrize('name,variant', SHIPPED)
def test_shipped_configs_are_valid(name, variant):
  module = {'mnist': mnist, 'frey_face': frey_face, 'quickstart': quickstart, 'iwae': iwae,
            'vampprior': vampprior, 'kingma_welling': kingma_welling,
            'mnist_discrete': mnist_discrete, 'vectors': vectors}[name]
  config = module.get_config(variant) if variant else module.get_config()
  config_checks.validate_config(config)


def test_iwae_variants_carry_the_architecture_and_the_papers_numbers():
  config = iwae.get_config('iwae_k50_l2')
  assert (config.objective.kind, config.objective.num_samples) == ('iwae', 50)
  assert config.model.latent_dim == 100 and config.model.upper_layers.latent_dims == (50,)
  assert (config.batch_size, config.num_epochs, config.optimizer.schedule) == (20, 3280, 'iwae')
  assert (config.paper.test_log_likelihood, config.paper.active_units) == (-82.90, '26+7')
  vae = iwae.get_config('vae_k1_l1')
  assert vae.objective.kind == 'elbo' and not vae.objective.analytic_kl
  assert vae.paper.test_log_likelihood == -86.76


def test_conv_needs_compatible_image_sizes():
  config = quickstart.get_config()
  config.model.encoder.kind = 'conv'
  config.model.encoder.conv_channels = (8, 16, 32, 64)
  dataset = data.load_dataset(config.data)
  with pytest.raises(config_checks.ConfigError, match='divisible by 16; digits is \\(8, 8, 1\\)'):
    config_checks.validate_config_for_data(config, dataset)


def test_vamp_prior_needs_a_one_layer_model():
  config = mnist.get_config()
  config.model.prior.kind = 'vamp'
  config.model.upper_layers.latent_dims = (20,)
  with pytest.raises(config_checks.ConfigError, match='model.prior.kind=vamp is built from'):
    config_checks.validate_config(config)


@pytest.mark.parametrize('module', [mnist, iwae, vampprior, kingma_welling])
def test_unknown_variant_is_refused(module):
  with pytest.raises(ValueError, match="Unknown variant 'big'"):
    module.get_config('big')


def test_the_pipeline_and_execution_choices_are_those_of_the_runners(monkeypatch):
  """config_checks keeps no list of its own: a pipeline or execution the runners module adds
  is accepted, and a refusal lists the runners' names."""
  config = quickstart.get_config()
  config.input_pipeline, config.sweep_execution = 'prefetched', 'pmap'
  with pytest.raises(config_checks.ConfigError) as error:
    config_checks.validate_config(config)
  assert f"is not one of {list(runners.INPUT_PIPELINES)}" in str(error.value)
  assert f"is not one of {list(runners.EXECUTIONS)}" in str(error.value)
  monkeypatch.setattr(runners, 'INPUT_PIPELINES', (*runners.INPUT_PIPELINES, 'prefetched'))
  monkeypatch.setattr(runners, 'EXECUTIONS', (*runners.EXECUTIONS, 'pmap'))
  config_checks.validate_config(config)


def _is_evals(node) -> bool:
  return isinstance(node, ast.Attribute) and node.attr == 'evals'


def _evaluators_named_in(path: str) -> set[str]:
  """The evaluators a module singles out: `evals.<name>` in a string or an attribute chain,
  `'<name>' in config.evals`, `config.evals['<name>']` or `.get('<name>')`, or a module of
  `evaluators` by name."""
  names, strings = set(registries.names('evaluator')), []
  for node in ast.walk(ast.parse(pathlib.Path(path).read_text(encoding='utf-8'))):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
      strings += [name for name in names if f'evals.{name}' in node.value]
    elif isinstance(node, ast.Attribute) and node.attr in names and (
        _is_evals(node.value) or (isinstance(node.value, ast.Name)
                                  and node.value.id == 'evaluators')):
      strings.append(node.attr)
    elif isinstance(node, ast.Compare) and any(map(_is_evals, node.comparators)):
      strings.append(node.left)
    elif isinstance(node, ast.Subscript) and _is_evals(node.value):
      strings.append(node.slice)
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and _is_evals(node.func.value) and node.args):
      strings.append(node.args[0])
  return {value.value if isinstance(value, ast.Constant) else value for value in strings} & names


def test_config_checks_names_no_evaluator_and_runs_the_ones_they_register():
  assert _evaluators_named_in(config_checks.__file__) == set()
  config = quickstart.get_config()
  config.evals.ais.num_chains = 0
  config.evals.quadrature.tolerance = 0.0
  with pytest.raises(config_checks.ConfigError) as error:
    config_checks.validate_config(config)
  assert 'evals.ais.num_chains=0 must be at least 1' in str(error.value)
  assert 'evals.quadrature.tolerance=0.0 must be positive' in str(error.value)
  with config.unlocked():  # a config without these evaluators runs none of their checks
    del config.evals['ais'], config.evals['quadrature']
  config_checks.validate_config(config)
