"""Test-only fault injection for the multi-process tests, loaded by Python at start-up
because the tests put this folder first on PYTHONPATH of the processes they launch.

With ``LANDSCAPE_TEST_KILL_RANK1_AT_STEP=N``, the process of rank 1 (torchrun's RANK,
so also when an experiment's runs are spread) exits abruptly (``os._exit``, as a
crash or the OOM killer would end it) when its training loop has completed step N,
after writing ``KILLED`` to stderr: the tests assert that line, so a patch that no
longer finds its target (an error in sitecustomize is only printed, and the run would
then fail or pass for another reason) fails them. Nothing in the library knows about it.
"""

import os

_STEP = os.environ.get("LANDSCAPE_TEST_KILL_RANK1_AT_STEP")

if _STEP and os.environ.get("RANK") == "1":
    import landscape.training.loop as _train

    _after_step = _train.Loop.after_step

    def _dying_after_step(self, *args, **kwargs):
        if self.step == int(_STEP):
            os.write(2, f"landscape test: rank 1 killed after step {_STEP}\n".encode())
            os._exit(1)
        return _after_step(self, *args, **kwargs)

    _train.Loop.after_step = _dying_after_step
