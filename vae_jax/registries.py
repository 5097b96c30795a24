"""Name -> function tables filled by decorators (model families, estimators, evaluators)."""

from __future__ import annotations


def registrar(table: dict, what: str, name: str):
  """A decorator that files its function in `table` under `name`, once."""

  def decorate(function):
    if name in table:
      raise ValueError(f'{what} {name!r} is registered twice.')
    table[name] = function
    return function

  return decorate
