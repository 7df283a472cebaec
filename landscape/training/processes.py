"""Joining and leaving the process group that torchrun describes (the collectives over it
are :mod:`landscape.distributed`). The backend is NCCL for CUDA tensors when every rank
has a GPU, Gloo otherwise. Collectives time out after ``$LANDSCAPE_DIST_TIMEOUT``
seconds (default 300), so a rank that dies ends the job instead of hanging it.
:func:`teardown` ends Gloo's worker threads before the interpreter ends (see there why
it must)."""

from __future__ import annotations

import datetime as _dt
import gc
import importlib
import os
import weakref

import torch
import torch.distributed as dist

from landscape.distributed import active, local_rank, log, rank, world_size

TIMEOUT_ENV = "LANDSCAPE_DIST_TIMEOUT"


DEFAULT_TIMEOUT_S = 300.0


def launched() -> bool:
    """Whether this process was started by torchrun (RANK and WORLD_SIZE are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def timeout() -> _dt.timedelta:
    """The collective timeout from ``$LANDSCAPE_DIST_TIMEOUT`` (seconds).

    Raises:
        ValueError: the variable is not a positive number.
    """
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"${TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return _dt.timedelta(seconds=seconds)


def setup() -> None:
    """Join the process group described by torchrun's environment variables.

    CUDA tensors go through NCCL and CPU tensors through Gloo
    (``cpu:gloo,cuda:nccl``) when this machine has a GPU; Gloo alone otherwise.
    Whether the run uses GPUs at all is agreed by every rank in
    :func:`resolve_device`. Does nothing when a group already exists.
    """
    if active():
        return
    limit = timeout()
    if torch.cuda.is_available() and torch.cuda.device_count() > local_rank():
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    # torch.distributed.nn's functions default to ``group=group.WORLD``, evaluated when the
    # module is first imported (DDP imports it). Imported after init_process_group they
    # would hold this group for good, so that teardown() could not end its threads.
    importlib.import_module("torch.distributed.nn")
    dist.init_process_group(backend, timeout=limit)
    log.info("rank %d of %d joined (%s, timeout %s)", rank(), world_size(), backend, limit)


def teardown() -> None:
    """Leave the process group and end its Gloo threads (no-op without one).

    The threads must end before the interpreter does. A Gloo worker drops its
    reference to a finished collective's tensors after the caller has moved on, and
    that takes the GIL; once the interpreter is finalizing, taking the GIL ends the
    thread inside a noexcept destructor, and a rank whose work is done aborts with
    "terminate called without an active exception" (SIGABRT) whenever a busy machine
    lets its main thread reach the exit first. destroy_process_group only forgets
    the group; the group's destructor, which joins the threads with the GIL
    released, runs once nothing else holds the group: reference cycles (a DDP
    wrapper) are collected here, and a group that survives them is reported.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    group = weakref.ref(dist.group.WORLD)
    dist.destroy_process_group()
    if group() is not None:
        gc.collect()
    if group() is not None:
        log.warning(
            "the process group outlives teardown (something still holds it); "
            "its Gloo threads may abort the process at exit"
        )


def backend_of(device: torch.device) -> str:
    """The backend that carries this device's tensors: nccl or gloo."""
    return "nccl" if device.type == "cuda" else "gloo"
