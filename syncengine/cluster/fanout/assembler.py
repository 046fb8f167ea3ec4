"""A consumer's view of the stream: messages in stream order back into the reader's groups.

The reader publishes one group at a time (every partition's data of the group, then the
checkpoint message, then the next group), so in the stream a group's messages are contiguous
and followed by its checkpoint. The consumer therefore sees the source's order at group
granularity, and commits a position that means "everything up to this source position":

* data of a group is held until its checkpoint message arrives, then handed on as one batch
  per table (its partitions' rows ordered by ``_pos``, so a target sees the source's order);
  the last batch carries ``resume``, the consumer's checkpoint (:func:`position`);
* data of a group whose checkpoint never came (the reader died mid-publish) is dropped when
  anything else follows it: the restarted reader publishes those changes again, from its last
  stored checkpoint, which precedes them in the stream;
* a group's message seen twice (the same table, partition and chunk: a re-publish outside the
  deduplication window) counts once; a re-published group carries the same rows, since the
  group's position fixes which source transactions are in it;
* data published without a group (snapshot chunks, parts of a source transaction too big to
  hold) is handed on at once; each is a commit boundary of its own for the consumer.

Positions: ``<source position>/<stream sequence>``. The sequence says where to resume in the
stream. The source part is the last group's position, so the checkpoint compares with the
rows' ``_pos`` as that source position does ('/' sorts before every character a position is
made of): a Postgres target drops a replayed change at or below it, as it does for any source.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import META_SCHEMA, ChangeBatch, concat_batches
from syncengine.cluster.fanout.wire import Part, with_field_metadata

SEQ_DIGITS = 20


def position(source: str, seq: int) -> str:
    return f"{source}/{seq:0{SEQ_DIGITS}d}"


def parse_position(text: str | None) -> tuple[str, int]:
    """(source position, stream sequence) of a consumer checkpoint; ("", 0) for none."""
    if not text:
        return "", 0
    source, slash, seq = text.rpartition("/")
    if not slash or not seq.isdigit():
        raise ValueError(f"'{text}' is not a fan-out position (<source>/<sequence>)")
    return source, int(seq)


@dataclass
class Assembler:
    """Feed it the stream's messages in sequence order; it returns the batches to apply."""

    #: the source position of the last group handed on (from the consumer's checkpoint)
    source: str = ""
    #: a table to name an empty boundary batch after (any table the pipeline reads)
    idle_table: str = ""
    group: str | None = None
    parts: dict[tuple[str, int, int], ChangeBatch] = field(default_factory=dict)
    #: messages dropped as orphans or repeats (for tests and logs)
    dropped: int = 0

    def data(self, seq: int, part: Part) -> list[ChangeBatch]:
        if part.group is None:
            self._drop_pending()
            resume = position(self.source, seq)
            return [replace(part.batch, meta={**part.batch.meta, "resume": resume})]
        if part.group != self.group:
            self._drop_pending()
            self.group = part.group
        if part.slot in self.parts:
            self.dropped += 1
        else:
            self.parts[part.slot] = part.batch
        return []

    def checkpoint(self, seq: int, group: str) -> list[ChangeBatch]:
        """The group ending at ``group`` is complete: its batches, the last one a boundary."""
        if group != self.group:
            self._drop_pending()
        batches = _by_table(list(self.parts.values()))
        self.parts, self.group, self.source = {}, None, group
        resume = position(group, seq)
        if not batches:
            idle = ChangeBatch(self.idle_table, META_SCHEMA.empty_table())
            return [replace(idle, meta={"resume": resume})]
        last = batches[-1]
        batches[-1] = replace(last, meta={**last.meta, "resume": resume})
        return batches

    def _drop_pending(self) -> None:
        self.dropped += len(self.parts)
        self.parts, self.group = {}, None


def _by_table(parts: list[ChangeBatch]) -> list[ChangeBatch]:
    """One batch per table, rows ordered by ``_pos`` (stable: a key's changes, all in one
    partition, keep their order), its columns' source types kept."""
    tables: dict[str, list[ChangeBatch]] = {}
    for batch in parts:
        tables.setdefault(batch.table, []).append(batch)
    out = []
    for batches in tables.values():
        merged = concat_batches(batches)
        if len(batches) > 1:
            order = pc.sort_indices(merged.data, sort_keys=[("_pos", "ascending")])
            data = pa.Table.take(merged.data, order)
            merged = merged.replace(with_field_metadata(data, [b.data.schema for b in batches]))
        out.append(merged)
    return out
