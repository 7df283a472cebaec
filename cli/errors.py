"""One-line errors: library exceptions about bad input become exit code 2."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class InputError(click.ClickException):
    """Printed as ``Error: <message>`` with exit code 2, no traceback, no usage block."""

    exit_code = 2


def _input_errors() -> tuple[type[BaseException], ...]:
    from landscape.config import ConfigError
    from landscape.data import DataError
    from landscape.integrations.tensorboard import TensorBoardMissing
    from landscape.runs import StoreError

    return (ConfigError, DataError, StoreError, TensorBoardMissing, ValueError)


def friendly_errors(fn: F) -> F:
    """Turn bad-input exceptions into a one-line error (set LANDSCAPE_DEBUG=1 for tracebacks)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _input_errors() as e:
            if os.environ.get("LANDSCAPE_DEBUG"):
                raise
            from landscape import distributed

            if not distributed.is_main():  # every rank sees the same bad input: rank 0 says it
                raise SystemExit(InputError.exit_code) from None
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(message) from None

    return wrapper  # type: ignore[return-value]
