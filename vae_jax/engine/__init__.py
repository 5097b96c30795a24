"""The run machinery, apart from the science: the training loop (`training`, `loop`, `runs`),
the compiled steps and how they are executed (`steps`, `runners`), workdirs and their locks,
checkpoints and saved configs (`checkpointing`, `workdir_lock`), the config checks
(`config_checks`), metric writers, early stopping, the streaming input pipeline and stop
signals. Model, likelihood, prior, objective and evaluator modules never import it.
"""
