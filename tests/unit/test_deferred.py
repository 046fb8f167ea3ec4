"""Polars is imported at first use: a passthrough backfill's modules load without it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from syncengine.deferred import Deferred

# everything `syncengine backfill` imports before its first batch of a Postgres → Postgres
# passthrough, plus the identity spec that replaces the mapping compiler there
PROBE = textwrap.dedent(
    """
    import json, sys
    import syncengine.cli.jobs
    import syncengine.runtime.identity
    import syncengine.runtime.passthrough
    import syncengine.runtime.pipeline
    import syncengine.runtime.runner
    import syncengine.sources.postgres.factory
    import syncengine.sources.postgres.passthrough
    import syncengine.sources.postgres.source
    import syncengine.targets.postgres.passthrough
    import syncengine.targets.postgres.target
    heavy = ["polars", "sqlglot", "syncengine.mappings"]
    print(json.dumps([m for m in heavy if m in sys.modules]))
    """
)


def test_the_passthrough_path_loads_neither_polars_nor_the_mapping_compiler() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) == []


def test_the_resolver_loads_without_deepdiff() -> None:
    """Only a queued conflict's delta needs deepdiff; every stream's first group loads the
    resolver."""
    probe = "import sys, syncengine.conflicts.resolver; print('deepdiff' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


def test_a_deferred_module_is_imported_at_the_first_attribute_read() -> None:
    module = Deferred("json.decoder")
    assert "JSONDecodeError" not in vars(module)
    error = module.JSONDecodeError
    import json.decoder

    assert error is json.decoder.JSONDecodeError
    assert vars(module)["JSONDecodeError"] is error  # kept: the next read is a plain lookup


def test_dunders_are_not_forwarded() -> None:
    module = Deferred("json")
    with pytest.raises(AttributeError):
        module.__wrapped__  # noqa: B018 - the read is the test
    with pytest.raises(AttributeError):
        Deferred("json").no_such_attribute  # noqa: B018


# a Mongo stream without mapping filters: its `$match`, the snapshot's, and the decoded
# batches' Arrow-only steps (a `sync --once` with nothing to do stops there)
MONGO_PROBE = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa
    import syncengine.runtime.pipeline
    import syncengine.sources.mongo.source
    from syncengine.changes import ChangeBatch
    from syncengine.sources.base import no_row_filters
    from syncengine.sources.mongo.pushdown import snapshot_matches, stream_matches
    assert stream_matches(["orders"], no_row_filters) == {}
    assert snapshot_matches(["orders"], no_row_filters, None) == {"orders": None}
    batch = ChangeBatch("orders", pa.table({"_id": [1]}), ("_id",), {})
    assert batch.replace(pa.table({"_id": [2]})).data.column("_id").to_pylist() == [2]
    heavy = ["polars", "sqlglot", "syncengine.mappings"]
    print(json.dumps([m for m in heavy if m in sys.modules]))
    """
)


def test_a_mongo_stream_without_filters_loads_neither_polars_nor_the_mappings() -> None:
    out = subprocess.run(
        [sys.executable, "-c", MONGO_PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) == []


def test_a_filter_is_still_pushed_into_the_mongo_stream() -> None:
    from syncengine.sources.mongo.pushdown import stream_matches

    matches = stream_matches(["orders"], lambda table: (("qty > 5", "postgres"),))
    assert list(matches) == ["orders"]
    assert "fullDocument.qty" in json.dumps(matches["orders"])
