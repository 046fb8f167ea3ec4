"""``syncengine verify CONFIG [--json]``: compare source and target; exit 1 on differences."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING

import click

from syncengine.cli.boundary import EXIT_FAILED, expected_errors
from syncengine.cli.common import config_argument, load_selected, pipeline_option
from syncengine.state import open_state

if TYPE_CHECKING:
    from syncengine.runtime.compare import TableDiff


@click.command()
@config_argument
@pipeline_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@expected_errors
def verify(config_path: str, pipeline: str | None, as_json: bool) -> None:
    """Compare source and target: counts, key-range hashes, field-level diff of mismatches."""
    from syncengine.runtime.verify import verify_named

    config, names = load_selected(config_path, pipeline)
    state = open_state(config.state)

    async def one(name: str) -> list[TableDiff]:
        return await verify_named(name, config.pipelines[name], state)

    report = {name: asyncio.run(one(name)) for name in names}
    failed = any(not d.ok for diffs in report.values() for d in diffs)
    if as_json:
        payload = {name: [d.as_dict() for d in diffs] for name, diffs in report.items()}
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        for name, diffs in report.items():
            for diff in diffs:
                _print(name, diff)
    sys.exit(EXIT_FAILED if failed else 0)


def _print(pipeline: str, diff: TableDiff) -> None:
    head = f"{pipeline}/{diff.table}: source {diff.source_rows} rows, target {diff.target_rows}"
    if diff.ok:
        click.echo(f"{head}: identical")
        return
    click.echo(f"{head}: DIFFERENT ({diff.buckets_differing}/{diff.buckets_checked} key ranges)")
    for key in diff.missing:
        click.echo(f"  missing in target: {key}")
    for key in diff.extra:
        click.echo(f"  extra in target:   {key}")
    for item in diff.different:
        if item.get("more"):
            click.echo(f"  … and {item['more']} more differing rows")
            continue
        for name, sides in item["fields"].items():
            click.echo(
                f"  {item['key']}.{name}: source {sides['source']!r} != target {sides['target']!r}"
            )
