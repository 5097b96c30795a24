"""Evaluators by name, as `config.evals` lists them (the habit of big_vision's `evaluators/`).

An evaluator is built once per run by `create(model, config, dataset)` — or not at all where
the model lacks what it needs (`None`: exact enumeration of a Gaussian latent) — and is then
called on a split as `evaluator(params, split, rng) -> result`. A result is a dict of numbers
(written as metrics `<split>/<name>`), nested dicts of numbers (`<split>/<key>/<name>`),
lists (kept in the JSON report only) and uint8 images `[H, W, C]` (written as PNG files and
TensorBoard images). The training loop and `experiments.evaluate` run the same evaluators.

An evaluator may also declare, as attributes:
  computes_log_likelihood  'exact' or 'estimate': where an exact log p(x) is computed, the
                           estimates of it add nothing and are left out unless named;
  work(num_examples)       about how many passes through the model it makes on that many
                           examples (the plan `experiments.evaluate` prints; default: one each);
  report_name_part         what it adds to the name of `experiments.evaluate`'s report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import jax
import numpy as np
from absl import logging

from vae_jax import options, registries
from vae_jax.options import OPERATIONAL, Option


class Evaluator(Protocol):

  def __call__(self, params, split, rng: jax.Array) -> dict: ...


@runtime_checkable
class Costed(Protocol):
  """An evaluator that says about how many passes through the model it makes."""

  def work(self, num_examples: int) -> float: ...


registries.register_kind('evaluator', 'what is measured on a split (config.evals names them)',
                         lambda config: tuple(config.evals))


def register(name: str, *, during_training: bool, by_default: bool = True,
             checks: Iterable[Callable] = (), report_lines: Callable | None = None,
             report_rank: int = 100, applies_to: str = 'every model', headline: bool = False,
             **evaluator_options: Option):
  """Registers `create(model, config, dataset) -> Evaluator | None` under `name`, with its
  options (keyword arguments: `config.evals.<name>.<option>`) and config checks. Every evaluator
  has `during_training` (run at each evaluation of the training loop); one that is costly to
  run is made `by_default=False` (`experiments.evaluate` runs it only when named).
  `report_lines(report, seconds) -> lines` writes its part of `experiments.evaluate`'s summary
  (without it, its numbers are listed); summaries go by `report_rank`, lowest first.
  `applies_to` says, for an evaluator whose `create` may return None, what it needs; the
  `headline` evaluator runs first (its numbers open every log line and report)."""
  declared = {'during_training': Option(during_training, 'at every evaluation of the training '
                                        'loop (else experiments.evaluate only)')}
  if not by_default:
    declared['by_default'] = Option(False, 'experiments.evaluate runs it only when --evals '
                                    'names it')
  declared.update(evaluator_options)

  def decorate(create_fn):
    registries.add(registries.Component(
        'evaluator', name, create_fn, options.at(f'evals.{name}', traits=(OPERATIONAL,),
                                                 **declared), tuple(checks),
        {'report_lines': report_lines, 'report_rank': report_rank, 'applies_to': applies_to,
         'headline': headline}))
    return create_fn

  return decorate


def create(model, config, dataset, *, names=None,
           during_training: bool = False) -> dict[str, Evaluator]:
  """The evaluators of `config.evals` that apply to `model`: those named in `names`; with
  `during_training`, those whose `during_training` option is set; else all but those whose
  `by_default` option is False (costly ones, run when named) and, where an exact log p(x) is
  computed, the estimators of it (`redundant_estimates`)."""
  chosen = {}
  # The ELBO first (the headline of every log line and report), then the config's order.
  for name, settings in sorted(config.evals.items(), key=lambda item: not _is_headline(item[0])):
    if (names is not None and name not in names) or (
        during_training and not settings.during_training) or (
            names is None and not during_training and not settings.get('by_default', True)):
      continue
    evaluator = registries.build('evaluator', name, model, config, dataset)
    if evaluator is not None:
      chosen[name] = evaluator
  if names is None:
    for name in redundant_estimates(chosen):
      logging.info('Leaving out %s: the exact log p(x) is computed (name it in --evals to run '
                   'it anyway).', name)
      del chosen[name]
  return chosen


def _is_headline(name: str) -> bool:
  """Whether evaluator `name` registered itself as the headline, run first (the ELBO)."""
  return name in registries.names('evaluator') and registries.get(
      'evaluator', name).extras.get('headline', False)


def redundant_estimates(chosen: dict[str, Evaluator]) -> list[str]:
  """The log p(x) estimators among `chosen` when one of them computes it exactly."""
  kinds = {name: getattr(evaluator, 'computes_log_likelihood', None)
           for name, evaluator in chosen.items()}
  if 'exact' not in kinds.values():
    return []
  return [name for name, kind in kinds.items() if kind == 'estimate']


def work(evaluator: Evaluator, num_examples: int) -> float:
  """About how many passes through the model `evaluator` makes on `num_examples` examples."""
  return float(evaluator.work(num_examples)) if isinstance(evaluator, Costed) else num_examples


def scalars(result: dict, prefix: str = '') -> dict[str, float]:
  """The numbers of a result (nested dicts joined with '/'), for metric writers."""
  flat = {}
  for key, value in result.items():
    if isinstance(value, dict):
      flat.update(scalars(value, f'{prefix}{key}/'))
    elif isinstance(value, (int, float, np.number)):
      flat[f'{prefix}{key}'] = value.item() if isinstance(value, np.number) else value
  return flat


def images_of(result: dict) -> dict[str, np.ndarray]:
  """The uint8 images `[H, W, C]` of a result."""
  return {key: value for key, value in result.items()
          if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3}


def applies_to(name: str) -> str:
  """What evaluator `name` needs of a model and its options, in a few words."""
  return registries.get('evaluator', name).extras['applies_to']


def summary_lines(report: dict) -> list[str]:
  """Each evaluator's part of a report's summary, in `report_rank` order: its own
  `report_lines`, or else its numbers (`report['evaluators'][name]` lists its keys)."""
  names = [name for name in report.get('seconds', {}) if name in registries.names('evaluator')]
  extras = {name: registries.get('evaluator', name).extras for name in names}
  lines = []
  for name in sorted(names, key=lambda name: extras[name].get('report_rank', 100)):
    seconds = report['seconds'][name]
    if extras[name].get('report_lines'):
      lines += extras[name]['report_lines'](report, seconds)
      continue
    for key in report.get('evaluators', {}).get(name, ()):
      for path, value in scalars({key: report[key]}).items():
        lines.append(f'  {path:<13} {value:10.4g}  ({name}, {seconds:.0f} s)')
  return lines


def format_errors(result: dict) -> str:
  """'± e (Monte Carlo) ± e (test set)', for the errors a result measured."""
  errors = []
  if result.get('monte_carlo_error') is not None:
    errors.append(f"± {result['monte_carlo_error']:.3f} (Monte Carlo)")
  if result.get('test_set_error') is not None:
    errors.append(f"± {result['test_set_error']:.3f} (test set)")
  return ' '.join(errors)
