"""What importing vae_jax does: no module imports itself back through others (each can be
imported first), the library imports nothing from configs/, launchers load no more than they
use, and nothing global (matplotlib's backend) changes."""

import ast
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = pathlib.Path(REPO_ROOT) / 'vae_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob('*.py'))}


def _run_at_import(body: list[ast.stmt]):
  """The statements that run when the module is imported: not function bodies, nor what
  `if TYPE_CHECKING:` guards."""
  for node in body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    if isinstance(node, ast.If) and 'TYPE_CHECKING' in ast.unparse(node.test):
      yield from _run_at_import(node.orelse)
      continue
    yield node
    for field in ('body', 'orelse', 'finalbody', 'handlers'):
      yield from _run_at_import(getattr(node, field, None) or [])


def _imported_at_import(name: str, path: pathlib.Path) -> set[str]:
  """The vae_jax modules that importing `name` imports first. `from P import n` imports P's
  `__init__` (unless P is a package `name` sits in: that one is already being imported) and,
  where `n` is a module, `P.n`."""
  imported = set()
  for node in _run_at_import(ast.parse(path.read_text(encoding='utf-8')).body):
    if isinstance(node, ast.Import):
      imported |= {alias.name for alias in node.names if alias.name.split('.')[0] == 'vae_jax'}
    elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
          and node.module.split('.')[0] == 'vae_jax'):
      for alias in node.names:
        submodule = f'{node.module}.{alias.name}'
        if submodule in MODULES:
          imported.add(submodule)
        if submodule not in MODULES or not name.startswith(f'{node.module}.'):
          imported.add(node.module)
  return imported - {name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle of `graph` (module -> the modules it imports), or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for successor in sorted(graph.get(node, ())):
      if state.get(successor) == 'open':
        return stack[stack.index(successor):] + [successor]
      if successor not in state:
        found = visit(successor)
        if found:
          return found
    stack.pop()
    state[node] = 'done'
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_the_import_graph_of_vae_jax_has_no_cycle():
  graph = {name: _imported_at_import(name, path) for name, path in MODULES.items()}
  assert {'vae_jax.engine.steps', 'vae_jax.evaluators'} <= graph['vae_jax.engine.loop']  # seen
  cycle = _cycle(graph)
  assert cycle is None, f'import cycle: {" -> ".join(cycle)}'


def test_options_imports_nothing_of_the_package_not_even_inside_a_function():
  """registries imports options; the checks that need the registry live in registries."""
  tree = ast.parse(MODULES['vae_jax.options'].read_text(encoding='utf-8'))
  imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
  imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names]
  assert not [name for name in imported if name and name.startswith('vae_jax')]


def test_the_cycle_finder_finds_a_cycle():
  assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == ['a', 'b', 'c', 'a']
  assert _cycle({'a': {'b'}, 'b': set()}) is None


def _python(code: str, **env) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=120,
                        env={**os.environ, 'PYTHONPATH': REPO_ROOT, **env})


@pytest.mark.parametrize('module', ['vae_jax.objectives', 'vae_jax.models.discrete'])
def test_each_end_of_the_former_loop_imports_first(module):
  result = _python(f'import {module}')
  assert result.returncode == 0, result.stderr[-2000:]


def test_the_library_imports_nothing_from_configs():
  """Defaults and presets are the caller's (launchers, tests): the library takes them as
  arguments."""
  for name, path in MODULES.items():
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
      modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                 [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
      assert not any(module.split('.')[0] == 'configs' for module in modules), name


def test_the_launchers_shared_module_takes_the_interruption_from_errors_not_training():
  source = ast.parse((pathlib.Path(REPO_ROOT) / 'experiments' / 'launch.py').read_text(
      encoding='utf-8'))
  imported = {alias.name if isinstance(node, ast.Import) else f'{node.module}.{alias.name}'
              for node in ast.walk(source) if isinstance(node, (ast.Import, ast.ImportFrom))
              for alias in node.names}
  assert 'vae_jax.errors.TrainingInterrupted' in imported
  assert not {'vae_jax.engine.training', 'vae_jax.engine.training.TrainingInterrupted'} & imported
  from experiments import launch  # pylint: disable=import-outside-toplevel
  from vae_jax import errors  # pylint: disable=import-outside-toplevel
  from vae_jax.engine import training
  assert training.TrainingInterrupted is errors.TrainingInterrupted  # training's name still works

  def interrupted_main(argv):
    del argv
    raise errors.TrainingInterrupted(step=7, signal_number=signal.SIGTERM)

  readable_errors = launch._main_with_readable_errors  # pylint: disable=protected-access
  with pytest.raises(SystemExit) as exit_info:  # the clean stop: 128 + the signal
    readable_errors(interrupted_main, ['launcher'])
  assert exit_info.value.code == 128 + signal.SIGTERM


def test_importing_vae_jax_and_drawing_a_figure_leaves_matplotlibs_backend_alone():
  code = ('import sys\n'
          'import matplotlib\n'
          'import numpy as np\n'
          'before = matplotlib.get_backend()\n'
          'import vae_jax, vae_jax.figures, vae_jax.evaluators, vae_jax.engine.training\n'
          'from vae_jax import figures\n'
          'figure = figures.latent_scatter(np.random.default_rng(0).normal(size=(40, 2)),\n'
          '                                np.arange(40) % 4)\n'
          'assert figure.dtype == np.uint8 and figure.shape[-1] == 3\n'
          'print(before, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)\n')
  result = _python(code, MPLBACKEND='svg')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ['svg', 'svg', 'False']  # nor was pyplot's state touched


def test_the_science_never_imports_the_engine():
  """Models, likelihoods, priors, objectives and evaluators are usable without the run
  machinery (vae_jax/engine/), directly or through what they import."""
  graph = {name: _imported_at_import(name, path) for name, path in MODULES.items()}
  science = [name for name in graph if name.startswith(('vae_jax.models', 'vae_jax.evaluators'))
             or name in ('vae_jax.likelihoods', 'vae_jax.priors', 'vae_jax.objectives',
                         'vae_jax.distributions', 'vae_jax.discretized_logistic')]
  assert len(science) > 20
  for name in science:
    reached, frontier = set(), [name]
    while frontier:
      for imported in graph.get(frontier.pop(), ()):
        if imported not in reached:
          reached.add(imported)
          frontier.append(imported)
    assert not [module for module in reached if module.startswith('vae_jax.engine')], name


def test_the_engine_reaches_model_families_only_through_their_registrations():
  """A family (top_down, discrete, ...) is a file plus a registration: the run machinery never
  names one, so a family from outside the package gets the same treatment (its earlier
  checkpoint layouts too: `families.register(..., earlier_layouts=...)`)."""
  shared = {'vae_jax.models', 'vae_jax.models.families', 'vae_jax.models.components'}
  for name, path in MODULES.items():
    if name.startswith('vae_jax.engine'):
      named = {module for module in _imported_at_import(name, path)
               if module.startswith('vae_jax.models')}
      assert named <= shared, (name, named - shared)


def test_the_training_launcher_imports_no_plotting_nor_streaming_library():
  """Every launch pays for what importing its modules loads: matplotlib and scipy.stats (0.9 s)
  wait until a figure is drawn, grain (0.2 s) until a run streams its data."""
  result = _python('import sys\n'
                   'import experiments.train\n'
                   'print(*sorted(name for name in ("matplotlib", "scipy.stats", "grain")\n'
                   '              if name in sys.modules))\n')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == []
