"""The training loop and what it needs: the hook protocol (:class:`~landscape.training.hooks.Event`,
:class:`~landscape.training.hooks.Context`, schedules), checkpoints, SyncBatchNorm
and the process-group setup. The loop is the only code that steps an optimizer;
it takes hooks and knows no measurement by name."""
