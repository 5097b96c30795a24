"""The default config: every option of every registered component, at its default.

Each option is declared once, beside the component that reads it (`vae_jax.options.Option`:
default, one-line doc, check, traits), and registered with it (`vae_jax.registries`); this file
only assembles them (`vae_jax.catalog`). docs/configuration.md lists them all, by component
(`python -m scripts.config_reference`). Other configs start from this one and override:

  config = default.get_config()
  config.model.likelihood.kind = 'gaussian'

A component from outside vae_jax (a researcher's `my_lab/prior.py`, say) is named in `imports`:
`default.get_config(imports=('my_lab.prior',))` imports it first, so its options are in the
config, and records it in `config.imports` so that every later launch imports it too.
Sizes are tuples; values are in nats per example unless named otherwise.
"""

import ml_collections

from vae_jax import catalog


def get_config(imports: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  return catalog.default_config(tuple(imports))
