"""Mapping expressions over a column a batch carries as Postgres text (docs/mappings.md):
values with a native form are computed as Postgres would, rows holding a value without one are
dead letters naming the column; `validate` says so beforehand; a pass-through copies all."""

from __future__ import annotations

import textwrap

from syncengine.targets.parquet import read_log
from tests.e2e.harness import CLI, execute

SOURCE = ("CREATE TABLE v (id int PRIMARY KEY, t time, n numeric(12,2), ia int[])",)
ROWS = (
    "(1, '24:00:00', '1.50', '{1}')",
    "(2, '13:00:00', 'NaN', '{2}')",
    "(3, '09:00:00', '2.00', '{{1,2},{3,4}}')",
    "(4, '14:00:00', '3.00', '{4}')",
)


def config(lake: str) -> str:
    return textwrap.dedent(
        f"""
        state: ${{SYNCENGINE_STATE}}
        pipelines:
          other:
            source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.v]}}
            target: {{type: parquet, path: "{lake}"}}
            batch: {{max_rows: 100, max_wait: 100ms}}
            mappings:
              - source: public.v
                fields: {{id: id, twice: n * 2, ia: ia}}
                filter: extract(hour from t) >= 12
        """
    )


def test_expressions_over_text_carried_columns(tmp_path, pg_dsn):
    cli = CLI(tmp_path, config(str(tmp_path / "lake")), {"SRC_DSN": pg_dsn})
    execute(pg_dsn, *SOURCE, "INSERT INTO v VALUES " + ", ".join(ROWS))
    checked = cli.run("validate")
    assert "compute(s) over 't' (time without time zone)" in checked.stdout, checked.stdout
    assert "over 'n' (numeric(12,2))" in checked.stdout
    assert "'ia'" not in checked.stdout  # a plain field computes nothing
    cli.run("backfill")
    log = read_log(tmp_path / "lake", "v")
    by_id = {r["id"]: r for r in log.select(["id", "twice", "ia"]).to_pylist()}
    # row 1 (24:00) and row 2 (NaN) cannot be computed natively; row 3 fails the filter as a
    # time (09:00), its two-dimensional array passing through a plain field is no obstacle
    assert sorted(by_id) == [4], by_id
    assert str(by_id[4]["twice"]) == "6.00"
    letters = cli.run("deadletters", "list").stdout
    assert "column t holds '24:00:00'" in letters, letters
    assert "column n holds 'NaN'" in letters
