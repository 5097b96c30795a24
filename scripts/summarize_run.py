r"""Prints a run's evaluations as a markdown table: one row per evaluation, nats per example.

  python -m scripts.summarize_run --workdir=/tmp/mnist

Columns: step, epoch, test ELBO, its reconstruction term E_q log p(x|z) and KL (validation too when the run
has one), and the training throughput (examples/s) logged closest before the evaluation.
"""


from absl import app, flags

from vae_jax.engine import metric_writers

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir.', required=True)


def summary_rows(metrics: list[dict]) -> list[dict]:
  """One row per step that has test metrics; later lines for a step replace earlier ones
  (a resumed run re-evaluates the steps after its last checkpoint)."""
  by_step, epoch, throughput = {}, {}, None
  for line in metrics:
    if 'epoch' in line:
      epoch[line['step']] = line['epoch']
      throughput = line.get('examples_per_sec', throughput)
    if 'test/elbo' in line:
      by_step[line['step']] = {**line, 'epoch': epoch.get(line['step']),
                               'examples_per_sec': throughput}
  return [by_step[step] for step in sorted(by_step)]


def markdown_table(rows: list[dict]) -> str:
  splits = [s for s in ('test', 'validation') if any(f'{s}/elbo' in row for row in rows)]
  header = ['step', 'epoch'] + [f'{s} {term}' for s in splits for term in ('ELBO', 'E_q log p(x|z)',
                                                                           'KL')] + ['examples/s']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for row in rows:
    cells = [str(row['step']), '' if row['epoch'] is None else f"{row['epoch']:g}"]
    for split in splits:
      terms = metric_writers.with_current_names(metric_writers.split_metrics(row, split))
      cells += [f"{terms[name]:.2f}" for name in ('elbo', 'reconstruction', 'kl')]
    cells.append('' if row['examples_per_sec'] is None else f"{row['examples_per_sec']:.0f}")
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv):
  del argv
  print(markdown_table(summary_rows(metric_writers.read_metrics(_WORKDIR.value))))


if __name__ == '__main__':
  app.run(main)
