"""The documentation matches the code."""

import glob
import os
import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_configuration_reference_is_up_to_date():
  generated = subprocess.run([sys.executable, '-m', 'scripts.config_reference'], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout
  with open(os.path.join(REPO_ROOT, 'docs', 'configuration.md'), encoding='utf-8') as f:
    assert f.read() == generated, ('docs/configuration.md is stale: run '
                                   '`python -m scripts.config_reference > docs/configuration.md`')


def _documents():
  """The README, the changelog, the docs and every page of docs/results/, relative to the root."""
  results = sorted(os.path.relpath(path, REPO_ROOT)
                   for path in glob.glob(os.path.join(REPO_ROOT, 'docs', 'results', '*.md')))
  assert results, 'docs/results/ holds no pages'
  return ['README.md', 'CHANGELOG.md', 'docs/tutorial.md', 'docs/extending.md', *results]


def test_every_figure_and_file_the_docs_link_to_exists():
  for document in _documents():
    with open(os.path.join(REPO_ROOT, document), encoding='utf-8') as f:
      text = f.read()
    folder = os.path.dirname(os.path.join(REPO_ROOT, document))
    for target in re.findall(r'\]\(([^)#\s]+)\)', text):
      if target.startswith('http'):
        continue
      assert os.path.exists(os.path.join(folder, target)), f'{document} links to missing {target}'


def test_config_files_the_docs_name_exist():
  for document in _documents():
    with open(os.path.join(REPO_ROOT, document), encoding='utf-8') as f:
      for path in set(re.findall(r'configs/\w+\.py', f.read())):
        assert os.path.exists(os.path.join(REPO_ROOT, path)), f'{document} names missing {path}'


def test_readme_is_at_most_250_lines():
  with open(os.path.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
    num_lines = len(f.read().splitlines())
  assert num_lines <= 250, (f'README.md has {num_lines} lines; keep it at most 250 (details go to '
                            'docs/, measured numbers to docs/results/)')
