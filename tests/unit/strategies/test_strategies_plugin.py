"""A third-party strategy installed as a package is found through its entry point and used by
name in a config (tests/plugins/prefer_nonnull). The package goes into a temporary folder,
not the shared venv; a fresh interpreter with that folder on its path proves discovery."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "prefer_nonnull"

PROBE = textwrap.dedent(
    """
    import asyncio, json
    import pyarrow as pa
    from syncengine.config import parse_config
    from syncengine.conflicts import ConflictResolver
    from syncengine.state import SQLiteStateStore
    from syncengine.targets.base import Checkpoint
    from tests.unit.strategies.conflicts_memtarget import MemoryTarget
    from tests.unit.strategies.test_strategies_resolver import SPEC, batch, key, t

    config = parse_config(json.dumps({"pipelines": {"p": {
        "source": {"type": "postgres", "dsn": "postgresql://h/db", "tables": ["items"]},
        "target": {"type": "parquet", "path": "/tmp/x"},
        "conflicts": {"strategy": "prefer_nonnull"}}}}))
    conflicts = config.pipelines["p"].conflicts

    async def main():
        target = MemoryTarget()
        state = SQLiteStateStore(":memory:")
        resolver = ConflictResolver("p", target, state, conflicts)
        async def run(b):
            r = await resolver.resolve(SPEC, b)
            await target.apply([r.write], Checkpoint("s", b.last_position))
            return r
        await run(batch([{"id": 1, "name": "a", "qty": 1, "updated_at": t(1)}], ["r"]))
        target.edit("items", key(1), name="hand", qty=5)
        r = await run(batch([{"id": 1, "name": None, "qty": 9, "updated_at": t(2)}], ["u"], 5))
        row = target.rows["items"][key(1)]
        print(json.dumps({"outcomes": r.outcomes, "name": row["name"], "qty": row["qty"]}))

    asyncio.run(main())
    """
)


def test_entry_point_plugin_is_found_and_used(tmp_path):
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
               str(site), str(PLUGIN)]  # fmt: skip
    # with a recent setuptools in the venv no download is needed; otherwise pip fetches it
    fast = subprocess.run([*install, "--no-build-isolation"], capture_output=True, timeout=300)
    if fast.returncode != 0:
        subprocess.run(install, check=True, capture_output=True, timeout=300)
    assert list(site.glob("syncengine_prefer_nonnull-*.dist-info/entry_points.txt"))
    repo = Path(__file__).resolve().parents[3]
    env = {"PYTHONPATH": f"{site}:{repo}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == (
        '{"outcomes": {"prefer_nonnull": 1}, "name": "hand", "qty": 9}'
    )


def test_without_the_plugin_the_name_is_unknown(tmp_path):
    repo = Path(__file__).resolve().parents[3]
    probe = (
        "from syncengine.config import parse_config\n"
        "parse_config(str({'pipelines': {'p': {'source': {'type': 'postgres', 'dsn': 'x', "
        "'tables': ['t']}, 'target': {'type': 'parquet', 'path': '/tmp/x'}, "
        "'conflicts': {'strategy': 'prefer_nonnull'}}}}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0 and "'prefer_nonnull' is not a strategy" in out.stderr
