"""Two-way ``manual``: a key parked by one direction holds the other direction's changes of it
too, under that direction's own name, while its other keys flow (no server)."""

from __future__ import annotations

import asyncio

from syncengine.config.models import ConflictsConfig
from syncengine.conflicts import ConflictResolver
from syncengine.targets.base import Checkpoint
from tests.unit.strategies.conflicts_memtarget import MemoryTarget
from tests.unit.strategies.test_strategies_manual_queue import parked_setup
from tests.unit.strategies.test_strategies_resolver import SPEC, batch, key, t


def test_the_other_direction_holds_a_key_its_twin_parked(tmp_path):
    h = parked_setup(tmp_path)  # direction "p" parked key 1
    [conflict] = h.state.list_conflicts("p")
    other = MemoryTarget()
    twin = ConflictResolver(
        "p.reverse", other, h.state, ConflictsConfig(strategy="manual"), twin=("p", SPEC.name)
    )
    changes = batch(
        [
            {"id": 1, "name": "hand2", "qty": 1, "updated_at": t(30)},
            {"id": 4, "name": "flows", "qty": 4, "updated_at": t(30)},
        ],
        ["c", "c"],
        40,
    )

    async def run():
        resolved = await twin.resolve(SPEC, changes)
        await other.apply([resolved.write], Checkpoint("s2", changes.last_position or ""))
        return resolved

    resolved = asyncio.run(run())
    assert (resolved.held, resolved.parked) == (1, 0)
    assert other.rows["items"].get(key(1)) is None  # held, not applied
    assert other.rows["items"][key(4)]["name"] == "flows"
    assert len(h.state.held_changes(conflict.id, "p.reverse")) == 1
    assert h.state.held_changes(conflict.id, "p") == []
    assert h.state.list_conflicts("p.reverse") == []  # one conflict, not a second one
