"""Postgres dates and timestamps beyond the ordinary range: infinities and BC, both ways.

Postgres stores ``'infinity'`` and ``'-infinity'`` as the extreme values of its integer
representation (``INT64_MAX`` / ``INT64_MIN`` microseconds, ``INT32_MAX`` / ``INT32_MIN`` days).
The Arrow columns do the same: a ``timestamp[us]`` holding ``INT64_MAX`` *is* infinity, a
``date32`` holding ``INT32_MAX`` likewise. The column keeps its native type whatever it holds
(no schema flip between batches), infinities still sort after / before every date, and no
legal value collides with them (Postgres dates end in 5874897 AD, long before ``INT32_MAX``
days; timestamps from 294247-01-10 04:00:54.775807 AD on, the last 30 years of Postgres's range,
have no ``timestamp[us]`` form at all and are reported as such by :func:`parse`).

BC dates are ordinary negative day / microsecond counts (Arrow, like Postgres, counts in the
proleptic Gregorian calendar; 1 BC is astronomical year 0).

Arrow's and chrono's formatters stop at year 9999 / 262143 and Python's ``datetime`` at 9999,
so the conversions here are integer arithmetic on Polars columns (Howard Hinnant's civil-date
algorithms), vectorized and exact over the whole range. They run only on columns that need
them: the ordinary case keeps Arrow's fast casts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

#: ``timestamp[us]`` infinities (Postgres's DT_NOEND / DT_NOBEGIN)
TS_INFINITY = 2**63 - 1
TS_MINUS_INFINITY = -(2**63)
#: ``date32`` infinities (Postgres's DATEVAL_NOEND / DATEVAL_NOBEGIN)
DATE_INFINITY = 2**31 - 1
DATE_MINUS_INFINITY = -(2**31)

_US_PER_DAY = 86_400_000_000
#: Python datetimes: 0001-01-01 … 9999-12-31 23:59:59.999999, in microseconds since 1970: the
#: values a Mongo target writes as BSON dates (the others as their Postgres text, every
#: microsecond of it: codecs/arrow_bson.py)
PY_MIN_US, PY_MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999
#: the ordinary range Arrow's and Python's own conversions handle: years 1 to 9999
_ORDINARY_DAYS = (-719_162, 2_932_896)

_PATTERN = (
    r"^(\d{4,})-(\d\d)-(\d\d)"  # year (4+ digits), month, day
    r"(?:[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"  # time of day, fraction
    r"(\+00(?::00)?)?"  # the UTC offset (sessions run with TimeZone=UTC)
    r"( BC)?$"
)


def _series(values: pa.Array) -> pl.Series:
    series = pl.from_arrow(values)
    assert isinstance(series, pl.Series)
    return series


def parse(values: pa.Array, target: pa.DataType, strict: bool = True) -> pa.Array | None:
    """Postgres ISO text (``DateStyle=ISO``) → ``date32`` / ``timestamp[us(, UTC)]``, with
    infinities and BC dates; None when a value has no form in ``target`` (malformed, or a
    timestamp past 294247 AD), or with ``strict=False`` null in its place."""
    text = pl.col("v")
    f = pl.col("p").struct.field

    def number(i: int) -> pl.Expr:
        return f(str(i)).cast(pl.Int64)

    frame = (
        pl.DataFrame({"v": _series(values)})
        .lazy()
        .with_columns(p=text.str.extract_groups(_PATTERN))
        .with_columns(  # 1 BC is year 0
            year=pl.when(f("9").is_not_null()).then(1 - number(1)).otherwise(number(1)),
            month=number(2),
            day=number(3),
            clock=(
                number(4).fill_null(0) * 3_600_000_000
                + number(5).fill_null(0) * 60_000_000
                + number(6).fill_null(0) * 1_000_000
                + f("7").str.pad_end(6, "0").cast(pl.Int64).fill_null(0)
            ),
        )
    )
    frame = _days_from_civil(frame)
    days, clock = pl.col("days"), pl.col("clock")
    if pa.types.is_date32(target):
        inf, minus_inf = DATE_INFINITY, DATE_MINUS_INFINITY
        dtype: pl.DataType = pl.Int32()
        fits = days.is_between(DATE_MINUS_INFINITY + 1, DATE_INFINITY - 1)
        value = days
    else:
        inf, minus_inf, dtype = TS_INFINITY, TS_MINUS_INFINITY, pl.Int64()
        # compared before multiplying, which would overflow; INT64_MAX itself is infinity
        limit = TS_INFINITY // _US_PER_DAY
        fits = days.is_between(-limit, limit - 1) | (
            (days == limit) & (clock < TS_INFINITY - limit * _US_PER_DAY)
        )
        value = pl.when(pl.col("fits")).then(days * _US_PER_DAY + clock)
    out = (
        frame.with_columns(fits=fits.fill_null(False))
        .select(
            ok=text.is_null() | text.is_in(["infinity", "-infinity"]) | pl.col("fits"),
            v=pl.when(text == "infinity")
            .then(pl.lit(inf, pl.Int64))
            .when(text == "-infinity")
            .then(pl.lit(minus_inf, pl.Int64))
            .otherwise(value)
            .cast(dtype),
        )
        .collect()
    )
    if strict and not out["ok"].all():
        return None
    return out["v"].to_arrow().cast(target)


def from_text(values: pa.Array, target: pa.DataType, strict: bool = True) -> pa.Array:
    """Postgres text → ``target``: Arrow's cast when it can, else :func:`parse`; raises
    ValueError for a value with no ``target`` form (``strict=False``: null instead)."""
    try:
        return values.cast(target)
    except pa.ArrowInvalid:
        parsed = parse(values, target, strict)
    if parsed is None:
        raise ValueError(f"a value beyond {target}'s range")
    return parsed


def _days_from_civil(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Adds ``days`` (since 1970-01-01) of the proleptic Gregorian ``year``, ``month``,
    ``day`` columns, one step per column (``//`` floors in Polars)."""
    month = pl.col("month")
    return (
        frame.with_columns(y=pl.col("year") - (month <= 2).cast(pl.Int64))
        .with_columns(era=pl.col("y") // 400)
        .with_columns(
            yoe=pl.col("y") - pl.col("era") * 400,
            doy=(153 * pl.when(month > 2).then(month - 3).otherwise(month + 9) + 2) // 5
            + pl.col("day")
            - 1,
        )
        .with_columns(
            days=pl.col("era") * 146_097
            + pl.col("yoe") * 365
            + pl.col("yoe") // 4
            - pl.col("yoe") // 100
            + pl.col("doy")
            - 719_468
        )
    )


def is_ordinary(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether every value of a date or timestamp column lies in years 1 to 9999 (no
    infinity, no BC): what Arrow's, Python's and Postgres's plain forms all handle."""
    t = values.type
    if values.null_count == len(values):
        return True
    bounds = pc.min_max(values)
    lo, hi = bounds["min"].value, bounds["max"].value
    if pa.types.is_date(t):
        lo_days, hi_days = pc.cast(lo, pa.int32()), pc.cast(hi, pa.int32())
        low, high = lo_days.as_py(), hi_days.as_py()
    else:
        scale = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[t.unit] * 86_400
        low = pc.cast(lo, pa.int64()).as_py() // scale
        high = pc.cast(hi, pa.int64()).as_py() // scale
    return bool(_ORDINARY_DAYS[0] <= low and high <= _ORDINARY_DAYS[1])


def to_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A date or timestamp column as Postgres input text: ``infinity``, ``-infinity``,
    ``4713-01-01 BC``, ``294000-01-01 00:00:00+00`` (zoned: the UTC instant with ``+00``)."""
    return _format(values, polars_json=False)


def json_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The text Polars' ``json_encode`` gives a date or ``timestamp[us]`` value in years 1 to
    9999 (``2024-01-02 03:04:05.120``, zoned ``2024-01-02T03:04:05.120+00:00``), and the
    Postgres text of the others, which Polars cannot format. So a value encodes alike whatever
    else its column holds (conflict hashes compare values encoded in different batches)."""
    return _format(values, polars_json=True)


def _format(values: pa.Array | pa.ChunkedArray, polars_json: bool) -> pa.Array:
    t = values.type
    is_date = pa.types.is_date(t)
    if is_date:
        raw = values.cast(pa.int32()).cast(pa.int64())
        inf, minus_inf = DATE_INFINITY, DATE_MINUS_INFINITY
    else:
        unit_us = {"s": 10**6, "ms": 10**3, "us": 1}.get(t.unit)
        raw = values.cast(pa.int64())
        if unit_us is None:  # ns: never infinite here; truncate to microseconds
            raw = pc.divide(raw, 1000)
            unit_us = 1
        elif unit_us != 1:
            raw = pc.multiply(raw, unit_us)
        inf, minus_inf = TS_INFINITY, TS_MINUS_INFINITY
    v = pl.col("v")
    col = pl.col
    frame = _civil_from_days(
        pl.DataFrame({"v": _series(raw)})
        .lazy()
        .with_columns(days=v if is_date else v // _US_PER_DAY)
    ).with_columns(bc=col("year") <= 0, ordinary=col("year").is_between(1, 9999))
    shown_year = pl.when(col("bc")).then(1 - col("year")).otherwise(col("year"))
    pieces = [
        shown_year.cast(pl.String).str.zfill(4),
        pl.lit("-"),
        col("month").cast(pl.String).str.zfill(2),
        pl.lit("-"),
        col("day").cast(pl.String).str.zfill(2),
    ]
    if not is_date:
        frame = frame.with_columns(clock=v - col("days") * _US_PER_DAY).with_columns(
            micros=col("clock") % 1_000_000
        )
        clock, micros = col("clock"), col("micros")
        # Postgres prints the fraction without trailing zeros, and none for whole seconds
        digits = micros.cast(pl.String).str.zfill(6).str.strip_chars_end("0")
        fraction = pl.when(micros == 0).then(pl.lit("")).otherwise(pl.lit(".") + digits)
        if polars_json:  # chrono's "%.f": no digits, 3 or 6
            fraction = (
                pl.when(micros == 0)
                .then(pl.lit(""))
                .when(micros % 1000 == 0)
                .then(pl.lit(".") + (micros // 1000).cast(pl.String).str.zfill(3))
                .otherwise(pl.lit(".") + micros.cast(pl.String).str.zfill(6))
            )
        zoned_json = polars_json and bool(t.tz)
        ordinary = col("ordinary")
        pieces += [
            pl.when(ordinary).then(pl.lit("T" if zoned_json else " ")).otherwise(pl.lit(" ")),
            (clock // 3_600_000_000).cast(pl.String).str.zfill(2),
            pl.lit(":"),
            (clock // 60_000_000 % 60).cast(pl.String).str.zfill(2),
            pl.lit(":"),
            (clock // 1_000_000 % 60).cast(pl.String).str.zfill(2),
            fraction,
        ]
        if t.tz:
            zone = pl.lit("+00")
            if zoned_json:
                zone = pl.when(ordinary).then(pl.lit("+00:00")).otherwise(zone)
            pieces.append(zone)
    pieces.append(pl.when(col("bc")).then(pl.lit(" BC")).otherwise(pl.lit("")))
    out = frame.select(
        pl.when(v == inf)
        .then(pl.lit("infinity"))
        .when(v == minus_inf)
        .then(pl.lit("-infinity"))
        .otherwise(pl.concat_str(pieces))
    ).collect()
    return out.to_series().to_arrow().cast(pa.string())


def _civil_from_days(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Adds ``year``, ``month``, ``day`` of the ``days`` column (proleptic Gregorian), one
    step per column."""
    col = pl.col
    return (
        frame.with_columns(z=col("days") + 719_468)
        .with_columns(era=col("z") // 146_097)
        .with_columns(doe=col("z") - col("era") * 146_097)
        .with_columns(
            yoe=(col("doe") - col("doe") // 1460 + col("doe") // 36_524 - col("doe") // 146_096)
            // 365
        )
        .with_columns(doy=col("doe") - (365 * col("yoe") + col("yoe") // 4 - col("yoe") // 100))
        .with_columns(mp=(5 * col("doy") + 2) // 153)
        .with_columns(
            day=col("doy") - (153 * col("mp") + 2) // 5 + 1,
            month=pl.when(col("mp") < 10).then(col("mp") + 3).otherwise(col("mp") - 9),
        )
        .with_columns(year=col("yoe") + col("era") * 400 + (col("month") <= 2).cast(pl.Int64))
    )
