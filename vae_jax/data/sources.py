"""Data sources, a registry kind: where a run's examples come from, chosen by `data.name`.

A source is registered once, in its own module (or in a researcher's module named in
`config.imports`), with its options and checks, like every component:

  @data.register_source('my_source', options=options.at('data.my_source', ...))
  class MySource(data.Source):
    def __init__(self, config): ...            # the `data` block; reads nothing yet
    def traits(self) -> data.Traits: ...        # images or vectors, shape, bits, labels, streams
    def load(self, *, stream_train) -> (train, test): ...   # `Split`s (train may be a
                                                # `RecordSplit` when it streams from disk)

How `data.name` chooses a source, first match wins:
  1. a source registered under that very name (`digits`, `frey_face`, a researcher's
     `my_source`), or one that claims the name by its form (`claims=`: a .npy/.npz array file,
     a .csv/.tsv table);
  2. the image folder, for a name written as a path (`faces/`, `./faces`, `/data/faces`);
  3. TFDS, for every other name (`mnist`, `imagenet_resized/32x32`, `synthetic_digits`).
One key chooses, so every spelling that worked before still does, and a name that is a path
never shadows a registered one.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping

from vae_jax import registries
from vae_jax.data.dataset import Traits
from vae_jax.options import Option

KIND = 'data_source'
BY_NAME, BY_PATH, FALLBACK = 0, 1, 2  # the order in which sources claim a name


class Source:
  """What a source may inherit: the optional methods, at their defaults."""

  def __init__(self, config):
    self.config = config  # the `data` block

  @abc.abstractmethod  # a marker only: the contract check refuses a source that keeps it
  def traits(self) -> Traits:
    raise NotImplementedError

  @abc.abstractmethod
  def load(self, *, stream_train: bool):
    raise NotImplementedError

  def resolve_location(self, config):
    """`config` (a copy of the `data` block) with its data location made absolute, so that
    evaluation finds the data from any directory."""
    return config

  def location_flags(self, resolved) -> list[str]:
    """The launcher flags that give the resolved data location (for sweep commands)."""
    del resolved
    return []

  def feature_names(self) -> tuple[str, ...]:
    return ()


def register_source(name: str, *, options: Mapping[str, Option] | None = None,
                    checks: Iterable[Callable] = (), claims: Callable[[str], bool] | None = None,
                    order: int = BY_NAME):
  """Decorator over a source class (or any `build(data_config) -> source`), filed as the data
  source `name`. `claims(data_name)` says which names it reads (default: `name` itself);
  `order` puts path-shaped (BY_PATH) and catch-all (FALLBACK) sources after the others."""

  def decorate(build):
    registries.add(registries.Component(
        KIND, name, build, dict(options or {}), tuple(checks),
        {'claims': claims or (lambda data_name: data_name == name), 'order': order,
         'named': claims is None and order == BY_NAME}))
    return build

  return decorate


def source_name(data_name: str) -> str:
  """The registered source that reads `data.name`."""
  components = registries.COMPONENTS.get(KIND, {}).values()
  for order in (BY_NAME, BY_PATH, FALLBACK):
    for component in components:
      if component.extras['order'] == order and (
          order == FALLBACK or component.extras['claims'](data_name)):
        return component.name
  raise ValueError('No data source is registered.')


def named_sources() -> list[str]:
  """The sources chosen by their own name (`digits`, `frey_face`, a researcher's)."""
  return [name for name, component in registries.COMPONENTS.get(KIND, {}).items()
          if component.extras['named']]


def build(config) -> Source:
  """The source that reads `config` (the `data` block), its contract checked
  (`registries.CONTRACTS`): one line names what a source from outside the package lacks."""
  return registries.build(KIND, source_name(config.name), config)


def optional(source, method: str):
  """`source.method`, or `Source`'s default for a source that does not subclass it."""
  found = getattr(source, method, None)
  return found if callable(found) else getattr(Source(None), method)


registries.register_kind(KIND, 'where the examples come from (data.name)',
                         lambda config: (source_name(config.data.name),))
