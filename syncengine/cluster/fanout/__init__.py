"""Fan-out through NATS JetStream: one reader publishes a pipeline's changes to a stream
partitioned by key, each target consumes it at its own pace (docs/cluster.md, *Fan-out*).

An extra (``pip install 'syncengine[cluster]'``): only the modules of this package that talk
to NATS import ``nats`` (:mod:`.connect`, :mod:`.publisher`, :mod:`.consumer`), and only a
pipeline with a ``fanout:`` section loads them, so the embedded mode never does. The message
format (:mod:`.wire`), the partition hash (:mod:`.partition`) and the consumer's reassembly of
groups (:mod:`.assembler`) are pure and need no server.
"""

from __future__ import annotations
