"""What ``resnapshot --where`` (and ``backfill --where``) may be: one row predicate, no more.

The condition is sent to the source as written (Postgres: ANDed into every chunk query, read in
a ``READ ONLY`` transaction; Mongo: a ``$match``), with the pipeline's own credentials, so it can
read what the config's ``dsn``/``uri`` can read, exactly like a mapping ``filter`` pushed down.
Checked here, before anything runs or is handed to a daemon: Postgres text must parse (sqlglot,
postgres dialect) as one expression that is not a statement (``1=1; DROP TABLE t`` is two
statements, refused; a ``SELECT`` is refused) and holds no comment (``--`` would swallow the
rest of the query); a Mongo filter must not run server-side
JavaScript (``$where``, ``$function``, ``$accumulator``).
"""

from __future__ import annotations

from typing import Any

from syncengine.errors import UsageError

#: Mongo operators that run JavaScript on the server
_JS = frozenset({"$where", "$function", "$accumulator"})


def check_where(source_type: str, where: str | None) -> None:
    """Raise :class:`UsageError` when ``where`` is not a single predicate (see the module)."""
    if where is None:
        return
    if not where.strip():
        raise UsageError("--where: empty condition")
    if source_type == "mongo":
        _check_mongo(where)
    elif source_type == "postgres":
        _check_sql(where)


def _check_sql(where: str) -> None:
    import sqlglot
    from sqlglot import exp

    try:
        tokens = sqlglot.Dialect.get_or_raise("postgres").tokenize(where)
        parsed = [e for e in sqlglot.parse(where, read="postgres") if e is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise UsageError(f"--where: not a SQL condition: {exc}") from None
    if any(t.comments for t in tokens):  # a comment would swallow the rest of the query
        raise UsageError("--where: comments are not allowed in the condition")
    statements = (exp.Query, exp.DML, exp.DDL, exp.Command, exp.Set, exp.Transaction)
    if len(parsed) != 1 or isinstance(parsed[0], statements):
        raise UsageError(
            '--where: give one row condition (e.g. "id > 1000"), not a statement',
            hint="the condition is ANDed into the snapshot's own SELECT",
        )


def _check_mongo(where: str) -> None:
    from syncengine.sources.mongo.snapshot import parse_where

    try:
        match = parse_where(where)
    except ValueError as exc:
        raise UsageError(f"--where: {exc}") from None
    found = _operators(match)
    if found & _JS:
        raise UsageError(f"--where: {', '.join(sorted(found & _JS))} runs JavaScript: refused")


def _operators(value: Any) -> set[str]:
    if isinstance(value, dict):
        keys = {k for k in value if isinstance(k, str) and k.startswith("$")}
        for item in value.values():
            keys |= _operators(item)
        return keys
    if isinstance(value, list):
        return set().union(*(_operators(v) for v in value)) if value else set()
    return set()
