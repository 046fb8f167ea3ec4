"""Detection: which incoming changes meet a target row that someone else changed.

One batched read of the target rows and one of the shadow rows for the batch's keys, then
vectorized hash comparisons. Per key there are three states, each "absent" or a row hash:

* ``local``: the target row now;
* ``shadow``: the source's version of the row as this pipeline last applied it;
* ``after``: what the target row becomes when the incoming change is applied as sent.

``after == local`` is an **echo** (the change repeats what the target holds; in two-way sync,
our own write coming back): skipped. Otherwise ``local != shadow`` is a **conflict**: the target
was changed by hand, deleted by hand, or holds a row this pipeline never wrote (a conflict on
insert). A key absent from both target and shadow is not a conflict.

With the **position fence** (sources whose positions sort: Postgres CDC, Mongo) the shadow also
remembers the source position of the change it reflects, and a change at or before that
position is **stale**: a replay (after a crash, of an already-applied change) that must not
move the row back in time. Stale changes are neither written nor recorded. Snapshot rows
(``r``: the state when read) are never stale.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from syncengine.changes import OP_DELETE, OP_INSERT, OP_READ, OP_UPDATE, UNSENT_PREFIX
from syncengine.codecs.arrow_numbers import EXACT_IN_DOUBLE
from syncengine.conflicts.rows import (
    EXISTS,
    canonical,
    carried_columns,
    decode_rows,
    encode_rows,
    json_columns,
    polars_schema,
    retag_hashes,
    row_hashes,
    row_keys,
)
from syncengine.conflicts.widen import float_columns, float_read, retyped, text_read, widen
from syncengine.targets.base import TableSpec, Target
from syncengine.targets.precision import frame_floor
from syncengine.targets.shadow import FENCE_ONLY


@dataclass(frozen=True)
class Detection:
    """Everything detection learned about a batch's rows, all aligned with ``changes``."""

    spec: TableSpec
    """The batch's spec; a column the target read back as Postgres text is text here, and in
    ``changes`` (:mod:`syncengine.conflicts.widen`): write with this one."""
    changes: pl.DataFrame
    """The incoming changes (data, ``_op``, ``_pos``, ``_ts``, ``_txid``, unsent masks)."""
    row_key: pl.Series
    remote: pl.DataFrame
    """The sent values cast to the spec (unsent and unmapped columns null)."""
    local: pl.DataFrame
    """The target rows now, spec columns + ``_exists``."""
    local_hash: pl.Series
    after: pl.DataFrame
    after_json: pl.Series
    after_hash: pl.Series
    shadow_hash: pl.Series
    shadow_base: pl.Series
    shadow_position: pl.Series
    echo: pl.Series
    conflict: pl.Series
    stale: pl.Series
    """Replays of changes the shadow has already seen (see the module docstring)."""

    @property
    def unshadowed(self) -> pl.Series:
        """Keys without a shadow row (not even a tombstone) when the shadow was read."""
        return (self.shadow_hash.is_null() & self.shadow_position.is_null()).alias("fresh")

    @property
    def columns(self) -> list[str]:
        return list(self.spec.schema.names)

    def base(self, rows: pl.Series) -> pl.DataFrame:
        """The shadow's row (the last applied source version) for the selected rows."""
        bases = self.shadow_base.filter(rows)
        frame = decode_rows(bases, polars_schema(self.spec))
        return frame.with_columns(bases.is_not_null().alias(EXISTS))

    def source_image(self, rows: pl.Series, base: pl.DataFrame) -> pl.DataFrame:
        """The source's version of the selected rows: unsent values come from the base (the
        source said "unchanged"), or from the target where there is no base."""
        local = self.local.filter(rows)
        fill = local.select(
            pl.when(base[EXISTS]).then(base[c]).otherwise(pl.col(c)).alias(c) for c in self.columns
        ).with_columns(local[EXISTS])
        return after_image(self.changes.filter(rows), self.remote.filter(rows), fill, self.columns)


def after_image(
    changes: pl.DataFrame, remote: pl.DataFrame, fill: pl.DataFrame, columns: Sequence[str]
) -> pl.DataFrame:
    """Rows as they are once the changes are applied on top of ``fill`` (columns + ``_exists``).

    ``c``/``r``: exactly the sent columns; ``u``: sent columns over ``fill`` (a column the
    change did not send, or that is not in the batch, keeps the ``fill`` value; an absent row is
    created from the sent columns); ``d``: absent.
    """
    op = changes["_op"]
    is_update = op == OP_UPDATE
    exists = op != OP_DELETE
    out = []
    for name in columns:
        if name not in changes.columns:
            keep = is_update
        elif UNSENT_PREFIX + name in changes.columns:
            keep = is_update & changes[UNSENT_PREFIX + name].fill_null(False)
        else:
            out.append(remote[name])
            continue
        taken = pl.select(pl.when(keep).then(fill[name]).otherwise(remote[name])).to_series()
        out.append(taken.alias(name))
    frame = pl.DataFrame(out) if out else pl.DataFrame()
    nulls = [pl.when(exists).then(pl.col(c)).alias(c) for c in columns]
    return frame.with_columns(nulls).with_columns(exists.alias(EXISTS))


def json_of(frame: pl.DataFrame, columns: Sequence[str]) -> pl.Series:
    """Row JSON where the row exists, null where it does not."""
    texts = encode_rows(frame, columns)
    return pl.select(pl.when(frame[EXISTS]).then(texts)).to_series().alias("json")


async def detect(
    target: Target,
    spec: TableSpec,
    changes: pl.DataFrame,
    *,
    assume_empty: bool = False,
    fence: bool = False,
) -> Detection:
    """Read target and shadow rows for the changes' keys and classify every change.

    ``assume_empty``: read nothing, every key is absent at the target and in the shadow (the
    batch truncates the table first, or the target cannot read rows back). ``fence``: flag
    changes at or before the shadow's position as stale.
    """
    reads = changes.height and not assume_empty
    if reads:  # the target's float columns read back as stored, not truncated
        spec, changes = float_columns(spec, changes)
    columns = spec.schema.names
    key = list(spec.key)
    remote = canonical(changes.select([c for c in columns if c in changes.columns]), spec)
    keys = remote.select(key)
    row_key = row_keys(remote, key)

    read = await target.read_rows(spec, keys.to_arrow()) if reads else None
    widened = text_read(spec, read) if read is not None else []
    if widened:  # the target holds a value with no native form: carry the column as text
        spec, changes = widen(spec, changes, widened)
    doubles = float_read(spec, read) if read is not None else {}
    if doubles:  # a sub-document's int the target stores as a double: read as it is stored
        spec, changes = retyped(spec, changes, doubles)
    if widened or doubles:
        columns = spec.schema.names
        remote = canonical(changes.select([c for c in columns if c in changes.columns]), spec)
    local = _align_local(keys, canonical(read, spec) if read is not None else None, spec)
    carried = carried_columns(spec.schema)
    local_hash = row_hashes(local, columns, carried)

    shadow = await target.read_shadow(spec.name, row_key.to_list()) if reads else None
    shadow_hash, shadow_base, shadow_position = _align_shadow(row_key, shadow)
    # a slim row (written under ``remote``, which records no content) is taken to say what the
    # target holds now: the key is in step, its first change under this strategy no conflict
    slim = (shadow_hash == FENCE_ONLY).fill_null(False)
    shadow_hash = retag_hashes(
        pl.select(pl.when(~slim).then(shadow_hash)).to_series(),
        shadow_base,
        polars_schema(spec),
        carried,
        frame_floor(target, spec),
    )
    if slim.any():
        shadow_hash = pl.select(
            pl.when(slim & local[EXISTS]).then(local_hash).otherwise(shadow_hash)
        ).to_series()

    after = after_image(changes, remote, local, columns)
    after_json = json_of(after, columns)
    after_hash = row_hashes(after, columns, carried)

    echo = same_state(after[EXISTS], after_hash, local[EXISTS], local_hash)
    in_sync = same_state(local[EXISTS], local_hash, shadow_hash.is_not_null(), shadow_hash)
    json_cols = sorted(json_columns(spec.schema))
    if json_cols:
        echo, in_sync = _json_recheck(spec, json_cols, echo, in_sync, after, local, shadow_base)
    stale = pl.repeat(False, changes.height, eager=True)
    if fence:
        stale = ((changes["_op"] != OP_READ) & (changes["_pos"] <= shadow_position)).fill_null(
            False
        )
    # An insert says the source held no row just before it. A shadow that still holds one
    # missed the delete before it, compacted into this batch with the insert. Judged one
    # change at a time, that delete meets a target in step with the shadow (it is applied) or
    # one already without the row (an echo), and either way leaves the target and the shadow
    # without it: the insert is then a clean change. So is it here. (Otherwise a key deleted
    # on both sides of a two-way pipeline and inserted again on one was a conflict, and under
    # prefer the other side's absence won with nothing left to carry it back.)
    inserted = (changes["_op"] == OP_INSERT).fill_null(False)
    in_sync = in_sync | (inserted & ~local[EXISTS].fill_null(False))
    conflict = ~echo & ~in_sync & ~stale
    return Detection(
        spec, changes, row_key, remote, local, local_hash, after, after_json, after_hash,
        shadow_hash, shadow_base, shadow_position, echo, conflict, stale.alias("stale"),
    )  # fmt: skip


def _json_recheck(
    spec: TableSpec,
    json_cols: list[str],
    echo: pl.Series,
    in_sync: pl.Series,
    after: pl.DataFrame,
    local: pl.DataFrame,
    shadow_base: pl.Series,
) -> tuple[pl.Series, pl.Series]:
    """Compare again, with JSON columns as parsed values, the rows whose texts differed.

    A JSON column may come back from the target formatted differently (Postgres ``jsonb::text``
    reorders keys and adds spaces), so equal documents can hash differently. Only the rows that
    would otherwise be a change or a conflict are re-checked, one document at a time.
    """
    # only rows whose answer formatting can flip: both sides present, hashes different, and
    # (for echoes, the common case of a real update) every non-JSON column equal
    present = local[EXISTS]
    maybe_echo = ~echo & after[EXISTS] & present
    others = [c for c in spec.schema.names if c not in json_cols]
    if others and maybe_echo.any():
        rest_equal = encode_rows(after, others) == encode_rows(local, others)
        maybe_echo = maybe_echo & rest_equal.fill_null(False)
    maybe_sync = ~in_sync & present & shadow_base.is_not_null()
    idx = (maybe_echo | maybe_sync).arg_true()
    if not idx.len():
        return echo, in_sync
    columns = spec.schema.names
    sides = [after[idx], local[idx]]
    base = decode_rows(shadow_base.gather(idx), polars_schema(spec))
    sides.append(base.with_columns(shadow_base.gather(idx).is_not_null().alias(EXISTS)))
    hashes = []
    for side in sides:
        side = side.with_columns(
            side[c].map_elements(_canonical_json, pl.String) for c in json_cols
        )
        hashes.append(row_hashes(side, columns, carried_columns(spec.schema)))
    a, lo, sh = sides
    echo_now = same_state(a[EXISTS], hashes[0], lo[EXISTS], hashes[1])
    sync_now = same_state(lo[EXISTS], hashes[1], sh[EXISTS], hashes[2])
    echo = echo.scatter(idx, echo.gather(idx) | echo_now)
    return echo, in_sync.scatter(idx, in_sync.gather(idx) | sync_now)


def _canonical_json(text: str) -> str:
    try:
        parsed = json.loads(text, parse_float=_json_number)
    except ValueError:
        return text
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"))


def _json_number(text: str) -> float | int:
    """A JSON number with a fraction or exponent; a whole one a double holds exactly as the
    int it equals, so ``5.0`` and ``5`` are one document (as in ``rows._digest``)."""
    value = float(text)
    if value.is_integer() and abs(value) <= EXACT_IN_DOUBLE:
        return int(value)
    return value


def same_state(
    a_exists: pl.Series, a_hash: pl.Series, b_exists: pl.Series, b_hash: pl.Series
) -> pl.Series:
    """Per row: both absent, or both present with the same hash."""
    both = a_exists & b_exists & (a_hash == b_hash).fill_null(False)
    return ((a_exists == b_exists) & (~a_exists | both)).alias("same")


def _align_local(keys: pl.DataFrame, found: pl.DataFrame | None, spec: TableSpec) -> pl.DataFrame:
    key = list(spec.key)
    columns = spec.schema.names
    if found is None or not found.height:
        nulls = canonical(pa.table({"_": pa.nulls(keys.height)}), spec)
        return nulls.with_columns(keys).with_columns(pl.repeat(False, keys.height).alias(EXISTS))
    found = found.unique(subset=key, keep="last").with_columns(pl.lit(True).alias(EXISTS))
    joined = keys.join(found, on=key, how="left", nulls_equal=True, maintain_order="left")
    return joined.select(*columns, pl.col(EXISTS).fill_null(False))


def _align_shadow(
    row_key: pl.Series, shadow: pa.Table | None
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(hash, base, position) per row key; a tombstone has a position and a null hash."""
    if shadow is None or not shadow.num_rows:
        empty = pl.Series([None] * row_key.len(), dtype=pl.String)
        return empty.alias("row_hash"), empty.alias("base"), empty.alias("position")
    found = pl.from_arrow(shadow.select(["row_key", "row_hash", "base", "position"]))
    assert isinstance(found, pl.DataFrame)
    found = found.with_columns(pl.col("row_hash", "base", "position").cast(pl.String))
    joined = row_key.to_frame("row_key").join(
        found.unique(subset="row_key", keep="last"), on="row_key", how="left", maintain_order="left"
    )
    return joined["row_hash"], joined["base"], joined["position"]
