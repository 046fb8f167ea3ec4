"""Postgres table names: the one parser for config, source queries, targets and commands.

A table is written in one of two forms (docs/postgres-source.md, "Table names"):

* **SQL form**, as in psql: ``orders``, ``public.orders``, ``"My Schema"."T.with.dots"``,
  ``public."Order Items; x"``. Unquoted parts fold to lower case (ASCII letters only, as
  Postgres does in UTF-8 databases); quoted parts are exact, ``""`` is a quote inside them.
  Every name can be written this way.
* **raw form**, the names as the catalog stores them: ``public.Order Items; x``. A text is
  raw only when it is *not* valid SQL form (it has characters an unquoted name cannot have
  and is not properly quoted); it is then split at its *first* dot and taken exactly. So in
  the raw form a table name may contain dots, a schema name may not (quote it).

Without a schema a name is in ``public`` (not the search path: the engine's connections must
agree on it). The canonical text of a table (:attr:`QualifiedName.sql`, used as its key in
batches and in the state store) is the SQL form with each part quoted only when needed, so
an ordinary ``public.orders`` keeps the key it always had.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg.sql import Identifier

#: the schema a table name without one is in (Postgres' default ``search_path``), for source
#: tables and the Postgres target alike
DEFAULT_SCHEMA = "public"

#: an unquoted identifier (Postgres: letters, digits, ``_``, ``$``, any non-ASCII character)
_UNQUOTED = r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*"
_QUOTED = r'"(?:[^"]|"")+"'
_PART = f"(?:{_UNQUOTED}|{_QUOTED})"
_SQL_FORM = re.compile(f"({_PART})(?:\\.({_PART}))?")
#: parts that need no quotes to mean themselves
_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")
_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def quote(part: str) -> str:
    """One identifier as SQL: bare when it means itself unquoted, else double-quoted."""
    if _PLAIN.fullmatch(part):
        return part
    return '"' + part.replace('"', '""') + '"'


def _unquote(part: str) -> str:
    if part.startswith('"'):
        return part[1:-1].replace('""', '"')
    return part.translate(_ASCII_UPPER)


@dataclass(frozen=True, slots=True, order=True)
class QualifiedName:
    """A table as (schema, name), both exactly as in ``pg_namespace`` / ``pg_class``."""

    schema: str
    name: str

    @classmethod
    def parse(cls, text: str, default_schema: str = DEFAULT_SCHEMA) -> QualifiedName:
        """``text`` in SQL or raw form (see the module docstring); ValueError when empty."""
        match = _SQL_FORM.fullmatch(text)
        if match:
            first, second = match.groups()
            if second is None:
                return cls(default_schema, _unquote(first))
            return cls(_unquote(first), _unquote(second))
        schema, dot, name = text.partition(".")
        if not dot:
            schema, name = default_schema, text
        if not schema or not name:
            raise ValueError(
                f"'{text}' is not a table name: write schema.table, quoting a part that "
                'contains dots or quotes as in SQL ("My.Schema"."My ""table""")'
            )
        return cls(schema, name)

    @property
    def sql(self) -> str:
        """The canonical text: SQL form, each part quoted only when needed."""
        return f"{quote(self.schema)}.{quote(self.name)}"

    @property
    def raw(self) -> str:
        """``schema.name`` unquoted (ambiguous when a part holds a dot: for reading only)."""
        return f"{self.schema}.{self.name}"

    def identifier(self) -> Identifier:
        """The name for a query, quoted by the driver."""
        from psycopg.sql import Identifier  # lazily: `import syncengine.names` stays light

        return Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return self.sql


@lru_cache(maxsize=4096)
def canonical(text: str, default_schema: str = DEFAULT_SCHEMA) -> str:
    """The canonical text of a table written in either form."""
    return QualifiedName.parse(text, default_schema).sql


def table_name_problem(text: str) -> str | None:
    """Why ``text`` cannot name a table, or None (for config validation)."""
    try:
        QualifiedName.parse(text)
    except ValueError as exc:
        return str(exc)
    return None


def closest(wanted: str, existing: Iterable[QualifiedName], n: int = 3) -> list[QualifiedName]:
    """The existing tables whose names look most like ``wanted`` (compared in both forms
    and without regard to case, so a mis-cased or unquoted name finds its table)."""
    by_text: dict[str, QualifiedName] = {}
    for table in existing:
        for text in (table.sql, table.raw, table.name):
            by_text.setdefault(text.lower(), table)
    found: list[QualifiedName] = []
    for text in difflib.get_close_matches(wanted.lower(), list(by_text), n=3 * n, cutoff=0.6):
        if by_text[text] not in found:
            found.append(by_text[text])
    return found[:n]


def did_you_mean(wanted: str, existing: Iterable[QualifiedName]) -> str:
    """`` (did you mean …?)`` naming the closest existing tables, or an empty string."""
    found = closest(wanted, existing)
    if not found:
        return ""
    return " (did you mean " + " or ".join(repr(t.sql) for t in found) + "?)"


def default_target(source: str, source_is_postgres: bool, target_is_postgres: bool) -> str:
    """The target table/collection name for a mapping that names none: the source's name
    without its schema. A Postgres target parses it with :meth:`QualifiedName.parse`, so there
    it is quoted when needed (``"T.with.dots"`` must not become schema ``T``); Mongo
    collections and Parquet folders take it as it is."""
    bare = QualifiedName.parse(source).name if source_is_postgres else source.split(".")[-1]
    return quote(bare) if target_is_postgres else bare
