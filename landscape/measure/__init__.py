"""The paper's instruments, as pure functions of (model, loss, batch): probes along
the gradient (loss variation, gradient predictiveness, effective beta-smoothness),
the points and directions they step along, gradient-based internal covariate shift,
and layer-input distributions. Nothing here trains, stores or schedules; the
adapters that put these measurements into a training run are in
:mod:`landscape.runner.adapters`, and a collective over processes comes in as a
``reduce`` argument."""
