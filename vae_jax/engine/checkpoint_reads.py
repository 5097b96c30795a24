"""Reading a checkpoint beyond what orbax does: a parameter layout from before a model's
change converted to today's (each family registers its earlier layouts), and the noise of a
failed read silenced. `checkpointing` reads every checkpoint through `read`."""

import asyncio

from absl import logging

from vae_jax.models import families


def read(restore, target, step: int):
  """`restore(like)` shaped like `target` (an old layout converted, `_any_layout`); if it
  fails, tensorstore's leftover hand-overs are dropped before the error goes up."""
  try:
    return _any_layout(restore, target, step)
  except Exception:
    drop_callbacks_to_closed_event_loops()
    raise


def _any_layout(restore, target, step: int):
  """`restore(target)`; or, for a checkpoint in an earlier layout some family registered
  (`families.earlier_layouts`), `restore` of `target` in that layout, converted to `target`'s,
  with a note in the log."""
  try:
    return restore(target)
  except Exception as error:  # pylint: disable=broad-except
    for layout in families.earlier_layouts():
      if not layout.applies(target):
        continue
      try:
        restored = restore(layout.earlier(target))
      except Exception:  # pylint: disable=broad-except
        continue
      logging.warning('The checkpoint at step %d holds %s.', step, layout.name)
      return layout.converted(restored, target)
    raise error


def drop_callbacks_to_closed_event_loops() -> None:
  """After a checkpoint read fails, tensorstore still hands the results of the reads it had
  pending to the asyncio event loop orbax ran them in, which orbax has closed: each hand-over
  raised in tensorstore's threads and printed a 'RuntimeError: Event loop is closed' traceback
  (20 to 40 of them, after the one-line warning). Nothing awaits those results; from the first
  failed read on, such hand-overs are dropped. Calls to open loops are unchanged."""
  original = asyncio.BaseEventLoop.call_soon_threadsafe
  if getattr(original, 'drops_closed', False):
    return

  def call_soon_threadsafe(self, callback, *args, **kwargs):
    if self.is_closed():
      return None
    return original(self, callback, *args, **kwargs)

  call_soon_threadsafe.drops_closed = True
  asyncio.BaseEventLoop.call_soon_threadsafe = call_soon_threadsafe
