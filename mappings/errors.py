"""Errors of the mapping compiler, each pointing at the expression and position at fault.

An :class:`ExpressionError` is one problem in one SQL expression (syntax error, unknown
function, unknown column, type mismatch) with its line and column, so a config error can say
*where* in ``filter: status <> 'draft' and (`` the parser gave up. A :class:`MappingError` is
what :func:`~syncengine.mappings.compile_mapping` raises: every problem of a mapping at once,
each line starting with its YAML path, like every other config error.
"""

from __future__ import annotations

from syncengine.errors import ConfigError


class ExpressionError(Exception):
    """One problem in one expression; ``line``/``column`` are 1-based, None when unknown."""

    def __init__(
        self,
        message: str,
        line: int | None = None,
        column: int | None = None,
        detail: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.detail = detail
        super().__init__(self.describe())

    def describe(self) -> str:
        text = self.message
        if self.line is not None and self.column is not None:
            text += f" at line {self.line}, column {self.column}"
        return f"{text}: {self.detail}" if self.detail else text


class MappingError(ConfigError):
    """A mapping cannot be compiled; ``problems`` are lines ``<yaml path>: <what is wrong>``."""
