"""Mongo stream positions: strings that sort in cluster-time order on any server.

A resume token's ``_data`` is opaque: real MongoDB encodes it so that it sorts by cluster time,
other wire-compatible servers need not. The runtime compares positions as strings
(``sync --once`` asks "is ``until`` after ``start``?"), so a position leads with the cluster time:

* ``TTTTTTTTIIIIIIII`` — a bare cluster time (seconds and increment, 8 upper-case hex digits
  each): what :meth:`MongoSource.current_position` and the snapshot report. A stream started
  from it opens with ``startAtOperationTime``.
* ``TTTTTTTTIIIIIIII:<_data>`` — an event: its cluster time, then its resume token's ``_data``.
  A stream started from it opens with ``startAfter`` (which, unlike ``resumeAfter``, also
  resumes past an ``invalidate``).

Comparing two positions compares cluster times first; a bare time sorts before every event
at that time, after every event before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bson import Timestamp

from syncengine.errors import FatalError


def time_position(ts: Timestamp) -> str:
    return f"{ts.time:08X}{ts.inc:08X}"


def event_position(cluster_time: Timestamp, token: dict[str, object]) -> str:
    return f"{time_position(cluster_time)}:{token['_data']}"


def parse_position(position: str) -> tuple[Timestamp, dict[str, object] | None]:
    """(cluster time, resume token or None) of a position string."""
    head, _, data = position.partition(":")
    try:
        ts = Timestamp(int(head[:8], 16), int(head[8:16], 16))
    except ValueError:
        ts = None
    if ts is None or len(head) != 16:
        raise FatalError(
            f"'{position[:40]}' is not a Mongo stream position",
            hint="reset the pipeline's checkpoint (syncengine checkpoints CONFIG reset)",
        )
    return ts, ({"_data": data} if data else None)


def position_time(position: str) -> Timestamp:
    return parse_position(position)[0]


_PLAUSIBLE = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01


def token_time(token: Mapping[str, Any] | None) -> Timestamp | None:
    """The cluster time in a real MongoDB resume token (None when the format is not known).

    MongoDB's ``_data`` is KeyString hex that starts with ``82`` and the big-endian cluster
    time; other servers' tokens are opaque, and an implausible time is taken as "unknown".
    """
    data = str((token or {}).get("_data") or "")
    if len(data) < 18 or not data.startswith("82"):
        return None
    try:
        seconds, increment = int(data[2:10], 16), int(data[10:18], 16)
    except ValueError:
        return None
    if not _PLAUSIBLE[0] <= seconds < _PLAUSIBLE[1]:
        return None
    return Timestamp(seconds, increment)


def as_datetime(ts: Timestamp) -> datetime:
    """Cluster time as an aware UTC datetime (second precision, as the cluster time has)."""
    return datetime.fromtimestamp(ts.time, UTC)
