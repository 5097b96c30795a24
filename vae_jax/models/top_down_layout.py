"""The top-down family's two parameter layouts (vae_jax/models/top_down.py) and conversions
between them, bit for bit.

Unrolled (`model.top_down.scan=False`, and every checkpoint written before 2026-12): one module
per decoder group, `groups_<index>` (coarse to fine), and per encoder block,
`encoder/block_r<r>_<index>`. Stacked (`scan=True`): the groups of one resolution as
`groups_r<r>` and the encoder blocks of one resolution as `encoder/blocks_r<r>`, each leaf with
a leading axis over them in the same order. A stacked model may keep some resolutions unrolled
(their groups differ in shape): their `groups_<index>` keep their indices, and the stacks take
the remaining indices in order, coarsest resolution first.

`stacked_state` and `unstacked_state` convert every parameter tree inside a train state (the
parameters, Adam's moments, the moving average), so that a workdir of the old layout resumes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

GROUP = re.compile(r'groups_(\d+)')
GROUP_STACK = re.compile(r'groups_r(\d+)')
BLOCK = re.compile(r'block_r(\d+)_(\d+)')
BLOCK_STACK = re.compile(r'blocks_r(\d+)')


def is_top_down_params(tree) -> bool:
  """Whether `tree` is a top-down model's parameters (the dict under 'params')."""
  return isinstance(tree, Mapping) and 'encoder' in tree and any(
      GROUP.fullmatch(name) or GROUP_STACK.fullmatch(name) for name in tree)


def _stack(leaves):
  if all(isinstance(leaf, np.ndarray) for leaf in leaves):
    return np.stack(leaves)
  return jnp.stack(leaves)


def _at(leaf, position: int):
  """`leaf[position]`; for a shape (`jax.ShapeDtypeStruct`), the shape without its first axis."""
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
  return leaf[position]


def _leading(tree) -> int:
  return jax.tree.leaves(tree)[0].shape[0]


def _resolution(pattern: re.Pattern, name: str) -> int:
  return int(pattern.fullmatch(name)[1])


def _stack_indices(names, sizes: dict[str, int]) -> dict[str, list[int]]:
  """The group indices each stack `groups_r<r>` holds: those the unrolled `groups_<index>`
  among `names` do not, in order, coarsest stack first."""
  unrolled = {int(GROUP.fullmatch(name)[1]) for name in names if GROUP.fullmatch(name)}
  free = iter(index for index in range(len(unrolled) + sum(sizes.values()))
              if index not in unrolled)
  return {name: [next(free) for _ in range(sizes[name])]
          for name in sorted(sizes, key=lambda name: _resolution(GROUP_STACK, name))}


def unstacked(params: Mapping) -> dict:
  """The unrolled layout of `params` (either layout)."""
  sizes = {name: _leading(tree) for name, tree in params.items() if GROUP_STACK.fullmatch(name)}
  out = {name: tree for name, tree in params.items()
         if name != 'encoder' and not GROUP_STACK.fullmatch(name)}
  for name, indices in _stack_indices(params, sizes).items():
    for position, index in enumerate(indices):
      out[f'groups_{index}'] = jax.tree.map(lambda leaf, p=position: _at(leaf, p), params[name])
  encoder = {}
  for name, tree in params['encoder'].items():
    if BLOCK_STACK.fullmatch(name):
      resolution = _resolution(BLOCK_STACK, name)
      for position in range(_leading(tree)):
        encoder[f'block_r{resolution}_{position}'] = jax.tree.map(
            lambda leaf, p=position: _at(leaf, p), tree)
    else:
      encoder[name] = tree
  out['encoder'] = encoder
  return out


def stacked(params: Mapping, template: Mapping) -> dict:
  """`params` (either layout) in `template`'s layout (a model's parameters, or their shapes)."""
  params = unstacked(params)
  sizes = {name: _leading(tree) for name, tree in template.items()
           if GROUP_STACK.fullmatch(name)}
  out = {name: params[name] for name in template if name != 'encoder' and name not in sizes}
  for name, indices in _stack_indices(template, sizes).items():
    out[name] = jax.tree.map(lambda *leaves: _stack(leaves),
                             *(params[f'groups_{index}'] for index in indices))
  encoder = {}
  for name, tree in template['encoder'].items():
    if BLOCK_STACK.fullmatch(name):
      resolution = _resolution(BLOCK_STACK, name)
      encoder[name] = jax.tree.map(
          lambda *leaves: _stack(leaves),
          *(params['encoder'][f'block_r{resolution}_{position}']
            for position in range(_leading(tree))))
    else:
      encoder[name] = params['encoder'][name]
  out['encoder'] = encoder
  return out


def unstacked_state(state):
  """`state` (any pytree) with each top-down parameter tree in it unrolled."""
  return jax.tree.map(lambda tree: unstacked(tree) if is_top_down_params(tree) else tree, state,
                      is_leaf=is_top_down_params)


def stacked_state(state, template):
  """`state` with each top-down parameter tree in it in `template`'s layout (`template`: a
  state of the same structure around them)."""
  return jax.tree.map(
      lambda tree, like: stacked(tree, like) if is_top_down_params(tree) else tree,
      state, template, is_leaf=is_top_down_params)


def has_stacks(state) -> bool:
  """Whether any top-down parameter tree in `state` is (partly) stacked."""
  found = []
  jax.tree.map(lambda tree: found.append(is_top_down_params(tree) and (
      any(GROUP_STACK.fullmatch(name) for name in tree)
      or any(BLOCK_STACK.fullmatch(name) for name in tree['encoder']))), state,
               is_leaf=is_top_down_params)
  return any(found)

