"""Parsing mapping expressions with sqlglot, and finding where in the text a node came from.

A ``fields`` value or a ``filter`` is one SQL *expression* (not a statement). Parse errors keep
sqlglot's line and column; for problems found later (unknown function or column) the position
comes from the token the node was built from, so every message can point at the text.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, cast

import sqlglot
from sqlglot import Token, TokenType, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from syncengine.mappings.errors import ExpressionError

Position = tuple[int, int] | tuple[None, None]


def dialect_of(name: str) -> Dialect:
    """The sqlglot dialect called ``name``; an unknown name is an :class:`ExpressionError`."""
    try:
        return Dialect.get_or_raise(name)
    except ValueError as error:
        raise ExpressionError(f"unknown SQL dialect '{name}'", detail=str(error)) from None


@lru_cache(maxsize=1024)
def parse_expression(text: str, dialect: str = "postgres") -> exp.Expression:
    """One SQL expression; syntax errors name line and column. Cached: configs repeat."""
    dialect_of(dialect)
    try:
        trees = sqlglot.parse(text, read=dialect)
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        line, col = first.get("line"), first.get("col")
        highlight = first.get("highlight") or ""
        if col is not None and highlight:
            col = max(1, col - len(highlight) + 1)
        description = _humane(first.get("description") or str(error))
        raise ExpressionError("syntax error", line, col, description) from None
    except TokenError as error:
        raise ExpressionError("syntax error", detail=str(error)) from None
    found = [t for t in trees if t is not None]
    if len(found) != 1:
        raise ExpressionError("syntax error", detail="expected exactly one expression")
    # sqlglot 30 types parse() results as exp.Expr, the base its node mixins share; every node
    # it builds is an exp.Expression
    tree = cast(exp.Expression, found[0])
    if isinstance(tree, exp.Query | exp.DDL | exp.DML | exp.Command):
        raise ExpressionError(
            "syntax error", detail=f"expected an expression, got a {tree.key.upper()} statement"
        )
    if isinstance(tree, exp.Alias):
        line, column = _meta_position(tree.args["alias"])
        raise ExpressionError("syntax error", line, column, "an alias is not allowed here")
    return tree


def _humane(description: str) -> str:
    """sqlglot's "Required keyword: 'this' missing for <class '...Paren'>" in plain words."""
    match = re.match(r"Required keyword: '(\w+)' missing for <class '[\w.]*\.(\w+)'>", description)
    if match:
        return f"incomplete expression ({match.group(2).lower()} is missing an operand)"
    return description


def _meta_position(node: exp.Expression | None) -> Position:
    """Start of the token a node (Identifier, Anonymous function) was built from."""
    if node is None:
        return None, None
    meta = node.meta
    if "line" not in meta:
        return None, None
    width = len(node.name) + (2 if node.args.get("quoted") else 0)
    return meta["line"], max(1, meta["col"] - width + 1)


@lru_cache(maxsize=256)
def _tokens(text: str, dialect: str) -> list[Token]:
    try:
        return list(Dialect.get_or_raise(dialect).tokenize(text))
    except Exception:  # positions are a courtesy; never fail on them
        return []


def position_of(node: exp.Expression, text: str, dialect: str) -> Position:
    """Where ``node`` starts in ``text`` (best effort: None, None when it cannot tell)."""
    if isinstance(node, exp.Column | exp.Identifier):
        parts: list[Any] = list(node.parts) if isinstance(node, exp.Column) else [node]
        return _meta_position(parts[0]) if parts else (None, None)
    if isinstance(node, exp.Anonymous):
        return _meta_position(node)
    inner: Position = (None, None)
    for child in node.walk():
        if child is not node and isinstance(child, exp.Identifier | exp.Anonymous):
            inner = _meta_position(child)
            if inner[0] is not None:
                break
    if isinstance(node, exp.Func):
        found = _function_token(node, _tokens(text, dialect), inner)
        if found[0] is not None:
            return found
    return inner


def _function_token(node: exp.Func, tokens: list[Token], inner: Position) -> Position:
    """The name token of a call: by its SQL names, else the call opening before ``inner``."""
    names = {n.upper() for n in node.sql_names()} | {node.key.upper()}
    calls = [
        (token.line, max(1, token.col - len(token.text) + 1), token.text.upper())
        for token, following in zip(tokens, tokens[1:], strict=False)
        if following.token_type == TokenType.L_PAREN and token.token_type != TokenType.L_PAREN
    ]
    for line, col, name in calls:
        if name in names:
            return line, col
    if inner[0] is not None:
        before = [(line, col) for line, col, _ in calls if (line, col) < inner]
        if before:
            return before[-1]
    return None, None


def function_name(node: exp.Expression) -> str:
    """How a user would spell the function of ``node`` (for messages)."""
    if isinstance(node, exp.Anonymous):
        return str(node.name)
    if isinstance(node, exp.Func):
        return node.sql_names()[0].lower() if node.sql_names() else node.key
    return node.key
