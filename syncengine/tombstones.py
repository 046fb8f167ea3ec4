"""Tombstone notes: a mesh direction's deletes that found nothing to delete, made visible to its
sibling's reader.

In a two-way pair a row written *provisionally* over a delete whose time is unknown (README,
*Two-way sync*) is corrected when that delete crosses to the other node and comes back as an
echo. In a mesh the other node may no longer hold the row (a third node's write removed it):
the delete then writes nothing, so no echo comes back and the provisional row stays. The
direction still records the delete's version (a tombstone); with it, in the same apply
transaction and under the same replication origin, it emits a transactional logical decoding
message with this prefix naming the keys. The sibling's reader (which reads that database, and
sees the message inside an echo transaction) turns it into echo deletes of those keys, judged
like any echo: a newer delete corrects the provisional row. A delete no newer than the version
the node holds for the key (another node's direction carried it there first) is noted too:
the sibling's reader states each key with that version, not the note's sender's.

Pure (no I/O): the target emits :func:`encode`'s bytes with ``pg_logical_emit_message``, the
pgoutput assembler feeds :func:`decode` and :func:`key_tuple`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

PREFIX = "syncengine_tombstones"


def encode(table: str, row_keys: Sequence[str]) -> bytes:
    """The message of deletes of ``row_keys`` (canonical key JSON, ``{"id":1}``) in ``table``
    (its canonical name, as its Relation message qualifies it)."""
    return json.dumps({"table": table, "keys": list(row_keys)}).encode()


def decode(content: bytes) -> tuple[str, list[dict[str, object]]]:
    """``(table, keys)``; a malformed note yields no keys (it is only a hint)."""
    try:
        note = json.loads(content)
        keys = [json.loads(k) for k in note["keys"]]
        return str(note["table"]), [k for k in keys if isinstance(k, dict)]
    except (ValueError, KeyError, TypeError):
        return "", []


def key_tuple(columns: Sequence[str], key: dict[str, object]) -> tuple[bytes | None, ...] | None:
    """A delete's old image as pgoutput sends it for REPLICA IDENTITY DEFAULT: the key
    columns' text values, the others null; None when the key names a column not there."""
    if any(name not in columns for name in key):
        return None
    return tuple(_text(key[c]) if c in key else None for c in columns)


def _text(value: object) -> bytes | None:
    """A key value (from canonical key JSON) in Postgres's text form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"t" if value else b"f"
    return str(value).encode()
