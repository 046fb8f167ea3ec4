"""Property: however transactions and flushes interleave, rows come out complete and in order,
batches respect max_rows, and a resume is never handed out before its transaction's last row."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.changes import pos_to_lsn
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler
from tests.unit.pgsource import pgsource_frames as f

COLS = [("id", 23, -1, True), ("v", 25, -1, False)]

# a transaction: rows per table (table 1 or 2); between messages a flush may happen
transactions = st.lists(
    st.lists(st.tuples(st.sampled_from([1, 2]), st.booleans()), min_size=0, max_size=12),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(transactions, st.integers(1, 5))
def test_rows_complete_ordered_and_resumes_at_boundaries(txns, max_rows):
    asm = ChangeAssembler(max_rows=max_rows, idle_table="public.t1")
    out = []
    out += asm.feed(po.decode(f.relation(1, "public", "t1", COLS)))
    out += asm.feed(po.decode(f.relation(2, "public", "t2", COLS)))
    lsn, row_id, ends, emitted_ids = 0x1000, 0, [], []
    txn_last_row = {}
    for rows in txns:
        final = lsn + 0x100
        out += asm.feed(po.decode(f.begin(final, 0, 1)))
        for table, flush in rows:
            row_id += 1
            out += asm.feed(po.decode(f.insert(table, [row_id, "x"])))
            if flush:
                out += asm.flush()
        out += asm.feed(po.decode(f.commit(final, final + 0x10, 0)))
        ends.append(final + 0x10)
        txn_last_row[final + 0x10] = row_id
        lsn = final + 0x10
    out += asm.flush(idle=True)
    seen_max = 0
    resumes = []
    for batch in out:
        assert batch.num_rows <= max_rows
        ids = batch.data.column("id").to_pylist() if batch.num_rows else []
        emitted_ids.extend(ids)
        seen_max = max([seen_max, *ids])
        resume = batch.meta.get("resume")
        if resume is not None:
            end = pos_to_lsn(resume)
            resumes.append(end)
            # every row of every transaction up to this commit was emitted already
            assert set(range(1, txn_last_row[end] + 1)) <= set(emitted_ids)
    assert sorted(emitted_ids) == list(range(1, row_id + 1))
    for table in (1, 2):  # per table, rows keep their order
        per_table = [
            i
            for b in out
            if b.num_rows and b.table == f"public.t{table}"
            for i in b.data.column("id").to_pylist()
        ]
        assert per_table == sorted(per_table)
    assert resumes == sorted(resumes) and resumes[-1] == ends[-1]
