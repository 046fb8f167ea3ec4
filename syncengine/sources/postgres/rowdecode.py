"""The row messages of one relation decoded together: pgoutput TupleData → Arrow binary columns.

The stream keeps each Insert, Update and Delete payload of a table as the bytes it arrived as
(:meth:`.assembler.ChangeAssembler.feed_payload` does nothing per value); when the table's
batch is cut, :func:`decode_rows` walks all of them at once with NumPy, one step per *column*
for every row together: read each row's value kind, read the lengths, advance the offsets. A
value is never a Python object: one gather per column copies the values into an Arrow binary
array, which :func:`.columns.to_arrow` then casts as before. Per-value Python was most of the
stream's decode time (docs/benchmarks-findings.md, "vectorized row decoding").

Every length is checked against its message's end before anything is read past it, so
malformed bytes raise :class:`~syncengine.errors.DecodeError` (offset within the message, and
the message's number in the batch), as the message-at-a-time decoder does; the difference is
*when*: at the cut, not on arrival. Nothing of the batch is emitted then.

Updates that carry an old image ('K': the key changed; 'O': REPLICA IDENTITY FULL) are decoded
here too. One whose key changed becomes two rows, a delete of the old key then the update (see
:mod:`.assembler`); an update with an old image therefore owns two row positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import as_strided

from syncengine.changes import OP_DELETE, OP_INSERT, OP_UPDATE
from syncengine.errors import DecodeError

#: value states per column and row
VALUE, NULL, UNSENT = 0, 1, 2

_T, _B, _N, _U = ord("t"), ord("b"), ord("n"), ord("u")
_INSERT, _UPDATE, _DELETE = ord("I"), ord("U"), ord("D")
_NEW, _KEY, _OLD = ord("N"), ord("K"), ord("O")
_PAD = bytes(8)
_HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)


@dataclass
class _Image:
    """One tuple per row: per column, each row's value offset, length and state."""

    start: list[np.ndarray]
    size: list[np.ndarray]
    state: list[np.ndarray]


@dataclass
class DecodedRows:
    """The rows of a run of messages, in order (a moved key's delete before its update)."""

    #: per column: the row image's values (binary; null = SQL NULL or not sent)
    values: list[pa.Array]
    #: per column: the old image's values (None: every row's is null), or None when no row
    #: has an old image
    before: list[pa.Array | None] | None
    #: column index → whether each row's value was not sent (unchanged TOAST)
    unsent: dict[int, np.ndarray]
    ops: pa.Array
    #: message number of every row (sorted; a moved key's two rows share it)
    source: np.ndarray
    #: 1 for the update half of an update with an old image (its second position), else 0
    second: np.ndarray


def decode_rows(payloads: Sequence[bytes], width: int, key: Sequence[int]) -> DecodedRows:
    """Decode Insert/Update/Delete payloads of one relation with ``width`` columns; ``key``:
    the column indexes that decide whether an update moved its row to another key."""
    n = len(payloads)
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    # padded, so that reading a column head (5 bytes) at any offset up to the end is safe
    data = b"".join([*payloads, _PAD])
    buf = np.frombuffer(data, dtype=np.uint8)
    head = as_strided(buf, shape=(len(buf) - 4, 5), strides=(1, 1), writeable=False)
    if n and lengths.min() < 6:
        row = int(np.argmax(lengths < 6))
        _fail(starts, row, int(ends[row]), "truncated row message")
    kind = buf[starts]
    tag = buf[starts + 5]
    is_update = kind == _UPDATE
    has_old = is_update & ((tag == _KEY) | (tag == _OLD))
    ok = ((kind == _INSERT) & (tag == _NEW)) | (is_update & ((tag == _NEW) | has_old))
    ok |= (kind == _DELETE) & ((tag == _KEY) | (tag == _OLD))
    if not ok.all():
        row = int(np.argmin(ok))
        _fail(starts, row, int(starts[row]) + 5, f"unexpected tuple tag {int(tag[row])!r}")
    first, after = _walk(head, starts + 6, ends, starts, width)
    old_rows = np.flatnonzero(has_old)
    second: _Image | None = None
    if old_rows.size:
        at = after[old_rows]
        wrong = (at >= ends[old_rows]) | (buf[at] != _NEW)
        if wrong.any():
            bad = int(old_rows[int(np.argmax(wrong))])
            _fail(starts, bad, int(after[bad]), "expected new tuple tag b'N'")
        second, after_new = _walk(head, at + 1, ends[old_rows], starts[old_rows], width)
        after[old_rows] = after_new
    if (after != ends).any():
        row = int(np.argmax(after != ends))
        _fail(
            starts,
            row,
            int(after[row]),
            f"{int(ends[row] - after[row])} unexpected trailing bytes after "
            f"{chr(int(kind[row]))!r} message",
        )
    whole = has_old & (tag == _OLD)
    return _rows(data, n, kind, has_old, whole, old_rows, first, second, width, key)


def _walk(
    head: np.ndarray, off: np.ndarray, lim: np.ndarray, msg: np.ndarray, width: int
) -> tuple[_Image, np.ndarray]:
    """TupleData at ``off`` (one per row, each ending by ``lim``): every column's offsets,
    lengths and states, and the offset after each tuple. ``head[i]`` is the 5 bytes at offset
    ``i`` (a column's kind and length), so a step reads every row's with one gather."""
    if (off + 2 > lim).any():
        row = int(np.argmax(off + 2 > lim))
        _fail(msg, row, int(off[row]), "truncated tuple column count")
    count = np.ascontiguousarray(head[off][:, :2]).view(">i2").reshape(-1)
    if (count != width).any():
        row = int(np.argmax(count != width))
        _fail(msg, row, int(off[row]), f"tuple has {int(count[row])} columns, relation has {width}")
    off = off + 2
    image = _Image([], [], [])
    for _ in range(width):
        step = head[off]
        kind = step[:, 0]
        size = np.ascontiguousarray(step[:, 1:]).view(">i4").reshape(-1).astype(np.int64)
        is_value = (kind == _T) | (kind == _B)
        if is_value.all():  # the common case: no NULL in this column
            end = off + 5 + size
            if ((size < 0) | (end > lim)).any():
                _explain(head, off, lim, msg)
            image.start.append(off + 5)
            image.size.append(size)
            image.state.append(np.zeros(len(off), dtype=np.int8))
            off = end
            continue
        is_null = kind == _N
        size[~is_value] = 0
        end = off + 5 + size
        bad = (off >= lim) | ~(is_value | is_null | (kind == _U))
        bad |= is_value & ((size < 0) | (end > lim))
        if bad.any():
            _explain(head, off, lim, msg)
        image.start.append(np.where(is_value, off + 5, off))
        image.size.append(size)
        image.state.append(
            np.where(is_value, VALUE, np.where(is_null, NULL, UNSENT)).astype(np.int8)
        )
        off = np.where(is_value, end, off + 1)
    return image, off


def _explain(head: np.ndarray, off: np.ndarray, lim: np.ndarray, msg: np.ndarray) -> None:
    """Raise for the first row whose column at ``off`` is malformed, saying what is wrong."""
    for row in range(len(off)):
        at, end = int(off[row]), int(lim[row])
        kind = int(head[at][0])
        if at >= end:
            _fail(msg, row, at, "truncated column kind")
        if kind in (_N, _U):
            continue
        if kind not in (_T, _B):
            _fail(msg, row, at, f"unknown tuple column kind {kind!r}")
        if at + 5 > end:
            _fail(msg, row, at + 1, "truncated value length")
        size = int.from_bytes(bytes(head[at + 1][:4]), "big", signed=True)
        if size < 0 or at + 5 + size > end:
            _fail(msg, row, at + 5, f"truncated value: need {size} bytes, {end - at - 5} left")
    raise AssertionError("a malformed column was flagged but none found")


def _fail(msg: np.ndarray, row: int, at: int, what: str) -> None:
    raise DecodeError(f"row message {row} of the batch: {what}", offset=at - int(msg[row]))


def _rows(
    data: bytes,
    n: int,
    kind: np.ndarray,
    has_old: np.ndarray,
    whole: np.ndarray,
    old_rows: np.ndarray,
    first: _Image,
    second: _Image | None,
    width: int,
    key: Sequence[int],
) -> DecodedRows:
    """Pick each row's images, split updates that moved their key, build the columns."""
    moved = np.zeros(n, dtype=bool)
    # every value of an image is a segment of one zero-copy binary array over the payloads;
    # a column is one ``take`` of its segments (Arrow copies the values, no Python per value)
    images = [_segments(data, first, width)]
    second_base = len(images[0])
    old_index = np.zeros(n, dtype=np.int64)
    if second is not None:
        images.append(_segments(data, second, width))
        old_index[old_rows] = np.arange(len(old_rows))
        moved[old_rows] = _key_moved(images, first, second, old_rows, key, width)
    values_of = pa.chunked_array(images) if len(images) > 1 else images[0]
    is_delete = kind == _DELETE
    with_before = is_delete | has_old
    # a moved key: the delete of the old key (its old image), then the update
    source = np.repeat(np.arange(n), np.where(moved, 2, 1))
    delete_half = np.zeros(len(source), dtype=bool)
    delete_half[:-1] = source[1:] == source[:-1]
    second_position = np.zeros(len(source), dtype=np.int8)
    second_position[has_old[source] & ~delete_half] = 1
    # rows whose values are the new image of an update with an old image (the second tuple);
    # the rest carry the first tuple (a delete's old image is its values too)
    use_second = has_old[source] & ~delete_half
    fill_from_old = (moved & whole)[source] & use_second
    values: list[pa.Array] = []
    before: list[pa.Array | None] | None = [] if with_before.any() else None
    unsent: dict[int, np.ndarray] = {}
    first_at = source * (2 * width)
    second_at = second_base + old_index[source] * (2 * width)
    for c in range(width):
        old_state = first.state[c][source]
        state = old_state
        at = first_at + 2 * c
        if second is not None:
            new_state = np.full(n, NULL, dtype=np.int8)
            new_state[old_rows] = second.state[c]
            new_state = new_state[source]
            # a moved key's update under REPLICA IDENTITY FULL: unsent values are the old ones
            pick = use_second & ~(fill_from_old & (new_state == UNSENT))
            state = np.where(pick, new_state, old_state)
            at = np.where(pick, second_at + 2 * c, at)
        values.append(_take(values_of, at, state == VALUE))
        if (state == UNSENT).any():
            unsent[c] = state == UNSENT
        if before is not None:
            keep = with_before[source] & (old_state == VALUE)
            # a delete's old key leaves most columns null: no take for those
            before.append(_take(images[0], first_at + 2 * c, keep) if keep.any() else None)
    op_of = np.where(kind == _INSERT, 0, np.where(is_delete, 2, 1))[source]
    op_of[delete_half] = 2
    ops = pa.DictionaryArray.from_arrays(
        pa.array(op_of.astype(np.int8)), pa.array([OP_INSERT, OP_UPDATE, OP_DELETE])
    ).cast(pa.string())
    return DecodedRows(values, before, unsent, ops, source, second_position)


def _segments(data: bytes, image: _Image, width: int) -> pa.Array:
    """A zero-copy binary array over ``data`` whose even elements are the image's values,
    row by row and column by column (element ``2 * (row * width + column)``); the odd ones
    are the bytes between them. Not-a-value columns are empty segments at their kind byte,
    so the boundaries never go backwards."""
    rows = len(image.start[0]) if width else 0
    if rows == 0:
        return pa.array([], pa.binary())
    small = len(data) < 1 << 31
    bounds = np.empty((rows, width, 2), dtype=np.int32 if small else np.int64)
    for c in range(width):
        bounds[:, c, 0] = image.start[c]
        bounds[:, c, 1] = image.start[c] + image.size[c]
    return pa.Array.from_buffers(
        pa.binary() if small else pa.large_binary(),
        rows * width * 2 - 1,
        [None, pa.py_buffer(bounds), pa.py_buffer(data)],
    )


def _take(values: pa.Array | pa.ChunkedArray, at: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Elements ``at`` of ``values`` as a new binary array, null where not ``valid``."""
    index = pa.array(at, pa.int64(), mask=None if valid.all() else ~valid)
    taken = values.take(index)
    if isinstance(taken, pa.ChunkedArray):
        taken = taken.combine_chunks()
    return taken if taken.type == pa.binary() else taken.cast(pa.binary())


def _key_moved(
    images: list[pa.Array],
    old: _Image,
    new: _Image,
    rows: np.ndarray,
    key: Sequence[int],
    width: int,
) -> np.ndarray:
    """Per update with an old image: whether a key column's sent values differ (text forms
    of one type compare as values; an unsent value is an unchanged one)."""
    moved = np.zeros(len(rows), dtype=bool)
    for c in key:
        both = (old.state[c][rows] == VALUE) & (new.state[c] == VALUE)
        if not both.any():
            continue
        a = _take(images[0], rows * (2 * width) + 2 * c, both)
        b = _take(images[1], np.arange(len(rows)) * (2 * width) + 2 * c, both)
        moved |= pc.fill_null(pc.not_equal(a, b), False).to_numpy(zero_copy_only=False)
    return moved


def positions(prefixes: Sequence[str], run_of: np.ndarray, seq: np.ndarray) -> pa.Array:
    """``<prefix><seq as 8 hex digits>`` per row, built as one fixed-width byte matrix
    (``prefix`` by transaction run, ``run_of`` each row's run)."""
    n = len(seq)
    if n == 0:
        return pa.array([], pa.string())
    widths = {len(p) for p in prefixes}
    if len(widths) != 1 or int(seq.max()) > 0xFFFFFFFF:
        return pa.array(
            [f"{prefixes[r]}{s:08X}" for r, s in zip(run_of, seq, strict=True)], pa.string()
        )
    width = widths.pop()
    table = np.frombuffer("".join(prefixes).encode(), dtype=np.uint8).reshape(-1, width)
    out = np.empty((n, width + 8), dtype=np.uint8)
    out[:, :width] = table[run_of]
    for digit in range(8):
        out[:, width + digit] = _HEX[(seq >> (28 - 4 * digit)) & 0xF]
    offsets = np.arange(0, (n + 1) * (width + 8), width + 8, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out.reshape(-1))]
    )
