"""Ending the transactions a killed run of this pipeline left open on the server.

A transaction whose client died (SIGKILL, a lost machine) stays open on the server until its
lifetime runs out (MongoDB's ``transactionLifetimeLimitSeconds``, 60 s by default) and keeps
every document it wrote: the restarted pipeline's next transaction that writes one of them
meets a write conflict, which the driver retries, for those 60 s. Measured on the test server:
60.05 s for one update after a SIGKILL, 0.003 s after ``killSessions``. Under writers on hot
keys every restart of a two-way direction met this, and the run then lagged a minute behind.

So the target records the id of every server session it runs a transaction on, once per
session and before that session's first transaction (one document per session in
:data:`SESSIONS`, in the target database). Before the first transaction of a run it kills the
sessions earlier runs recorded (``killSessions`` aborts their open transactions; an unknown or
expired session is no error) and forgets them. Only a run that applies does this, so
``status`` or ``verify`` next to a running daemon never touch its transactions. A run that
kills a live one's sessions (two daemons on one pipeline) only aborts that one's transaction,
which is retried and then refused by the fencing epoch or the lock, as without this.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import OperationFailure

log = logging.getLogger("syncengine.targets.mongo")

#: one document per recorded session: ``{_id: [pipeline, session id], p, lsid}``
SESSIONS = "_syncengine_sessions"


async def end_earlier(db: Any, pipeline: str) -> int:
    """Kill the sessions earlier runs of ``pipeline`` recorded in ``db``, then forget them;
    returns how many. A server that refuses ``killSessions`` (a user without the privilege, a
    hosted tier without the command) is logged and left to its transaction lifetime, as
    before this existed: the run goes on."""
    recorded = await db[SESSIONS].find({"p": pipeline}).to_list()
    if not recorded:
        return 0
    ended = len(recorded)
    try:
        await db.client.admin.command("killSessions", [doc["lsid"] for doc in recorded])
    except OperationFailure as exc:
        ended = 0
        log.warning(
            "%s: could not end the sessions of earlier runs (%s); a transaction a killed run "
            "left open holds its documents until the server ends it",
            pipeline, exc.details.get("errmsg") if exc.details else exc.code,
        )  # fmt: skip
    await db[SESSIONS].delete_many({"_id": {"$in": [doc["_id"] for doc in recorded]}})
    return ended


async def remember(db: Any, pipeline: str, session: AsyncClientSession) -> Any:
    """Record ``session``'s server session id for ``pipeline``; returns the id."""
    lsid = session.session_id
    key = [pipeline, lsid["id"]]
    await db[SESSIONS].replace_one({"_id": key}, {"p": pipeline, "lsid": lsid}, upsert=True)
    return lsid["id"]
