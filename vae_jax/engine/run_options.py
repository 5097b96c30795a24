"""The run-level options: what the engine itself reads (batch size, epochs, input pipeline,
logging, evaluation and checkpoint schedules, guards, `imports`, the published result)."""

from __future__ import annotations

import jax
from ml_collections import config_dict

from vae_jax import compiler_options, options, registries
from vae_jax.engine import runners
from vae_jax.options import OPERATIONAL, SWEEPABLE, Option


def _engine_problems(config):
  num_devices = jax.device_count()
  if config.batch_size % num_devices:
    yield (f'batch_size={config.batch_size} must be divisible by the {num_devices} devices that '
           'share each batch.')


# The run-level options: what the engine reads.
registries.add(registries.Component('run', 'engine', None, {
    'seed': Option(0, 'every random stream of the run (init, data order, noise) derives from it',
                   traits=frozenset({SWEEPABLE})),
    'batch_size': Option(100, 'per step, over all devices (each gets batch_size / device count)',
                         options.at_least(1)),
    'num_epochs': Option(10, 'passes over the training split (the remainder batch is dropped)',
                         options.at_least(1)),
    'imports': Option((), 'modules to import before building: they register components from '
                      "outside vae_jax (e.g. ('my_lab.prior',); docs/extending.md)"),
    'input_pipeline': Option(
        'device', "'device': the training split lives on the accelerator, steps_per_call steps "
        "per compiled call; 'host': the host feeds every batch; 'grain': grain streams the "
        'batches from the records on disk (its own batch order)',
        lambda value: options.one_of(*runners.INPUT_PIPELINES)(value),
        resumable_between=(frozenset({'device', 'host'}),)),  # the same batches
    **options.at(
        '', traits=(OPERATIONAL,),
        cpu_optimization_level=Option(
            config_dict.placeholder(int), "LLVM's optimisation level (0-3) for the run's "
            "model init, training and evaluation programs on XLA:CPU; None: XLA's own (3). "
            'The top-down configs set 2: their step compiles 20-37 % faster and runs as fast '
            '(vae_jax/compiler_options.py)',
            lambda value: None if value is None or value in compiler_options.LEVELS else
            f'is not one of {list(compiler_options.LEVELS)} (or None).'),
        steps_per_call=Option(100, "'device': steps per compiled call (single steps up to "
                              'log/eval points)', options.at_least(1)),
        sweep_execution=Option('auto', "a group of runs (experiments.sweep) runs 'vmap'ped, "
                               "'map'ped (looped inside one program), or 'auto': both timed "
                               'when the group starts, the faster kept',
                               lambda value: options.one_of(*runners.EXECUTIONS)(value)),
        eval_every_epochs=Option(1, 'config.evals marked during_training, and a checkpoint',
                                 options.at_least(1)),
        eval_batch_size=Option(1000, 'examples per evaluation batch (does not change the '
                               'results)', options.at_least(1)),
        log_every_steps=Option(100, 'training metrics (means since the last log) and progress',
                               options.at_least(1)),
        checkpoint_every_steps=Option(1000, 'also at every evaluation and at the end',
                                      options.at_least(1)),
        checkpoints_to_keep=Option(3, 'the latest ones; older checkpoints are deleted',
                                   options.at_least(1)),
        max_consecutive_nonfinite_steps=Option(
            20, 'updates with a non-finite loss or gradient are skipped and counted; this many '
            'in a row stop the run with an error', options.at_least(1)),
        max_skipped_share=Option(
            0.5, 'the run stops with an error once more than this share of the updates since '
            'the last log were skipped (a gradient norm above optimizer.skip_threshold, or '
            'non-finite); 1: never', lambda value: None if 0 < value <= 1 else
            'must be in (0, 1].'),
        divergence_factor=Option(
            10.0, 'the run stops with an error once its mean training loss, or its negative '
            'test ELBO, exceeds the loss at step 0, L0, by this many times max(|L0|, 1); 0: '
            'never', options.non_negative)),
    # The published result this config reproduces, shown beside ours by
    # scripts/results_table.py.
    **options.at(
        'paper', traits=(OPERATIONAL,),
        source=Option('', "e.g. 'Burda et al. 2015, Table 1'"),
        test_log_likelihood=Option(config_dict.placeholder(float),
                                   'nats (negative: -NLL)'),
        test_elbo=Option(config_dict.placeholder(float), 'nats, where the paper reports only '
                         'its ELBO (Efficient-VDVAE: -79.09)'),
        active_units=Option(config_dict.placeholder(str), "as printed, e.g. '19' or '16+5'"),
        binarization=Option(config_dict.placeholder(str),
                            "the data the published number is on: 'dynamic', or 'static' (the "
                            'fixed binarisation of Larochelle & Murray)'),
        num_samples=Option(config_dict.placeholder(int),
                           'k of the published importance-sampled log p(x)')),
}, (_engine_problems,)))
