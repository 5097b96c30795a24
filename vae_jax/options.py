"""A component's options, each declared once beside the component: its default, a one-line doc,
its check, and the traits the engine needs to know (`Option`).

A component declares its options as `{dotted config path: Option}` (`at` builds one block), and
registers them with itself (`vae_jax.registries.register`). The default config, the config
checks, the keys a sweep may vary, the keys a resume may change and the configuration reference
(docs/configuration.md) are all derived from these declarations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

# Traits of an option (what changing it means to the engine):
SWEEPABLE = 'sweepable'  # reaches the compiled step as an array: runs differing in it train as one program
SHAPES_STATE = 'shapes_state'  # changes the checkpointed state's shapes or structure: a resume never changes it
OPERATIONAL = 'operational'  # changes neither what is trained nor its result: a resume may change it
SPLITS = 'splits'  # decides which examples are trained on: a resume never changes it
TRAITS = (SWEEPABLE, SHAPES_STATE, OPERATIONAL, SPLITS)

Check = Callable[[Any], 'str | None']  # value -> what is wrong with it ('must be ...'), or None


@dataclasses.dataclass(frozen=True)
class Option:
  """One config key of a component.

  `resumable_between`: for a key whose change is refused on resume except between certain
  values (groups of values that give the same run), those groups."""
  default: Any
  doc: str
  check: Check | None = None
  traits: frozenset[str] = frozenset()
  resumable_between: tuple[frozenset, ...] = ()

  def __post_init__(self):
    unknown = set(self.traits) - set(TRAITS)
    if unknown:
      raise ValueError(f'Unknown option traits {sorted(unknown)}; choose from {TRAITS}.')

  def has(self, trait: str) -> bool:
    return trait in self.traits


def at(prefix: str, *, traits: tuple[str, ...] = (), **options: Option) -> dict[str, Option]:
  """`{f'{prefix}.{name}': option}`, each option given `traits` besides its own."""
  return {f'{prefix}.{name}' if prefix else name:
          dataclasses.replace(option, traits=frozenset(option.traits) | set(traits))
          for name, option in options.items()}


def problems(option: Option, path: str, value) -> list[str]:
  """'path=value must ...' when `option.check` refuses `value`."""
  if option.check is None:
    return []
  problem = option.check(value)
  return [f'{path}={_shown(value)} {problem}'] if problem else []


def _shown(value) -> str:
  return repr(value) if isinstance(value, str) else str(tuple(value) if isinstance(
      value, (list, tuple)) else value)


# Checks: each returns what is wrong ('must be at least 1.'), or None.

def at_least(low) -> Check:
  return lambda value: None if value >= low else f'must be at least {low}.'


def positive(value) -> str | None:
  return None if value > 0 else 'must be positive.'


def non_negative(value) -> str | None:
  return None if value >= 0 else 'must be non-negative.'


def one_of(*choices) -> Check:
  return lambda value: None if value in choices else f'is not one of {list(choices)}.'


def each_at_least(low) -> Check:
  return lambda values: (None if all(value >= low for value in values)
                         else f'must hold sizes of at least {low} each.')


def flatten(tree: Mapping, prefix: str = '') -> dict[str, Any]:
  """{dotted key: leaf} of a nested mapping (a config's `to_dict()`)."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat
