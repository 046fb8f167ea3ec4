"""Every built-in strategy on aligned frames (no server), plus property tests for merge."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from syncengine.strategies import EXISTS, StrategyContext, load_strategy
from syncengine.strategies.merge import merge_documents

from syncengine.config.models import ConflictsConfig
from syncengine.errors import UnknownPlugin

COLUMNS = ("id", "name", "qty", "doc", "meta", "updated_at")
STRUCT = pl.Struct({"color": pl.String, "size": pl.Int64})
SCHEMA = {
    "id": pl.Int64,
    "name": pl.String,
    "qty": pl.Int64,
    "doc": pl.String,
    "meta": STRUCT,
    "updated_at": pl.Datetime("us", "UTC"),
    EXISTS: pl.Boolean,
}


def ctx(strategy: str = "merge", **conf) -> StrategyContext:
    return StrategyContext(
        ConflictsConfig(strategy=strategy, **conf), ("id",), COLUMNS, frozenset({"doc"}), "items"
    )


def frame(rows: list[dict], ts: datetime | None = None) -> pl.DataFrame:
    full = [{**{c: None for c in COLUMNS}, EXISTS: True, **r} for r in rows]
    out = pl.DataFrame(full, schema=SCHEMA)
    if ts is not None:
        out = out.with_columns(pl.lit(ts, dtype=pl.Datetime("us", "UTC")).alias("_ts"))
    return out


def at(minute: int) -> datetime:
    return datetime(2024, 1, 1, 0, minute, tzinfo=UTC)


def decide(strategy, base, local, remote, **conf):
    return load_strategy(strategy).decide(base, local, remote, ctx(strategy, **conf))


BASE = frame([{"id": 1, "name": "a", "qty": 1, "updated_at": at(10)}])
LOCAL = frame([{"id": 1, "name": "hand", "qty": 1, "updated_at": at(40)}])
REMOTE = frame([{"id": 1, "name": "a", "qty": 9, "updated_at": at(20)}], ts=at(30))


def test_remote_local_manual():
    r = decide("remote", BASE, LOCAL, REMOTE)
    assert r.rows["name"].to_list() == ["a"] and r.outcome.to_list() == ["remote"]
    lo = decide("local", BASE, LOCAL, REMOTE)
    assert lo.rows["name"].to_list() == ["hand"] and not lo.park.any()
    m = decide("manual", BASE, LOCAL, REMOTE)
    assert m.park.to_list() == [True] and m.outcome.to_list() == ["parked"]


def test_timestamp_field_commit_time_and_ties():
    assert decide("timestamp", BASE, LOCAL, REMOTE, timestamp="updated_at").outcome[0] == "local"
    # without a field the target has no time: the source (commit time 30) wins
    assert decide("timestamp", BASE, LOCAL, REMOTE).outcome[0] == "remote"
    # a remote delete has no field value: its commit time (30) against the target's 40
    gone = REMOTE.with_columns(pl.lit(False).alias(EXISTS))
    assert decide("timestamp", BASE, LOCAL, gone, timestamp="updated_at").outcome[0] == "local"
    tied = LOCAL.with_columns(pl.lit(at(20), dtype=pl.Datetime("us", "UTC")).alias("updated_at"))
    for tie in ("local", "remote"):
        for _ in range(3):  # deterministic
            d = decide("timestamp", BASE, tied, REMOTE, timestamp="updated_at", tie=tie)
            assert d.outcome.to_list() == [tie]


def test_merge_fields_structs_and_json_documents():
    base = frame([{"id": 1, "name": "a", "qty": 1, "meta": {"color": "red", "size": 1},
                   "doc": json.dumps({"x": 1, "y": {"p": 1, "q": 1}})}])  # fmt: skip
    local = frame([{"id": 1, "name": "hand", "qty": 1, "meta": {"color": "blue", "size": 1},
                    "doc": json.dumps({"x": 2, "y": {"p": 1, "q": 2}})}])  # fmt: skip
    remote = frame([{"id": 1, "name": "a", "qty": 9, "meta": {"color": "red", "size": 5},
                     "doc": json.dumps({"x": 1, "y": {"p": 3, "q": 1}, "z": True})}])  # fmt: skip
    d = decide("merge", base, local, remote)
    row = d.rows.row(0, named=True)
    assert (row["name"], row["qty"]) == ("hand", 9)
    assert row["meta"] == {"color": "blue", "size": 5}
    assert json.loads(row["doc"]) == {"x": 2, "y": {"p": 3, "q": 2}, "z": True}
    assert d.outcome.to_list() == ["merged"]


def test_merge_clash_goes_to_tie_and_deletes_take_the_tie_side():
    local = frame([{"id": 1, "name": "L", "qty": 1}])
    remote = frame([{"id": 1, "name": "R", "qty": 1}])
    base = frame([{"id": 1, "name": "a", "qty": 1}])
    assert decide("merge", base, local, remote, tie="remote").rows["name"][0] == "R"
    assert decide("merge", base, local, remote, tie="local").rows["name"][0] == "L"
    deleted = remote.with_columns(pl.lit(False).alias(EXISTS))
    assert decide("merge", base, local, deleted, tie="remote").rows[EXISTS][0] is False
    kept = decide("merge", base, local, deleted, tie="local")
    assert kept.rows[EXISTS][0] is True and kept.outcome[0] == "local"


def test_unknown_strategy_suggests():
    with pytest.raises(UnknownPlugin, match="did you mean 'merge'"):
        load_strategy("merg")


# -- properties ---------------------------------------------------------------------------

names = st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))
qtys = st.one_of(st.none(), st.integers(-3, 3))
metas = st.one_of(
    st.none(),
    st.fixed_dictionaries({"color": names, "size": qtys}),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from(["u", "v"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("abcd"), inner, max_size=3)
    ),
    max_leaves=8,
)
docs = st.one_of(st.none(), json_values.map(json.dumps))
rows_ = st.fixed_dictionaries({"name": names, "qty": qtys, "meta": metas, "doc": docs})
triples = st.lists(st.tuples(rows_, rows_, rows_), min_size=1, max_size=6)


def _frames(triples_):
    sides = []
    for part in range(3):
        sides.append(frame([{"id": i, **t[part]} for i, t in enumerate(triples_)]))
    return sides


def _same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    cols = [c for c in COLUMNS if c != "doc"]
    if not a.select(cols).equals(b.select(cols)):
        return False
    return [_load(x) for x in a["doc"]] == [_load(x) for x in b["doc"]]


def _load(text):
    return None if text is None else json.loads(text)


@settings(max_examples=50, deadline=None)
@given(triples, st.sampled_from(["local", "remote"]))
def test_merge_with_unchanged_local_is_remote_and_vice_versa(triples_, tie):
    base, _, remote = _frames(triples_)
    _, local, _ = _frames(triples_)
    assert _same(decide("merge", base, base, remote, tie=tie).rows, remote)
    assert _same(decide("merge", base, local, base, tie=tie).rows, local)


@settings(max_examples=50, deadline=None)
@given(triples, st.sampled_from(["local", "remote"]))
def test_merge_is_deterministic_and_row_order_independent(triples_, tie):
    base, local, remote = _frames(triples_)
    first = decide("merge", base, local, remote, tie=tie).rows
    assert first.equals(decide("merge", base, local, remote, tie=tie).rows)
    rev = [f.reverse() for f in (base, local, remote)]
    assert decide("merge", *rev, tie=tie).rows.equals(first.reverse())
    # equal sides merge to that side whatever the base
    assert _same(decide("merge", base, local, local, tie=tie).rows, local)


@settings(max_examples=200, deadline=None)
@given(json_values, json_values, json_values, st.booleans())
def test_merge_documents_properties(base, local, remote, tie_remote):
    assert merge_documents(base, base, remote, tie_remote) == remote
    assert merge_documents(base, local, base, tie_remote) == local
    assert merge_documents(base, local, local, tie_remote) == local
    if isinstance(local, dict) and isinstance(remote, dict) and isinstance(base, dict):
        merged = merge_documents(base, local, remote, tie_remote)
        for k in set(local) - set(base) - set(remote):
            assert merged[k] == local[k]  # added on one side only survives
