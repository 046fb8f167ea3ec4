"""What the console's pages are built from: conflict field trees and the lag history."""

from __future__ import annotations

import json

from syncengine.console.conflictview import field_rows, pretty
from syncengine.console.history import Chart, History, Sample, chart


def by_path(rows):
    return {r.path: r for r in rows}


def test_field_rows_nest_documents_and_mark_only_what_differs():
    base = {"id": 1, "v": "a", "doc": {"size": {"w": 1, "h": 2}, "tag": "x"}}
    local = {"id": 1, "v": "b", "doc": {"size": {"w": 1, "h": 2}, "tag": "x"}}
    remote = {"id": 1, "v": "a", "doc": json.dumps({"size": {"w": 9, "h": 2}, "tag": "x"})}
    rows = by_path(field_rows(base, local, remote))
    assert list(rows) == ["id", "v", "doc", "doc.size", "doc.size.w", "doc.size.h", "doc.tag"]
    assert (rows["v"].local_differs, rows["v"].remote_differs) == (True, False)
    w = rows["doc.size.w"]
    assert (w.depth, w.base, w.remote, w.local_differs, w.remote_differs) == (2, "1", "9", 0, 1)
    assert rows["doc"].branch and rows["doc.size"].remote_differs
    assert not rows["doc.tag"].remote_differs and not rows["id"].local_differs


def test_field_rows_absent_sides_and_fields():
    rows = by_path(field_rows(None, {"id": 1, "extra": None}, {"id": 1}))
    assert rows["id"].base == "(absent)" and rows["id"].local_differs
    assert (rows["extra"].local, rows["extra"].remote) == ("null", "(absent)")


def test_values_are_left_as_text_for_the_template_to_escape():
    (row,) = field_rows({"v": "<b>"}, {"v": "<script>x</script>"}, {"v": "<b>"})
    assert row.local == "<script>x</script>" and row.local_differs


def test_pretty_opens_json_columns_for_reading():
    shown = pretty(json.dumps({"doc": json.dumps({"a": 1}), "n": 2}))
    assert json.loads(shown) == {"doc": {"a": 1}, "n": 2}
    assert pretty(None) == "(none)" and pretty("not json") == "not json"


def test_history_keeps_an_hour_and_measures_throughput():
    history = History(window=3600)
    history.add("p", Sample(0.0, lag_seconds=5, applied=0, chunks_done={"t": 0}))
    history.add("p", Sample(3000.0, lag_seconds=1, applied=600, chunks_done={"t": 3}))
    history.add("p", Sample(3010.0, lag_seconds=2, applied=700, chunks_done={"t": 4}))
    assert history.throughput("p") == 10.0
    assert history.chunk_rate("p", "t") == 4 / 3010
    history.add("p", Sample(3700.0, lag_seconds=0, applied=700))
    assert [s.at for s in history.samples("p")] == [3000.0, 3010.0, 3700.0]
    assert history.throughput("q") is None and history.chunk_rate("p", "x") is None


def test_chart_scales_to_the_peak_over_the_window():
    samples = [Sample(3400.0, lag_seconds=0.0), Sample(3600.0, lag_seconds=4.0)]
    c = chart("seconds", samples, "lag_seconds", now=3600.0)
    assert (c.peak, c.count) == (4.0, 2)
    assert c.points == "0.0,116.0 600.0,4.0" and c.span == 200.0  # fills as sampled
    # below the floor, the line stays low: 0.5 s of lag drawn at half height of a 1 s scale
    low = chart("seconds", [Sample(3600.0, lag_seconds=0.5)], "lag_seconds", 3600.0, floor=1.0)
    assert (low.points, low.peak) == ("600.0,60.0", 0.5)
    empty = chart("bytes", samples, "lag_bytes", now=3600.0)
    assert (empty.points, empty.peak, empty.count) == ("", None, 0)


def test_tables_page_carries_the_per_table_status(tmp_path):
    """The Tables page shows what ``status --tables`` shows: a paused table is "paused" with
    its held changes; a streaming one its applied rows, last change, lag and dead letters."""
    from syncengine.config.models import PipelineConfig
    from syncengine.console.overview import table_views
    from syncengine.state import SQLiteStateStore
    from syncengine.state.base import DeadLetter

    config = PipelineConfig.model_validate(
        {
            "source": {"type": "postgres", "dsn": "postgresql://x/y", "tables": ["a", "b"]},
            "target": {"type": "postgres", "dsn": "postgresql://x/z"},
        }
    )
    state = SQLiteStateStore(tmp_path / "s.db")
    state.request_pause("p", ["public.b"], "paused")
    state.add_table_stats("p", {"public.a": (7, "2026-01-01T00:00:01+00:00", 0.25)})
    state.add_dead_letters([DeadLetter("p", "public.a", "map", "bad", "{}")])

    class NoDaemon:
        def applied_by_table(self, name: str) -> dict[str, float]:
            return {}

    views = {v.source: v for v in table_views(NoDaemon(), History(), state, "p", config)}  # type: ignore[arg-type]
    assert views["public.b"].state == "paused"
    a = views["public.a"]
    assert (a.applied, a.last_change_at, a.lag_seconds, a.dead_letters) == (
        7,
        "2026-01-01T00:00:01+00:00",
        0.25,
        1,
    )


def test_lag_document_charts_the_stored_history_then_the_consoles_own_samples(tmp_path):
    """The chart's JSON: the daemon's stored samples of the window (from before this console
    existed), the console's own samples only after the newest stored one, per-table rows."""
    from syncengine.console.overview import lag_document
    from syncengine.state import SQLiteStateStore
    from syncengine.state.base import LagSample

    state = SQLiteStateStore(tmp_path / "s.db")
    for at, lag in ((100.0, 9.0), (3000.0, 4.0), (3010.0, 2.0)):
        state.add_lag_samples("p", [LagSample(at, "", lag, 1000, None, 5)], 86400, at)
    state.add_lag_samples("p", [LagSample(3010.0, "public.<b>", 1.0, applied=5)], 86400, 3010)
    own = History()
    own.add("p", Sample(3005.0, lag_seconds=50.0))  # older than the newest stored: dropped
    own.add("p", Sample(3020.0, lag_seconds=1.0, lag_bytes=10))

    def caption(label: str, c: Chart) -> str:
        return f"{label}:{c.count}"

    assert lag_document(state, own, "p", 3600.0, caption, 3750.0)["tables"] == {}
    doc = lag_document(state, own, "p", 3600.0, caption, 3750.0, tables=True)
    assert [(s["at"], s["lag_seconds"], s["applied"]) for s in doc["samples"]] == [
        (3000.0, 4.0, 5),
        (3010.0, 2.0, 5),
        (3020.0, 1.0, None),
    ]
    seconds = doc["charts"]["seconds"]
    assert (seconds["count"], seconds["peak"], seconds["oldest"]) == (3, 4.0, 3000.0)
    assert seconds["caption"] == "seconds:3" and len(seconds["points"].split()) == 3
    assert doc["tables"] == {"public.<b>": [{"at": 3010.0, "lag_seconds": 1.0, "applied": 5}]}
    json.dumps(doc)  # all of it is JSON
