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
