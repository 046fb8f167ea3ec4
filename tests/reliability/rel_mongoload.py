"""A steady, mixed write load on a Mongo source collection, in a background thread.

``acct`` documents carry a ``counter`` that ``$inc`` raises by one on every update (keys are
never reused), so a per-key audit finds a lost or replayed change. The mix: inserts, partial
updates (``$set``/``$inc``: the change stream sends only the changed fields), ~1 MB string
values, deletes, and multi-document transactions over ``acct`` and ``ledger``.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections import Counter

from pymongo import MongoClient
from pymongo.errors import AutoReconnect, ConnectionFailure, DuplicateKeyError

BIG_BYTES = 1 << 20


def seed(uri: str, db: str, docs: int) -> None:
    with MongoClient(uri) as client:
        client[db].acct.insert_many(
            [{"_id": i, "counter": 0, "note": f"seed {i}", "big": ""} for i in range(1, docs + 1)]
        )
        client[db].ledger.insert_many(
            [{"_id": i, "acct": i, "counter": 0, "amount": i / 100} for i in range(1, docs // 10)]
        )


def mongo_rows(uri: str, db: str, collection: str) -> dict[object, tuple]:
    """_id → (counter, note, md5(big)) — the same shape as the Postgres side's audit query."""
    with MongoClient(uri) as client:
        return {
            d["_id"]: (
                d.get("counter"),
                d.get("note"),
                hashlib.md5(d["big"].encode()).hexdigest() if d.get("big") is not None else None,
            )
            for d in client[db][collection].find({})
        }


class MongoLoad(threading.Thread):
    def __init__(self, uri: str, db: str, first_id: int, seed: int = 1, pause: float = 0.004):
        super().__init__(daemon=True, name="mongo-load")
        self.uri, self.db = uri, db
        self.next_id = first_id
        self.rng = random.Random(seed)
        self.pause = pause
        self.ops: Counter[str] = Counter()
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self.live: list[int] = []
        self.reconnects = 0

    def stop(self) -> None:
        self._halt.set()
        self.join(60)
        if self.error:
            raise AssertionError(f"load generator failed: {self.error!r}")

    def run(self) -> None:
        """Keeps writing through server restarts (the client reconnects), until stopped."""
        try:
            with MongoClient(self.uri, serverSelectionTimeoutMS=60_000) as client:
                db = client[self.db]
                self.live = [d["_id"] for d in db.acct.find({}, {"_id": 1})]
                while not self._halt.is_set():
                    try:
                        self._one(client, db)
                    except (AutoReconnect, ConnectionFailure):
                        self.reconnects += 1
                        time.sleep(0.3)
                    except DuplicateKeyError:
                        # the driver retried a write across a server restart and the first
                        # attempt had committed (the load never reuses a key): already done
                        self.reconnects += 1
                    time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def _pick(self) -> int:
        return self.rng.choice(self.live)

    def _one(self, client: MongoClient, db: object) -> None:
        roll = self.rng.random()
        if roll < 0.25 or len(self.live) < 50:
            new = self.next_id
            self.next_id += 1
            db.acct.insert_one({"_id": new, "counter": 0, "note": f"n{new}", "big": ""})
            self.live.append(new)
            kind = "insert"
        elif roll < 0.62:
            db.acct.update_one(
                {"_id": self._pick()},
                {"$inc": {"counter": 1}, "$set": {"note": f"u{self.rng.random():.6f}"}},
            )
            kind = "update"
        elif roll < 0.64:
            db.acct.update_one(
                {"_id": self._pick()},
                {"$inc": {"counter": 1}, "$set": {"big": os.urandom(BIG_BYTES // 2).hex()}},
            )
            kind = "big_write"
        elif roll < 0.74:
            victim = self.live.pop(self.rng.randrange(len(self.live)))
            db.acct.delete_one({"_id": victim})
            kind = "delete"
        else:
            a, b = self._pick(), self._pick()
            new = self.next_id
            self.next_id += 1

            def txn(session: object) -> None:
                db.acct.update_many(
                    {"_id": {"$in": [a, b]}}, {"$inc": {"counter": 1}}, session=session
                )
                db.ledger.insert_one(
                    {"_id": new, "acct": a, "counter": 0, "amount": self.rng.randint(1, 9999)},
                    session=session,
                )

            with client.start_session() as session:
                session.with_transaction(txn)
            kind = "transaction"
        self.ops[kind] += 1
