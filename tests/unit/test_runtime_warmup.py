"""The backfill warm-up loads the first decoded batch's modules in its own thread (fresh
interpreters: this test process has imported everything already)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import json, sys
    from syncengine.runtime.warmup import MODULES, warm_up
    before = [m for m in (*MODULES, "polars") if m in sys.modules]
    thread = warm_up()
    thread.join(60)
    after = [m for m in (*MODULES, "polars") if m in sys.modules]
    print(json.dumps({"before": before, "after": after, "daemon": thread.daemon}))
    """
)


def test_the_warm_up_loads_the_mapping_compiler_and_the_resolver_in_a_daemon_thread() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(out.stdout)
    assert found["before"] == []
    assert found["after"] == ["syncengine.mappings", "syncengine.conflicts.resolver", "polars"]
    assert found["daemon"] is True
