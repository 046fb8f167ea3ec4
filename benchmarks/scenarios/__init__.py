"""Every scenario, in the order the suite runs them."""

from __future__ import annotations

from benchmarks.core import Scenario
from benchmarks.scenarios import (
    cluster_backfill,
    cluster_snapshot,
    external,
    mongo_cdc,
    mongo_to_pg,
    pg_add_table,
    pg_backfill,
    pg_backfill_linear,
    pg_backfill_mapped,
    pg_bigtxn,
    pg_cdc,
    pg_cdc_live,
    pg_latency,
    pg_to_mongo,
    pgbench_backfill,
    pgbench_cdc,
    pgbench_live,
    two_way,
)

SCENARIOS: list[Scenario] = [
    pg_backfill.SCENARIO,
    pg_backfill_mapped.SCENARIO,
    pg_backfill_linear.SCENARIO,
    pgbench_backfill.SCENARIO,
    cluster_backfill.SCENARIO,
    cluster_snapshot.SCENARIO,
    pg_cdc.SCENARIO,
    pgbench_cdc.SCENARIO,
    pg_cdc_live.SCENARIO,
    pg_latency.SCENARIO,
    pgbench_live.SCENARIO,
    pg_add_table.SCENARIO,
    pg_bigtxn.SCENARIO,
    two_way.SCENARIO,
    mongo_cdc.SCENARIO,
    pg_to_mongo.SCENARIO,
    mongo_to_pg.SCENARIO,
    *external.SCENARIOS,
]
