"""docs/extending.md's examples are complete: each file is copied out of the page into a folder
outside the package, and a run that uses it trains one epoch through `experiments.train` and is
evaluated through `experiments.evaluate` — without any edit to vae_jax."""

import json
import os
import re
import subprocess
import sys

import pytest

from scripts import bad_inputs
from tests.conftest import REPO_ROOT

# The overrides that put each example to use: all six in one run (the Laplace prior and the
# continuous Bernoulli likelihood in the linear-decoder family, on bars and stripes from the
# example data source, trained with gradient noise and evaluated with the reconstruction error
# too).
USES = {
    'laplace_prior': ['--config.model.prior.kind=laplace', '--config.model.prior.laplace.scale=0.5'],
    'continuous_bernoulli': ['--config.data.binarization=none',
                             '--config.model.likelihood.kind=continuous_bernoulli'],
    'reconstruction_error': ['--config.evals.reconstruction_error.max_examples=200'],
    'gradient_noise': ["--config.optimizer.transforms=('gradient_noise',)"],
    'linear_decoder_vae': ['--config.model.family=linear_decoder',
                           '--config.model.linear_decoder.use_bias=False'],
    'bars_and_stripes': ['--config.data.name=bars_and_stripes',
                         '--config.data.bars_and_stripes.num_examples=1000'],
}
TINY_RUN = ['--config=configs/quickstart.py', '--config.num_epochs=1', '--config.batch_size=100',
            '--config.model.latent_dim=2', '--config.model.encoder.hidden_sizes=(16,)',
            '--config.model.decoder.hidden_sizes=(16,)', '--config.evals.images.num_images=4',
            '--config.log_every_steps=5']


def example_files() -> dict[str, str]:
  """{module name: source} of every '# file: NAME.py' code block of docs/extending.md."""
  with open(os.path.join(REPO_ROOT, 'docs', 'extending.md'), encoding='utf-8') as f:
    page = f.read()
  return {name: source for name, source in
          re.findall(r'```python\n# file: (\w+)\.py\n(.*?)```', page, flags=re.DOTALL)}


def test_the_page_holds_one_example_of_each_kind():
  assert set(example_files()) == set(USES)


def _launch(module: str, arguments: list[str], folder) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), REPO_ROOT]))
  return subprocess.run([sys.executable, '-m', module, *arguments], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_the_examples_from_outside_the_package_train_and_evaluate(tmp_path):
  folder = tmp_path / 'my_lab'
  folder.mkdir()
  for name, source in example_files().items():
    (folder / f'{name}.py').write_text(source, encoding='utf-8')
  workdir = tmp_path / 'run'
  imports = tuple(sorted(USES))
  trained = _launch('experiments.train', [
      *TINY_RUN, f'--config.imports={imports!r}', *(arg for args in USES.values() for arg in args),
      f'--workdir={workdir}'], folder)
  assert trained.returncode == 0, trained.stderr[-3000:]
  with open(workdir / 'config.json', encoding='utf-8') as f:
    saved = json.load(f)
  assert saved['imports'] == list(imports)
  assert saved['model']['prior']['laplace']['scale'] == 0.5  # its option, set on the command line
  assert saved['model']['linear_decoder']['use_bias'] is False
  assert saved['data']['bars_and_stripes']['num_examples'] == 1000
  with open(workdir / 'metrics.jsonl', encoding='utf-8') as f:
    metrics = [json.loads(line) for line in f]
  assert any('test/reconstruction_mse' in row for row in metrics)  # during training too

  evaluated = _launch('experiments.evaluate', [
      f'--workdir={workdir}', '--batch_size=100',
      '--options=quadrature.points_per_dim=64,quadrature.max_refinements=1'], folder)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  report_path = re.search(r'written to\s+(\S+\.json)', evaluated.stdout).group(1)
  with open(report_path, encoding='utf-8') as f:
    report = json.load(f)
  assert 0 < report['reconstruction_mse'] < 1 and report['elbo'] < 0
  # Two latent units: log p(x) is exact by quadrature (a continuous density: it may be
  # positive), and the ELBO stays below it.
  assert report['quadrature']['log_likelihood'] > report['elbo'] - 0.1


def test_a_module_that_cannot_be_imported_is_named_in_one_message(tmp_path):
  result = _launch('experiments.train', [*TINY_RUN, "--config.imports=('no_such_lab_module',)",
                                         f'--workdir={tmp_path / "run"}'], tmp_path)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      "error: config.imports names 'no_such_lab_module', which cannot be imported")
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow
@pytest.mark.parametrize('module', sorted(bad_inputs.BROKEN_COMPONENTS))
def test_a_component_that_breaks_its_contract_is_refused_in_one_line_before_any_write(
    module, tmp_path):
  source, overrides, message = bad_inputs.BROKEN_COMPONENTS[module]
  (tmp_path / f'{module}.py').write_text(source, encoding='utf-8')
  result = _launch('experiments.train', [*TINY_RUN, f"--config.imports=('{module}',)",
                                         *overrides, f'--workdir={tmp_path / "run"}'], tmp_path)
  assert result.returncode == 1, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and re.match(f'error: {message}', errors[0]), result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'run').exists()
