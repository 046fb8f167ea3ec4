"""What ``resnapshot --where`` (and ``backfill --where``) may be: one row predicate, no more.

The condition is sent to the source as written, with the pipeline's own credentials, so it can
read what the config's ``dsn``/``uri`` can read, exactly like a mapping ``filter`` pushed down.
Each source kind says what a condition of its own may be (its factory's optional
``check_where``: ``syncengine/sources/*/where.py``); it is checked here, before anything runs or
is handed to a daemon. A kind without ``check_where`` takes no ``--where``.
"""

from __future__ import annotations

from syncengine.errors import UsageError
from syncengine.plugins import source_factory


def check_where(source_type: str, where: str | None) -> None:
    """Raise :class:`UsageError` when ``where`` is not a single predicate of the source kind."""
    if where is None:
        return
    if not where.strip():
        raise UsageError("--where: empty condition")
    check = getattr(source_factory(source_type), "check_where", None)
    if check is None:
        raise UsageError(f"--where: a {source_type} source takes no condition")
    check(where)
