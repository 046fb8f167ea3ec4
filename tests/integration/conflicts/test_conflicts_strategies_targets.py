"""Each strategy against real Postgres and Mongo targets edited by hand.

Seed five rows through the pipeline, then by hand: edit row 1 (name, updated_at → minute 40),
delete row 2, insert row 9 (never written by the pipeline). Then one batch from the source:
row 1 (qty), row 2 (name), insert row 9, a clean change to row 4 and a new row 7.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conflicts.conflicts_env import Env, row

SEED = [row(i, f"n{i}", i, 10) for i in range(1, 6)]
INCOMING = [
    row(1, "n1", 100, 20),
    row(2, "again", 2, 20),
    row(9, "ours", 9, 20),
    row(4, "clean", 4, 20),
    row(7, "new", 7, 20),
]
UNTOUCHED = {3: ("n3", 3), 5: ("n5", 5), 4: ("clean", 4), 7: ("new", 7)}
EXPECTED = {
    # source wins everywhere
    "remote": ({1: ("n1", 100), 2: ("again", 2), 9: ("ours", 9)}, {"remote": 3}),
    # the target's edit, delete and foreign row stay
    "local": ({1: ("hand", 1), 9: ("foreign", 0)}, {"local": 3}),
    # row 1: name from the target, qty from the source; 2 (deleted vs changed) and 9 (no base,
    # every field differs): the tie side, remote
    "merge": (
        {1: ("hand", 100), 2: ("again", 2), 9: ("ours", 9)},
        {"merged": 2, "remote": 1},
    ),
    # row 1: the target's updated_at (40) is newer than the source's (20); row 2 has no
    # target time; row 9's target time (1) is older
    "timestamp": ({1: ("hand", 1), 2: ("again", 2), 9: ("ours", 9)}, {"local": 1, "remote": 2}),
}


@pytest.mark.parametrize("strategy", sorted(EXPECTED))
def test_strategy_on_hand_edited_target(target_where, tmp_path, strategy):
    kind, where = target_where
    expected_rows, expected_outcomes = EXPECTED[strategy]

    async def scenario() -> None:
        env = await Env(
            kind,
            where,
            tmp_path / "state.db",
            strategy=strategy,
            timestamp="updated_at",
            audit=True,  # remote: detect and audit what it overwrites
        ).open()
        try:
            assert (await env.run(SEED, ["r"] * 5)).conflicts == 0
            env.edit(1, name="hand", updated_at=row(0, "", 0, 40)["updated_at"])
            env.delete(2)
            env.insert(row(9, "foreign", 0, 1))
            resolved = await env.run(INCOMING, ["u", "u", "c", "u", "c"])
            assert resolved.conflicts == 3
            assert resolved.outcomes == expected_outcomes
            assert env.rows() == {**UNTOUCHED, **expected_rows}
            # a replay of the same changes is now an echo or, where the target kept its
            # own version, the same conflict decided the same way
            again = await env.run(INCOMING, ["u", "u", "c", "u", "c"])
            assert env.rows() == {**UNTOUCHED, **expected_rows}
            assert again.echoes >= 2
            audit = env.state.db.execute(
                "SELECT COUNT(*) FROM audit WHERE strategy = ?", (strategy,)
            ).fetchone()[0]
            assert audit == 3 + again.conflicts
        finally:
            await env.close()

    asyncio.run(scenario())


def test_echo_of_our_own_write_is_skipped(target_where, tmp_path):
    kind, where = target_where

    async def scenario() -> None:
        env = await Env(kind, where, tmp_path / "state.db", strategy="remote", audit=True).open()
        try:
            await env.run(SEED, ["r"] * 5)
            echo = await env.run([row(3, "n3", 3, 10)], ["u"])
            assert (echo.echoes, echo.conflicts, echo.write.batch.num_rows) == (1, 0, 0)
            # a hand edit that happens to equal the incoming change is not a conflict either
            env.edit(3, name="same")
            same = await env.run([row(3, "same", 3, 10)], ["u"])
            assert (same.echoes, same.conflicts) == (1, 0)
        finally:
            await env.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("strategy", ["local", "merge"])
def test_a_delete_compacted_into_an_insert_is_judged_as_one_at_a_time(
    target_where, tmp_path, strategy
):
    """Rows 2 and 3 deleted by hand at the target; the source then deletes both and inserts
    them again. Row 3's changes arrive one at a time (the delete is an echo of the target's
    absence, the insert a clean change); row 2's compacted into one insert. Both are applied,
    no conflict: compaction must not turn the same history into a conflict the target wins
    (two-way ``prefer: target`` then left the sides apart for good)."""
    kind, where = target_where

    async def scenario() -> None:
        env = await Env(kind, where, tmp_path / "state.db", strategy=strategy, audit=True).open()
        try:
            await env.run(SEED, ["r"] * 5)
            env.delete(2)
            env.delete(3)
            one = await env.run([row(3, "n3", 3, 10)], ["d"])
            assert (one.conflicts, one.echoes) == (0, 1)
            again = await env.run([row(3, "back", 30, 20), row(2, "back", 20, 20)], ["c", "c"])
            assert again.conflicts == 0, again.outcomes
            assert env.rows() == {1: ("n1", 1), 2: ("back", 20), 3: ("back", 30),
                                  4: ("n4", 4), 5: ("n5", 5)}  # fmt: skip
            # a row the target holds and the pipeline never wrote is still a conflict
            env.insert(row(8, "foreign", 0, 1))
            assert (await env.run([row(8, "ours", 8, 20)], ["c"])).conflicts == 1
        finally:
            await env.close()

    asyncio.run(scenario())
