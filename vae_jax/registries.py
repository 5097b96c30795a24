"""Components by kind and name, each with its builder, its options and its checks.

A component is registered once, in its own module (or in a researcher's module outside the
package, imported through `config.imports`):

  @registries.register('prior', 'laplace', options=options.at('model.prior', ...),
                       checks=(laplace_problems,))
  def build(config, latent_dim, data_shape): ...

Everything the engine knows about a component's options is derived from here: the default
config (`default_config`), the value checks and the component's own checks (run only when a
config chooses it: `chosen`), which keys a sweep may vary or a resume may change (`keys_with`),
and docs/configuration.md. A kind is declared with `register_kind`, saying how a config
chooses its components (e.g. the likelihood by `model.likelihood.kind`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from vae_jax import options as options_lib
from vae_jax.errors import UserError
from vae_jax.options import Option


def registrar(table: dict, what: str, name: str):
  """A decorator that files its function in `table` under `name`, once."""

  def decorate(function):
    if name in table:
      raise ValueError(f'{what} {name!r} is registered twice.')
    table[name] = function
    return function

  return decorate


@dataclasses.dataclass(frozen=True)
class Component:
  kind: str
  name: str
  build: Callable | None
  options: Mapping[str, Option]  # dotted config path -> Option
  checks: tuple[Callable, ...]  # config -> iterable of one-line problems, when chosen
  # What else a kind asks of its components (an evaluator's `report_lines`, a likelihood's
  # `data_checks`, ...), by name.
  extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Kind:
  name: str
  doc: str
  chooses: Callable[[ml_collections.ConfigDict], Iterable[str]]  # the names a config uses


KINDS: dict[str, Kind] = {}
COMPONENTS: dict[str, dict[str, Component]] = {}


def register_kind(name: str, doc: str, chooses: Callable) -> None:
  """Declares a kind of component; `chooses(config)` gives the names of those a config uses."""
  KINDS[name] = Kind(name, doc, chooses)
  COMPONENTS.setdefault(name, {})


register_kind('run', 'the parts every run has (engine, data, model networks, objective, optimizer)',
              lambda config: names('run'))


def register(kind: str, name: str, *, options: Mapping[str, Option] | None = None,
             checks: Iterable[Callable] = (), **extras):
  """Decorator over a component's builder: files it under (kind, name) with its options,
  checks and extras. Registering a name twice is an error."""

  def decorate(build):
    add(Component(kind, name, build, dict(options or {}), tuple(checks), extras))
    return build

  return decorate


def add(component: Component) -> None:
  table = COMPONENTS.setdefault(component.kind, {})
  if component.name in table:
    raise ValueError(f'{component.kind} {component.name!r} is registered twice.')
  _check_consistent_with_schema(component)
  table[component.name] = component


def names(kind: str) -> tuple[str, ...]:
  return tuple(COMPONENTS.get(kind, {}))


def get(kind: str, name: str) -> Component:
  try:
    return COMPONENTS[kind][name]
  except KeyError:
    raise ValueError(f'{name!r} {unknown(kind, name)}') from None


def unknown(kind: str, name: str) -> str:
  """What to say of `name`, which names no registered component of `kind`: the known names,
  the closest one, and that a component of one's own is registered by `config.imports`."""
  known = names(kind)
  closest = difflib.get_close_matches(str(name), known, n=1, cutoff=0.0)
  said = kind.replace('_', ' ')
  listed = f'the {said}s are {", ".join(known)}' if known else f'no {said} is registered'
  return (f'is not a registered {said}: {listed}'
          f'{f" (closest: {closest[0]!r})" if closest else ""}; {_a(said)} from your own module '
          'is registered only when config.imports names that module.')


def build(kind: str, name: str, *args, **kwargs):
  """The registered builder of (kind, name), called with the arguments given; what it builds
  is checked against its kind's contract (`CONTRACTS`; an evaluator may build None)."""
  built = get(kind, name).build(*args, **kwargs)
  return built if built is None and kind == 'evaluator' else checked(kind, name, built)


# What a built component provides, by kind: {name: how it is called}. A kind whose component
# is a Flax module called for a distribution (`prior(encoder)`) says, under '<kind>()', what
# that distribution provides. docs/extending.md describes each.
CONTRACTS: dict[str, dict[str, str]] = {
    'family': {'sample_log_weight_terms': '(x, key)', 'analytic_kl': '(x)',
               'kl_per_dimension': '(x)', 'posterior_means': '(x)', 'reconstruct': '(x)',
               'generate': '(key, num_samples)'},
    'likelihood': {'raw_channels': '(channels)', '__call__': '(raw)'},
    'likelihood()': {'log_prob': '(x)', 'sample': '(rng, sample_shape)'},
    'prior': {'__call__': '(encoder)'},
    'prior()': {'log_prob': '(z)', 'sample': '(rng, sample_shape)'},
    'categorical_prior': {'__call__': '(encoder=None)'},
    'categorical_prior()': {'log_prob': '(z)', 'sample': '(rng, sample_shape)'},
    'evaluator': {'__call__': '(params, split, rng) -> dict'},
    'optimizer': {'init': '(params)', 'update': '(updates, state, params)'},
    'schedule': {'__call__': '(step) -> factor'},
    'gradient_transform': {'init': '(params)', 'update': '(updates, state, params)'},
    'data_source': {'traits': '()', 'load': '(*, stream_train)'},
}


def contract_problem(kind: str, name: str, built) -> str | None:
  """One line naming what `built`, by component (kind, name), lacks of its kind's contract
  (for a '<kind>()' contract, `built` is what the component returned when called), or None."""
  required = CONTRACTS.get(kind, {})
  missing = [method for method in required if not _provides(built, method)]
  if not missing:
    return None
  base = kind.removesuffix('()')
  component = COMPONENTS.get(base, {}).get(name)
  module = getattr(component.build, '__module__', '?') if component else '?'
  lacking = ', '.join(f'{method}{required[method]}' for method in missing)
  verb, whose = ('returns', f"{_a(base)}'s distribution") if kind.endswith('()') else (
      'builds', _a(base))
  return (f'{base} {name!r} (module {module}) {verb} {_a(type(built).__name__)} without '
          f'{lacking}: {whose} provides {", ".join(required)} (docs/extending.md).')


def _provides(built, method: str) -> bool:
  """Whether `built` has `method`, and not only a base class's abstract stub of it."""
  found = getattr(built, method, None)
  return callable(found) and not getattr(found, '__isabstractmethod__', False)


def _a(word: str) -> str:
  return f'an {word}' if word[0].lower() in 'aeiou' else f'a {word}'


def checked(kind: str, name: str, built):
  """`built`, when it meets its kind's contract; else a UserError naming what it lacks."""
  problem = contract_problem(kind, name, built)
  if problem:
    raise UserError(problem)
  return built


# Checks of an option's value that need the registry (`options` never imports it).

def registered(kind: str, *extra: str) -> options_lib.Check:
  """The value must name a registered component of `kind` (or be one of `extra`)."""

  def check(value):
    return None if value in (*extra, *names(kind)) else unknown(kind, value)

  return check


def all_registered(kind: str) -> options_lib.Check:
  """Every value of the tuple must name a registered component of `kind`."""

  def check(values):
    strays = [value for value in values if value not in names(kind)]
    return f'names {strays[0]!r}, which {unknown(kind, strays[0])}' if strays else None

  return check


# [ids of the registered components it was built from, the schema, those components (held, so
# that no id is reused while cached)]
_SCHEMA: list = [None, {}, ()]


def schema() -> dict[str, Option]:
  """Every registered option, by dotted path (an option shared by components is one entry).
  Built once, and again only after a component registers or an option is replaced (as tests
  do); the caller gets a copy."""
  registered = tuple((kind, tuple((id(component), tuple(map(id, component.options.values())))
                                  for component in table.values()))
                     for kind, table in COMPONENTS.items())  # an option replaced in place too
  if _SCHEMA[0] != registered:
    merged = {}
    for table in COMPONENTS.values():
      for component in table.values():
        merged.update(component.options)
    _SCHEMA[:] = [registered, dict(sorted(merged.items())),
                  [tuple(table.values()) for table in COMPONENTS.values()]]
  return dict(_SCHEMA[1])


def owners(path: str) -> list[Component]:
  return [component for table in COMPONENTS.values() for component in table.values()
          if path in component.options]


def keys_with(trait: str) -> frozenset[str]:
  """The dotted keys whose option has `trait` (`options.SWEEPABLE`, ...)."""
  return frozenset(path for path, option in schema().items() if option.has(trait))


def default_config() -> ml_collections.ConfigDict:
  """A config holding every registered option at its default."""
  config = ml_collections.ConfigDict()
  complete(config)
  return config


def complete(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds every registered option that `config` lacks, at its default (after `imports` added
  components, or for a config saved before an option existed). Returns `config`."""
  with config.unlocked():
    for path, option in schema().items():
      *parents, leaf = path.split('.')
      block = config
      for parent in parents:
        if parent not in block:
          block[parent] = ml_collections.ConfigDict()
        block = block[parent]
      if leaf not in block:
        block[leaf] = _fresh(option.default)
  return config


def _fresh(value):
  """A value to put in a new config: a placeholder is copied, never shared between configs."""
  if isinstance(value, config_dict.FieldReference):
    return config_dict.placeholder(value.get_type())
  return ml_collections.ConfigDict(value) if isinstance(value, Mapping) else value


def chosen(config: ml_collections.ConfigDict) -> list[Component]:
  """The components `config` uses, kind by kind (names it does not register are skipped: the
  value checks report them)."""
  used = []
  for kind in KINDS.values():
    try:
      chosen_names = tuple(kind.chooses(config))
    except (AttributeError, KeyError):  # a saved config from before the kind's keys existed
      chosen_names = ()
    for name in chosen_names:
      if name in COMPONENTS.get(kind.name, {}):
        used.append(COMPONENTS[kind.name][name])
  return used


def prune(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` without the options that only components it does not use declare (an
  MLP run's `model.top_down`, a standard-normal prior's `num_components`): what a run saves
  and compares on resume. Keys no component declares are kept."""
  keep = {path for component in chosen(config) for path in component.options}
  pruned = config.copy_and_resolve_references()
  with pruned.unlocked():
    for path in schema():
      if path not in keep:
        _delete(pruned, path.split('.'))
  return pruned


def _delete(block, keys: list[str]) -> None:
  """Deletes the leaf `keys` from nested `block`, and the blocks it leaves empty."""
  head, *rest = keys
  if head not in block:
    return
  if rest:
    _delete(block[head], rest)
    if not block[head]:
      del block[head]
  else:
    del block[head]


def value_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Each option's own check on its value in `config`."""
  values = options_lib.flatten(config.to_dict())
  found = []
  for path, option in schema().items():
    if path in values:
      found += options_lib.problems(option, path, values[path])
  return found


def component_problems(config: ml_collections.ConfigDict) -> list[str]:
  """The checks of the components `config` uses."""
  return [problem for component in chosen(config) for check in component.checks
          for problem in check(config)]


def data_problems(config: ml_collections.ConfigDict, dataset) -> list[str]:
  """The data checks (`extras['data_checks']`: `(config, dataset) -> problems`) of the
  components `config` uses: what they need of the data (binary pixels, 8-bit grey levels, ...)."""
  return [problem for component in chosen(config)
          for check in component.extras.get('data_checks', ())
          for problem in check(config, dataset)]


def import_modules(module_names: Iterable[str]) -> None:
  """Imports the modules that register a config's outside components (`config.imports`)."""
  for name in module_names:
    try:
      importlib.import_module(name)
    except ImportError as error:
      raise UserError(f'config.imports names {name!r}, which cannot be imported ({error}). '
                      'Put its folder on PYTHONPATH or run from the folder that holds it.'
                      ) from error


def _check_consistent_with_schema(component: Component) -> None:
  """An option declared by two components must agree on its default (it is one config key)."""
  existing = schema()
  for path, option in component.options.items():
    if path in existing and existing[path].default != option.default:
      raise ValueError(f'{component.kind} {component.name!r} declares {path} with default '
                       f'{option.default!r}, but it is already declared with '
                       f'{existing[path].default!r}.')
