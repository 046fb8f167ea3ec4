"""The documents some keys of a collection hold *now*, as rows typed like a stream batch.

A two-way direction whose source wins every conflict (``prefer: target`` with a Mongo target
side) applies these instead of the images its stream carried
(:mod:`syncengine.runtime.restate` says why). Documents are decoded as the stream decodes them
and given the batch's column types, so the restated batch maps exactly as the original.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pymongo.asynchronous.client_session import AsyncClientSession

from syncengine.codecs.arrow_bson import arrow_to_documents
from syncengine.codecs.bson_arrow import decode_documents
from syncengine.targets.mongo.fresh import find_ids


async def current_documents(
    collection: Any, keys: pa.Table, session: AsyncClientSession | None = None
) -> list[dict[str, Any]]:
    """The documents whose ``_id`` is in ``keys`` (a one-column ``_id`` table whose field
    metadata says its BSON type, as a batch's does); a key with no document is absent.
    ``session``: read inside its transaction (one snapshot with other reads)."""
    ids = [row["_id"] for row in arrow_to_documents(keys.select(["_id"]))]
    return await find_ids(collection, ids, session)


def as_rows(docs: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """``docs`` with ``schema``'s columns and types: a field the schema lacks is left out (the
    batch never sent it), one a document lacks is null."""
    decoded = decode_documents(docs).table
    arrays = []
    for field in schema:
        if field.name in decoded.column_names:
            arrays.append(decoded.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(len(docs), field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
