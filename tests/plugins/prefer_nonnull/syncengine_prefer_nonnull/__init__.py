"""An example third-party conflict strategy: ``prefer_nonnull``.

Per field, the source's (remote) value unless it is null, then the target's (local) value. A
row deleted on either side keeps the other side's row. Vectorized: one Polars expression per
column, no loop over rows. Registered through the ``syncengine.strategies`` entry point in this
package's pyproject.toml, then usable as ``conflicts: {strategy: prefer_nonnull}``.
"""

from __future__ import annotations

import polars as pl
from syncengine.strategies import EXISTS, Decision, StrategyContext


class PreferNonNull:
    name = "prefer_nonnull"

    def decide(
        self, base: pl.DataFrame, local: pl.DataFrame, remote: pl.DataFrame, ctx: StrategyContext
    ) -> Decision:
        both = local[EXISTS] & remote[EXISTS]
        rows = pl.DataFrame(
            [
                pl.select(
                    pl.when(both)
                    .then(pl.coalesce(remote[c], local[c]))
                    .when(remote[EXISTS])
                    .then(remote[c])
                    .otherwise(local[c])
                )
                .to_series()
                .alias(c)
                for c in ctx.columns
            ]
        ).with_columns((local[EXISTS] | remote[EXISTS]).alias(EXISTS))
        park = pl.repeat(False, rows.height, eager=True)
        outcome = pl.repeat("prefer_nonnull", rows.height, dtype=pl.String, eager=True)
        return Decision(rows, park, outcome)
