"""Dates and times: TIMESTAMP, TIMESTAMPTZ, DATE, TIME.

Rules: an aware value is converted to UTC; a naive value bound for a zoned column
(timestamptz, MySQL TIMESTAMP) is taken to be UTC. A fractional second the column cannot
hold is refused, never rounded or truncated (MariaDB would drop it without a warning).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from bridge.schema import ColumnInfo, Family
from bridge.types.base import Converter, Normalizer, refuse, wrong_type

_UTC = timezone.utc
_FSP_DIV = (1_000_000, 100_000, 10_000, 1_000, 100, 10, 1)

_DATETIME_MIN = datetime(1000, 1, 1)  # MySQL DATETIME; the top (9999) is Python's own
_DATE_MIN = date(1000, 1, 1)
_TIMESTAMP_MIN = datetime(1970, 1, 1, 0, 0, 1)  # 1970-01-01 00:00:00 is the zero value
_TIMESTAMP_MAX = datetime(2038, 1, 19, 3, 14, 7, 999999)
_DAY = timedelta(days=1)
# MySQL: -838:59:59.000000..838:59:59.000000 (MariaDB allows .999999; take the narrower).
_TIME_MAX = timedelta(hours=838, minutes=59, seconds=59)


def _name(col: ColumnInfo, to_mes: bool) -> str:
    family = col.family
    if family is Family.TIMESTAMP:
        base = "DATETIME" if to_mes else "timestamp"
    elif family is Family.TIMESTAMPTZ:
        base = "TIMESTAMP" if to_mes else "timestamptz"
    elif family is Family.TIME:
        base = "TIME" if to_mes else "time"
    else:
        return "DATE" if to_mes else "date"
    return f"{base}({col.fsp})"


def _check_fsp(us: int, col: ColumnInfo, to_mes: bool) -> None:
    fsp = col.fsp
    if fsp < 6 and us % _FSP_DIV[max(fsp, 0)]:
        verb = "dropped by" if to_mes else "rounded by"
        raise refuse(col, f"microseconds .{us:06d} would be {verb} {_name(col, to_mes)}")


def _utc_naive(value: datetime, col: ColumnInfo) -> datetime:
    offset = value.utcoffset()
    naive = datetime.combine(value.date(), value.time())  # = replace(tzinfo=None), 5x faster
    if not offset:
        return naive
    try:
        return naive - offset
    except OverflowError:
        raise refuse(col, f"timestamp {value} has no UTC equivalent within years 1..9999") from None


def _as_datetime(value: Any, col: ColumnInfo, to_mes: bool) -> datetime:
    """A naive datetime (UTC if the value was aware) from a datetime or a date."""
    if isinstance(value, datetime):
        return _utc_naive(value, col) if value.tzinfo is not None else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise wrong_type(col, value, _name(col, to_mes))


def to_timestamp(value: Any, col: ColumnInfo, to_mes: bool) -> datetime:
    """timestamp / DATETIME(fsp): a naive datetime; aware values become UTC wall time."""
    if type(value) is not datetime or value.tzinfo is not None:
        value = _as_datetime(value, col, to_mes)
    us = value.microsecond
    if us:
        _check_fsp(us, col, to_mes)
    if to_mes and value < _DATETIME_MIN:
        raise refuse(
            col,
            f"timestamp {value} outside MySQL DATETIME range "
            "1000-01-01 00:00:00..9999-12-31 23:59:59.999999",
        )
    return value


def to_timestamptz(value: Any, col: ColumnInfo, to_mes: bool) -> datetime:
    """timestamptz: an aware UTC datetime. MySQL TIMESTAMP: a naive UTC datetime (the
    applier's session runs with time_zone '+00:00'). Naive input is taken to be UTC."""
    if type(value) is not datetime or value.tzinfo is not None:
        value = _as_datetime(value, col, to_mes)
    us = value.microsecond
    if us:
        _check_fsp(us, col, to_mes)
    if to_mes:
        if value < _TIMESTAMP_MIN or value > _TIMESTAMP_MAX:
            raise refuse(
                col,
                f"timestamp {value} UTC outside MySQL TIMESTAMP range "
                "1970-01-01 00:00:01..2038-01-19 03:14:07.999999 UTC",
            )
        return value
    return value.replace(tzinfo=_UTC)


def to_date(value: Any, col: ColumnInfo, to_mes: bool) -> date:
    if type(value) is not date:
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = _utc_naive(value, col)
            if value.hour or value.minute or value.second or value.microsecond:
                raise refuse(col, f"timestamp {value} has a time of day that a date would drop")
            value = value.date()
        elif isinstance(value, date):
            value = date(value.year, value.month, value.day)
        else:
            raise wrong_type(col, value, _name(col, to_mes))
    if to_mes and value < _DATE_MIN:
        raise refuse(col, f"date {value} outside MySQL DATE range 1000-01-01..9999-12-31")
    return value


def format_duration(td: timedelta) -> str:
    """A timedelta the way MySQL prints TIME: '-838:59:59', '25:00:00.5'."""
    sign = "-" if td < timedelta(0) else ""
    td = abs(td)
    seconds = td.days * 86400 + td.seconds
    text = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return text + (f".{td.microseconds:06d}" if td.microseconds else "")


def _time_to_timedelta(value: time, col: ColumnInfo) -> timedelta:
    if value.tzinfo is not None and value.utcoffset():
        raise refuse(col, f"time {value} has a UTC offset that a time without time zone would drop")
    return timedelta(
        hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
    )


def to_time(value: Any, col: ColumnInfo, to_mes: bool) -> time | timedelta:
    """PostgreSQL time: datetime.time in [00:00, 24:00). MySQL TIME: a timedelta within
    +-838:59:59 (also what the MySQL readers produce)."""
    t = type(value)
    if not to_mes:
        if t is time and value.tzinfo is None:
            if value.microsecond:
                _check_fsp(value.microsecond, col, to_mes)
            return value
        if isinstance(value, time):
            value = _time_to_timedelta(value, col)
        elif not isinstance(value, timedelta):
            raise wrong_type(col, value, _name(col, to_mes))
        if value < timedelta(0) or value >= _DAY:
            raise refuse(
                col,
                f"duration {format_duration(value)} outside PostgreSQL time range "
                "00:00:00..23:59:59.999999",
            )
        seconds, us = value.seconds, value.microseconds
        if us:
            _check_fsp(us, col, to_mes)
        return time(seconds // 3600, seconds // 60 % 60, seconds % 60, us)
    if t is not timedelta:
        if isinstance(value, time):
            value = _time_to_timedelta(value, col)
        elif isinstance(value, timedelta):
            value = timedelta(value.days, value.seconds, value.microseconds)
        else:
            raise wrong_type(col, value, _name(col, to_mes))
    if value > _TIME_MAX or value < -_TIME_MAX:
        raise refuse(
            col, f"duration {format_duration(value)} outside MySQL TIME range -838:59:59..838:59:59"
        )
    us = value.microseconds if value.days >= 0 else (-value).microseconds
    if us:
        _check_fsp(us, col, to_mes)
    return value


# --- normal forms ------------------------------------------------------------------------


def normal_datetime(value: Any, col: ColumnInfo | None = None) -> Any:
    """Naive UTC; a date in a timestamp column becomes its midnight."""
    if type(value) is datetime:
        if value.tzinfo is None:
            return value
        offset = value.utcoffset()
        return value.replace(tzinfo=None) - offset if offset else value.replace(tzinfo=None)
    if isinstance(value, datetime):
        return normal_datetime(datetime.fromisoformat(value.isoformat()))
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return value


def _normal_date(value: Any, col: ColumnInfo) -> Any:
    if type(value) is date:
        return value
    if isinstance(value, datetime):
        value = normal_datetime(value)
        if value.time() == time(0):
            return value.date()
        return value
    if isinstance(value, date):
        return date(value.year, value.month, value.day)
    return value


def normal_time(value: Any, col: ColumnInfo | None = None) -> Any:
    """Both PostgreSQL time and MySQL TIME compare as a timedelta."""
    if type(value) is timedelta:
        return value
    if isinstance(value, time):
        offset = value.utcoffset() if value.tzinfo is not None else None
        td = timedelta(
            hours=value.hour,
            minutes=value.minute,
            seconds=value.second,
            microseconds=value.microsecond,
        )
        return td - offset if offset else td
    if isinstance(value, timedelta):
        return timedelta(value.days, value.seconds, value.microseconds)
    return value


TO_TARGET: dict[Family, Converter] = {
    Family.TIMESTAMP: to_timestamp,
    Family.TIMESTAMPTZ: to_timestamptz,
    Family.DATE: to_date,
    Family.TIME: to_time,
}

NORMALIZE: dict[Family, Normalizer] = {
    Family.TIMESTAMP: normal_datetime,
    Family.TIMESTAMPTZ: normal_datetime,
    Family.DATE: _normal_date,
    Family.TIME: normal_time,
}
