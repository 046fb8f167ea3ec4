"""Property: a resume position never travels with rows it does not cover (F16).

The runtime commits a batch's rows and the checkpoint it carries in one target transaction, and
after a crash streams again from that checkpoint. So every row emitted up to and including the
batch that carries a resume must belong to a transaction that ends at or before it, however
flushes ("timer" cuts, ``max_rows`` cuts) and schema changes land inside transactions.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.changes import pos_to_lsn
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler
from tests.unit.pgsource import pgsource_frames as f

NARROW = [("id", 23, -1, True), ("v", 25, -1, False)]
WIDE = [*NARROW, ("w", 25, -1, False)]

# per transaction, a list of steps: ("row", table) | ("flush", idle) | ("schema", table)
step = st.one_of(
    st.tuples(st.just("row"), st.sampled_from([1, 2])),
    st.tuples(st.just("flush"), st.booleans()),
    st.tuples(st.just("schema"), st.sampled_from([1, 2])),
)
transactions = st.lists(st.lists(step, max_size=10), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(transactions, st.integers(1, 4), st.lists(st.booleans(), max_size=8))
def test_resume_covers_every_row_emitted_before_it(txns, max_rows, flush_between):
    asm = ChangeAssembler(max_rows=max_rows, idle_table="public.t1")
    wide = {1: False, 2: False}
    out = [
        b
        for oid in (1, 2)
        for b in asm.feed(po.decode(f.relation(oid, "public", f"t{oid}", NARROW)))
    ]
    lsn, row_id = 0x1000, 0
    txn_end: dict[int, int] = {}  # row id -> end LSN of its transaction
    for n, steps in enumerate(txns):
        final = lsn + 0x100
        out += asm.feed(po.decode(f.begin(final, 0, n + 1)))
        ids = []
        for kind, arg in steps:
            if kind == "row":
                row_id += 1
                ids.append(row_id)
                values = [row_id, "x"] + (["y"] if wide[arg] else [])
                out += asm.feed(po.decode(f.insert(arg, values)))
            elif kind == "flush":
                out += asm.flush(idle=arg)
            else:
                wide[arg] = not wide[arg]
                columns = WIDE if wide[arg] else NARROW
                out += asm.feed(po.decode(f.relation(arg, "public", f"t{arg}", columns)))
        out += asm.feed(po.decode(f.commit(final, final + 0x10, 0)))
        for i in ids:
            txn_end[i] = final + 0x10
        lsn = final + 0x10
        if n < len(flush_between) and flush_between[n]:
            out += asm.flush(idle=True)
    out += asm.flush(idle=True)

    emitted: list[int] = []
    resumes = []
    for batch in out:
        emitted.extend(batch.data.column("id").to_pylist() if batch.num_rows else [])
        resume = batch.meta.get("resume")
        if resume is not None:
            end = pos_to_lsn(resume)
            resumes.append(end)
            beyond = [i for i in emitted if txn_end[i] > end]
            assert not beyond, f"rows {beyond} emitted before resume {end:#x} they are not under"
            covered = [i for i, e in txn_end.items() if e <= end]
            assert set(covered) <= set(emitted), "a resume before its transaction's rows"
    assert sorted(emitted) == list(range(1, row_id + 1))
    assert resumes == sorted(resumes) and resumes[-1] == lsn
