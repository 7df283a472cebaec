"""Multi-process runs from the command line: join torchrun's process group, and
``--nproc N``, which re-launches the same command through ``torch.distributed.run``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import click

from landscape_cli.errors import InputError

ARGV_KEY = "landscape.argv"


def nproc_option() -> Callable:
    return click.option(
        "--nproc", type=int, default=None,
        help="Run in N local processes (DDP; Gloo on CPUs, NCCL on GPUs) by re-launching this command through "
             "torch.distributed.run; --batch-size stays the global batch. Or start it yourself: "
             "torchrun --nproc_per_node=N $(which landscape) ...",
    )


def join_if_launched(ctx: click.Context) -> None:
    """Under torchrun: join the process group (left when the command ends) and
    silence stdout on every rank but 0, so only rank 0 prints."""
    from landscape import distributed

    if not distributed.launched():
        return
    distributed.setup()
    ctx.call_on_close(distributed.teardown)
    # When one rank dies, torchrun SIGTERMs the others, sometimes before their next
    # collective notices: say so in the same one line instead of dying silently.
    signal.signal(signal.SIGTERM, _stopped_by_launcher)
    if not distributed.is_main():
        devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        sys.stdout = devnull


def _stopped_by_launcher(signum: int, frame: object) -> None:
    raise RuntimeError("stopped by the launcher (SIGTERM), usually because another rank failed")


def refuse_distributed(command: str) -> None:
    """One-line error for commands that are single-process only."""
    from landscape import distributed

    if distributed.world_size() > 1:
        raise InputError(f"{command} is single-process only; run it without torchrun or --nproc")


def relaunch(nproc: int | None) -> None:
    """With ``--nproc N`` outside torchrun, run this same command (minus ``--nproc``)
    in N processes through ``torch.distributed.run --standalone`` and exit with its code."""
    from landscape import distributed

    if nproc is None or distributed.launched():
        return
    if nproc < 1:
        raise InputError("--nproc must be at least 1")
    argv = list(click.get_current_context().meta.get(ARGV_KEY, sys.argv[1:]))
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "landscape_cli", *args]
    sys.exit(subprocess.run(cmd, check=False).returncode)
