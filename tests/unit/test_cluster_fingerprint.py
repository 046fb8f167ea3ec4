"""What makes ``apply`` see a pipeline as changed (and a worker refuse a config it was not
given): the fingerprint of the pipeline's config, without its passwords."""

from __future__ import annotations

import textwrap

from syncengine.cluster.streamrun import fingerprint
from syncengine.config import parse_config


def test_fingerprint_follows_the_config_but_not_its_passwords():
    def config(password: str, host: str = "h1", max_rows: int = 1000):
        text = textwrap.dedent(
            f"""
            pipelines:
              p:
                source: {{type: postgres, dsn: "postgresql://u:{password}@{host}/db",
                          tables: [public.counters]}}
                target: {{type: postgres, dsn: "postgresql://u:{password}@{host}/tgt"}}
                batch: {{max_rows: {max_rows}}}
            """
        )
        return parse_config(text, env={}).pipelines["p"]

    base = fingerprint(config("s3cret"))
    assert base == fingerprint(config("s3cret"))
    assert base == fingerprint(config("other"))  # secrets come from each worker's environment
    assert base != fingerprint(config("s3cret", host="h2"))
    assert base != fingerprint(config("s3cret", max_rows=10))
