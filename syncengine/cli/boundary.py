"""The CLI is where expected errors become one clear line and an exit code.

Tracebacks are for bugs, and only with ``--debug``; secrets are redacted from every message.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click

from syncengine.errors import ConfigError, SyncEngineError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def report_error(exc: BaseException) -> int:
    """Print an expected error for a person and return the exit code."""
    from syncengine.config.secrets import redact

    if isinstance(exc, ConfigError):
        click.echo(f"config has {len(exc.problems)} problem(s):", err=True)
        for problem in exc.problems:
            click.echo(f"  {redact(problem)}", err=True)
        return EXIT_USAGE
    if isinstance(exc, SyncEngineError):
        click.echo(f"error: {redact(str(exc))}", err=True)
        return exc.exit_code
    raise exc


def expected_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator for click commands: SyncEngineError → message + exit code, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except SyncEngineError as exc:
            if debug:
                raise
            sys.exit(report_error(exc))

    return wrapper
