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

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

#: ``timestamp[us]`` infinities (Postgres's DT_NOEND / DT_NOBEGIN)
TS_INFINITY = 2**63 - 1
TS_MINUS_INFINITY = -(2**63)
#: ``date32`` infinities (Postgres's DATEVAL_NOEND / DATEVAL_NOBEGIN)
DATE_INFINITY = 2**31 - 1
DATE_MINUS_INFINITY = -(2**31)

_US_PER_DAY = 86_400_000_000
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
    parts = text.str.extract_groups(_PATTERN)
    frame = pl.DataFrame({"v": _series(values)}).with_columns(p=parts)
    f = pl.col("p").struct.field
    year = f("1").cast(pl.Int64)
    year = pl.when(f("9").is_not_null()).then(1 - year).otherwise(year)  # 1 BC = year 0
    days = _days_from_civil(year, f("2").cast(pl.Int64), f("3").cast(pl.Int64))
    is_date = pa.types.is_date32(target)
    if is_date:
        inf, minus_inf, dtype = DATE_INFINITY, DATE_MINUS_INFINITY, pl.Int32
        value = days
        fits = value.is_between(DATE_MINUS_INFINITY + 1, DATE_INFINITY - 1)
    else:
        inf, minus_inf, dtype = TS_INFINITY, TS_MINUS_INFINITY, pl.Int64
        fraction = f("7").str.pad_end(6, "0").cast(pl.Int64).fill_null(0)
        clock = (
            f("4").cast(pl.Int64).fill_null(0) * 3_600_000_000
            + f("5").cast(pl.Int64).fill_null(0) * 60_000_000
            + f("6").cast(pl.Int64).fill_null(0) * 1_000_000
            + fraction
        )
        # compared before multiplying, which would overflow; INT64_MAX itself is infinity
        limit = TS_INFINITY // _US_PER_DAY
        fits = days.is_between(-limit, limit - 1) | (
            (days == limit) & (clock < TS_INFINITY - limit * _US_PER_DAY)
        )
        value = pl.when(fits).then(days * _US_PER_DAY + clock)
    out = frame.select(
        ok=(text.is_null() | text.is_in(["infinity", "-infinity"]) | fits.fill_null(False)),
        v=pl.when(text == "infinity")
        .then(pl.lit(inf, pl.Int64))
        .when(text == "-infinity")
        .then(pl.lit(minus_inf, pl.Int64))
        .otherwise(value)
        .cast(dtype),
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


def _days_from_civil(year: pl.Expr, month: pl.Expr, day: pl.Expr) -> pl.Expr:
    """Days since 1970-01-01 of a proleptic Gregorian date (``//`` floors in Polars)."""
    y = year - (month <= 2).cast(pl.Int64)
    era = y // 400
    yoe = y - era * 400
    mp = pl.when(month > 2).then(month - 3).otherwise(month + 9)
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


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
    days = v if is_date else v // _US_PER_DAY
    year, month, day = _civil_from_days(days)
    bc = year <= 0
    shown_year = pl.when(bc).then(1 - year).otherwise(year)
    pieces = [
        shown_year.cast(pl.String).str.zfill(4),
        pl.lit("-"),
        month.cast(pl.String).str.zfill(2),
        pl.lit("-"),
        day.cast(pl.String).str.zfill(2),
    ]
    ordinary = year.is_between(1, 9999)
    if not is_date:
        clock = v - days * _US_PER_DAY
        micros = clock % 1_000_000
        fraction = pl.lit(".") + micros.cast(pl.String).str.zfill(6)
        if polars_json:  # chrono's "%.f": no digits, 3 or 6
            fraction = (
                pl.when(micros == 0)
                .then(pl.lit(""))
                .when(micros % 1000 == 0)
                .then(pl.lit(".") + (micros // 1000).cast(pl.String).str.zfill(3))
                .otherwise(fraction)
            )
        zoned_json = polars_json and bool(t.tz)
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
            zone = pl.when(ordinary).then(pl.lit("+00:00")) if zoned_json else None
            pieces.append(zone.otherwise(pl.lit("+00")) if zone is not None else pl.lit("+00"))
    pieces.append(pl.when(bc).then(pl.lit(" BC")).otherwise(pl.lit("")))
    frame = pl.DataFrame({"v": _series(raw)})
    out = frame.select(
        pl.when(v == inf)
        .then(pl.lit("infinity"))
        .when(v == minus_inf)
        .then(pl.lit("-infinity"))
        .otherwise(pl.concat_str(pieces))
    )
    return out.to_series().to_arrow().cast(pa.string())


def _civil_from_days(days: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = pl.when(mp < 10).then(mp + 3).otherwise(mp - 9)
    year = yoe + era * 400 + (month <= 2).cast(pl.Int64)
    return year, month, day
