"""``validate`` for a fan-out pipeline: the NATS cluster answers and has JetStream.

The reader's pipeline is checked for its source, a target's pipeline for its target (the
other end of each is the stream), and both for the stream's NATS servers.
"""

from __future__ import annotations

from syncengine.config.models import PipelineConfig
from syncengine.errors import SyncEngineError, TargetUnavailable


async def check_nats(name: str, pipeline: PipelineConfig) -> list[str]:
    from syncengine.cluster.fanout import connect as nats_link

    fanout = pipeline.fanout
    assert fanout is not None
    client = None
    try:
        client, js = await nats_link.connect(
            fanout, f"syncengine {name} validate", TargetUnavailable
        )
        async with nats_link.translated(TargetUnavailable, "JetStream"):
            await js.account_info()
    except SyncEngineError as exc:
        return [f"{exc.message} (is JetStream enabled on the servers?)"]
    finally:
        await nats_link.close(client)
    return []
