"""Multi-process runs from the command line: join torchrun's process group, and
``--nproc N``, which re-launches the same command through ``torch.distributed.run``."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

import click

from landscape_cli.errors import InputError

ARGV_KEY = "landscape.argv"


def nproc_option() -> Callable:
    return click.option(
        "--nproc",
        type=int,
        default=None,
        help="Run in N local processes (DDP; Gloo on CPUs, NCCL on GPUs) by re-launching this command through "
        "torch.distributed.run; --batch-size stays the global batch. Or start it yourself: "
        "torchrun --nproc_per_node=N $(which landscape) ...",
    )


def join_if_launched(ctx: click.Context) -> None:
    """Under torchrun: join the process group (left when the command ends) and
    silence stdout on every rank but 0, so only rank 0 prints."""
    from landscape import distributed
    from landscape.training import processes

    if not processes.launched():
        return
    processes.setup()
    ctx.call_on_close(processes.teardown)
    # When one rank dies, torchrun SIGTERMs the others, sometimes before their next
    # collective notices: say so in the same one line instead of dying silently.
    signal.signal(signal.SIGTERM, _stopped_by_launcher)
    if not distributed.is_main():
        devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        sys.stdout = devnull


def _stopped_by_launcher(signum: int, frame: object) -> None:
    raise RuntimeError("stopped by the launcher (SIGTERM), usually because another rank failed")


def relaunch(nproc: int | None) -> None:
    """With ``--nproc N`` outside torchrun, run this same command (minus ``--nproc``)
    in N processes through torch.distributed.run's launcher (``--standalone``), in
    this process, and exit with the job's code. The ranks print their own one-line
    errors, so the launcher's failure report is replaced by one line, and only for
    a rank that died without one (killed by a signal)."""
    from landscape.training import processes

    if nproc is None or processes.launched():
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
    import logging

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    launcher_args = torchrun.parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "landscape_cli", *args])
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    # torch.distributed.run would set 1 thread per process, with a warning; share the cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        torchrun.run(launcher_args)
    except (KeyboardInterrupt, SignalException) as e:  # Ctrl-C or kill: the ranks got it too
        click.echo(f"Error: stopped ({type(e).__name__}: {e})", err=True)
        sys.exit(130)
    except ChildFailedError as e:
        rank, failure = min(e.failures.items(), key=lambda item: item[1].timestamp)
        if failure.exitcode < 0:  # killed by a signal: the process could not say why
            name = signal.Signals(-failure.exitcode).name if -failure.exitcode in signal.valid_signals() else "?"
            hint = " (out of memory?)" if name == "SIGKILL" else ""
            click.echo(f"Error: rank {rank} was killed by {name}{hint}", err=True)
        sys.exit(failure.exitcode if failure.exitcode > 0 else 1)
    sys.exit(0)
