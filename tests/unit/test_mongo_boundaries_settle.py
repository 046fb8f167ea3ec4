"""An open transaction ends when the stream has nothing more to send (its events are all
delivered together after its commit): ``settle`` makes its last event the resume point."""

from syncengine.sources.mongo.events import Boundaries


def test_settle_closes_the_open_transaction_only():
    b = Boundaries("0001")
    b.see(None, "0002")
    assert not b.settle() and b.last == "0002"  # nothing open: nothing moves
    b.see(("s", None, 7), "0003")
    b.see(("s", None, 7), "0004")
    assert b.open and b.last == "0002"
    assert b.settle() and b.last == "0004" and not b.open
