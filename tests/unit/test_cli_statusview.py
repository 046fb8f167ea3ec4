"""``status`` output: readable at 80 columns (blocks), one table where it fits, nothing cut."""

from __future__ import annotations

import pytest

from syncengine.cli.statusview import CLUSTER_FIELDS, FIELDS, print_status

INFOS = [
    {
        "pipeline": "orders_to_warehouse",
        "checkpoint": "0000000001D8E180.00000000",
        "lag_bytes": 123456789,
        "lag_seconds": 1.25,
        "lag_last_hour": {
            "samples": 360,
            "span_seconds": 3590.0,
            "first_seconds": 2.0,
            "last_seconds": 1.25,
            "max_seconds": 14.5,
            "applied_per_second": 120.0,
        },
        "retained_wal_bytes": 987654321,
        "rows_applied": 1000000,
        "pending_conflicts": 3,
        "dead_letters": 7,
        "last_error": None,
    },
    {
        "pipeline": "events",
        "checkpoint": None,
        "rows_applied": 0,
        "pending_conflicts": 0,
        "dead_letters": 0,
        "last_error": None,
        "reachable": False,
        "error": "connection refused: is the server running on host db.internal port 5432?",
    },
]


def printed(capsys: pytest.CaptureFixture[str], width: int) -> list[str]:
    print_status(INFOS, width=width)
    return capsys.readouterr().out.splitlines()


def test_narrow_terminal_gets_one_block_per_pipeline(capsys):
    lines = printed(capsys, 80)
    out = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in out
    for label, _ in FIELDS[1:]:
        assert sum(line.split()[0] == label for line in lines if line.strip()) == 2, label
    assert "pipeline orders_to_warehouse" in out and "pipeline events" in out
    assert "0000000001D8E180.00000000" in out and "987654321" in out and "1.2" in out
    # a long error wraps instead of being cut
    words = "".join(out.split())
    assert "".join(INFOS[1]["error"].split()) in words


def test_wide_terminal_keeps_the_table(capsys):
    lines = printed(capsys, 250)
    header = next(line for line in lines if "checkpoint" in line)
    assert all(label in header for label, _ in FIELDS)  # one header row holds every column
    row = next(line for line in lines if "orders_to_warehouse" in line)
    assert "0000000001D8E180.00000000" in row and "123456789" in row
    assert "2.0→1.2s max 14.5" in row  # the hour's lag trend the daemon recorded
    assert "…" not in "\n".join(lines)
    assert not any(line.startswith("pipeline ") for line in lines)


def test_cluster_mode_adds_the_stream_workflow(capsys):
    """``status`` of a config with a ``cluster:`` section: each pipeline's workflow state, the
    worker holding its stream, the attempt, the fencing epoch and the last error."""
    cluster = {
        "cluster_state": "running",
        "cluster_worker": "4242@worker-3",
        "cluster_attempt": 2,
        "cluster_epoch": 7,
        "cluster_error": "slot is active for PID 99",
    }
    print_status([{**INFOS[0], **cluster}, {**INFOS[1], "cluster_state": "not applied"}], 80)
    out = capsys.readouterr().out
    for label, key in CLUSTER_FIELDS:
        assert label in out, key
    assert "4242@worker-3" in out and "not applied" in out and "slot is active" in out
    print_status(INFOS, 250)  # embedded mode: no cluster columns
    assert "workflow" not in capsys.readouterr().out


def test_a_warning_and_a_resync_are_shown_only_when_some_pipeline_has_one(capsys):
    noticed = [{**INFOS[0], "warning": "slot s was invalidated by the server", "resync": "copy: x"}]
    print_status([*noticed, INFOS[1]], width=80)
    out = capsys.readouterr().out
    assert "slot s was invalidated by the server" in out and "copy: x" in out
    labels = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert labels.count("warning") == 2 and labels.count("resync") == 2  # "-" for the other
    print_status(INFOS, width=80)
    assert "warning" not in capsys.readouterr().out
