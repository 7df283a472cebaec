"""A run from its config: :mod:`~landscape.runner.assembly` builds the model, data,
optimizer and measurement hooks a :class:`~landscape.config.RunConfig` asks for,
:mod:`~landscape.runner.adapters` puts the measurements into the loop,
:func:`~landscape.runner.train.train` runs it into a run directory,
:mod:`~landscape.runner.experiments` runs variants side by side, and
:mod:`~landscape.runner.run_model`, :mod:`~landscape.runner.spectrum` and
:mod:`~landscape.runner.surface_run` analyse a recorded run's checkpoints."""
