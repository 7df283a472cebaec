"""Multi-process runs on torch.distributed: the collectives over the global batch and
the process's place among the ranks (joining the group torchrun describes is
:mod:`landscape.training.processes`; the SyncBatchNorm that also runs on CPUs is
:mod:`landscape.training.syncbn`).

torchrun (``python -m torch.distributed.run``) starts one process per rank and
sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. With equal
shards of a global batch B = B_1 u ... u B_N and a mean loss,

    L(w; B) = (1/N) sum_r L(w; B_r)     grad L(w; B) = (1/N) sum_r grad L(w; B_r)

so every loss and gradient a probe measures is the all-reduced mean of the
ranks' values (exact up to float rounding, for models without BatchNorm or with
synchronized BatchNorm).

"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")


# Set inside alone(): this process (this thread and context) runs on its own although a
# process group exists. A context variable, so the state is scoped to the block.
_alone: contextvars.ContextVar[bool] = contextvars.ContextVar("landscape_alone", default=False)


def active() -> bool:
    """Whether this process works with others: a process group is initialized and
    the process is not inside :func:`alone`."""
    return not _alone.get() and dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Inside the block this process runs alone, as without torchrun (rank 0 of 1: it
    writes its own runs, no DDP, no collectives), while the process group stays up for
    the collectives after it (the outcomes gathered at the end). How independent runs
    are spread over the ranks."""
    token = _alone.set(True)
    try:
        yield
    finally:
        _alone.reset(token)


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, the only process that writes the store, checkpoints and reports (True without DDP)."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str) -> torch.device:
    """The device to run on. One process: ``name`` itself, ``auto`` being CUDA when
    available. Several (one collective): ``cuda:LOCAL_RANK`` when every rank has a GPU
    and ``name`` allows it (``auto``, ``cuda``), else the CPU.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (under several processes N is
            replaced by LOCAL_RANK).

    Returns:
        The device.

    Raises:
        ValueError: CUDA asked for but not available (under several processes: on
            some rank; raised on every rank).
    """
    if world_size() == 1:
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA device is available")
        return device
    has_gpu = torch.cuda.is_available() and torch.cuda.device_count() > local_rank()
    flag = torch.tensor([int(has_gpu)])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    every = bool(flag.item())
    if name == "cpu" or (name == "auto" and not every):
        return torch.device("cpu")
    if not every:
        raise ValueError("--device cuda asked for, but not every rank has a CUDA device")
    return torch.device("cuda", local_rank())


def all_reduce_mean(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The mean over ranks of every tensor, in ONE all-reduce of a flat vector in
    the first tensor's dtype; the identity without a process group.

    Args:
        tensors: same device; any shapes.

    Returns:
        New tensors with the input shapes and dtypes.
    """
    if not active() or not tensors:
        return list(tensors)
    return _all_reduce(tensors, world_size())


def _all_reduce(tensors: Sequence[torch.Tensor], divisor: int) -> list[torch.Tensor]:
    dtype = tensors[0].dtype
    flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
    dist.all_reduce(flat)  # SUM: Gloo has no AVG
    if divisor != 1:
        flat /= divisor
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view(t.shape).to(t.dtype))
        start += t.numel()
    return out


def all_reduce_sum(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The sum over ranks of every tensor, in one all-reduce (see :func:`all_reduce_mean`)."""
    if not active() or not tensors:
        return list(tensors)
    return _all_reduce(tensors, 1)


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise maximum over ranks (a new tensor); the identity without a group."""
    if not active():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def all_gather_object(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` without a group."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


class RankError(RuntimeError):
    """Raised on the other ranks when rank 0 failed; rank 0 raises the original."""


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and give its result (or its exception) to every rank,
    so that a decision about the file system (a new directory, what to resume) is
    made once. Without a process group it is just ``fn()``.

    Returns:
        ``fn()``'s result, on every rank.

    Raises:
        Whatever ``fn`` raised: the same exception type and message on every rank
        (``RankError`` where it cannot be rebuilt).
    """
    if not active():
        return fn()
    box: list[Any] = [None]
    error: BaseException | None = None
    if is_main():
        try:
            box[0] = ("ok", fn())
        except Exception as e:  # re-raised below on every rank
            error = e
            box[0] = ("error", (type(e), str(e)))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "ok":
        return value
    if error is not None:
        raise error
    cls, message = value
    try:
        raise cls(message)
    except TypeError:
        raise RankError(message) from None
