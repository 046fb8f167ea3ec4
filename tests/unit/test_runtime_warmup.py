"""The backfill warm-up loads the first decoded batch's modules in its own thread (fresh
interpreters: this test process has imported everything already), and a command that ends
before the imports do waits for them rather than tearing the interpreter down under them."""

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

#: a command ending (the entry point's exit) at once after the warm-up started
ENDS_AT_ONCE = textwrap.dedent(
    """
    import os, sys
    import pyarrow  # a data command has loaded it: the exit may skip the teardown
    from syncengine.cli import main
    from syncengine.runtime.warmup import FIRST_GROUP_IMPORTS, warm_up
    thread = warm_up(FIRST_GROUP_IMPORTS)
    leave = os._exit
    def watched_exit(code):
        print("imports done:", not thread.is_alive() and "polars" in sys.modules, flush=True)
        leave(code)
    os._exit = watched_exit
    main._leave(3)
    print("not left", flush=True)
    """
)


def test_the_warm_up_loads_the_mapping_compiler_and_the_resolver_in_its_own_thread() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(out.stdout)
    assert found["before"] == []
    assert found["after"] == ["syncengine.mappings", "syncengine.conflicts.resolver", "polars"]
    assert found["daemon"] is False  # an ordinary exit waits for it too


def test_a_command_ending_during_the_warm_up_waits_for_its_imports_then_leaves() -> None:
    out = subprocess.run(
        [sys.executable, "-c", ENDS_AT_ONCE], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 3, out.stderr
    assert "Fatal" not in out.stderr
    # the imports finished before the process ended, which then skipped the teardown
    assert out.stdout.splitlines() == ["imports done: True"]
