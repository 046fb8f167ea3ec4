"""Writers and a target auditor for the per-table operation tests (issue 19)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from tests.e2e.harness import CLI


class Loop(threading.Thread):
    """Calls ``step`` until stopped; the first error is kept and re-raised by :meth:`finish`."""

    def __init__(self, step: Callable[[random.Random], None], pause: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.step = step
        self.pause = pause
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.count = 0

    def run(self) -> None:
        rng = random.Random(self.name)
        try:
            while not self.halt.is_set():
                self.step(rng)
                self.count += 1
                time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def finish(self) -> int:
        self.halt.set()
        self.join(30)
        if self.error is not None:
            raise self.error
        return self.count


class CounterAudit:
    """Reads ``{key: counter}`` from the target again and again and records every key whose
    counter ever went down between two reads (the re-snapshot must never move a row back)."""

    def __init__(self, read: Callable[[], dict[object, int]]) -> None:
        self.read = read
        self.last: dict[object, int] = {}
        self.backwards: list[tuple[object, int, int]] = []
        self.reads = 0
        self.loop = Loop(self._step, pause=0.02)

    def _step(self, rng: random.Random) -> None:
        now = self.read()
        for key, value in now.items():
            before = self.last.get(key)
            if before is not None and value < before:
                self.backwards.append((key, before, value))
        self.last.update(now)
        self.reads += 1

    def start(self) -> None:
        self.loop.start()

    def finish(self) -> None:
        self.loop.finish()


@dataclass
class MongoPair:
    """A source and a target database on one server, the source's collections filled with
    ``{_id, n: 0}`` documents, and the CLI of ``config`` (``SRC``/``TGT`` replaced)."""

    cli: CLI
    client: MongoClient
    src: Any
    tgt: Any
    target_db: str

    def converged(self, name: str) -> bool:
        return list(self.tgt[name].find().sort("_id")) == list(self.src[name].find().sort("_id"))

    def close(self) -> None:
        self.client.drop_database(self.target_db)
        self.client.close()


def mongo_pair(
    tmp_path: Path, config: str, uri: str, source_db: str, names: Sequence[str], rows: int
) -> MongoPair:
    target_db = f"{source_db}_t"
    cli = CLI(
        tmp_path, config.replace("SRC", source_db).replace("TGT", target_db), {"MONGO_URI": uri}
    )
    client: MongoClient = MongoClient(uri)
    src = client[source_db]
    for name in names:
        src[name].insert_many([{"_id": i, "n": 0} for i in range(1, rows + 1)])
    return MongoPair(cli, client, src, client[target_db], target_db)
