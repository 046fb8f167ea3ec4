"""What a ``--where`` of a Postgres source may be (``resnapshot``, ``backfill``): one row
predicate. The text is ANDed into every chunk query (read in a ``READ ONLY`` transaction) with
the pipeline's own credentials, so it can read what the config's ``dsn`` can read, exactly like
a mapping ``filter`` pushed down. It must parse (sqlglot, postgres dialect) as one expression that
is not a statement (``1=1; DROP TABLE t`` is two statements, refused; a ``SELECT`` is refused)
and hold no comment (``--`` would swallow the rest of the query).
"""

from __future__ import annotations

from syncengine.errors import UsageError


def check_where(where: str) -> None:
    """Raise :class:`UsageError` unless ``where`` is one row condition (see the module)."""
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
