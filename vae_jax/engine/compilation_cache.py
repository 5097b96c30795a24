"""JAX's persistent compilation cache, on by default in every launcher: a resumed run, a second
run of a config, its evaluation and the test suite reuse compiled programs."""

import os

import jax


def use(folder: str | None) -> None:
  """Turns on JAX's persistent compilation cache in `folder` (None: $JAX_COMPILATION_CACHE_DIR,
  else the default under the user's cache folder; '': off). A cached program runs exactly as
  a freshly compiled one; every program is cached, however fast it compiled."""
  if folder is None:
    folder = os.environ.get('JAX_COMPILATION_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'vae_jax',
        'jax_compilation')
  if not folder:
    jax.config.update('jax_enable_compilation_cache', False)
    return
  jax.config.update('jax_compilation_cache_dir', os.path.expanduser(folder))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
