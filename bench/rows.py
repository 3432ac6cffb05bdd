"""Seeded row generators: the same seed gives the same rows on every run and machine.

Rows are tuples in the table's column order, in CRM (PostgreSQL) form: aware UTC datetimes,
`bool`, JSON as compact text. `for_mes` turns one into MariaDB parameters (naive UTC
datetimes, 0/1 booleans); `for_pg` is the identity (psycopg adapts every value, and JSON text
goes into jsonb as is).
"""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterator

from bench.schema import NARROW, STATUSES, WIDE, Table

_BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)
_DAY0 = date(2024, 1, 1)
_ALPHABET = "abcdefghijklmnopqrstuvwxyz      ABCDEFGHIJ0123456789.,-"
_TEXT = "".join(random.Random(7).choice(_ALPHABET) for _ in range(4096))
_TAGS = ("red", "blue", "rush", "export", "fragile", "bulk", "sample", "rework")


def _text(rng: random.Random, lo: int, hi: int) -> str:
    n = rng.randint(lo, hi)
    at = rng.randrange(len(_TEXT) - n)
    return _TEXT[at:at + n]


def _ts(rng: random.Random) -> datetime:
    return _BASE + timedelta(microseconds=rng.randrange(300 * 86_400 * 10**6))


def narrow_row(rng: random.Random, id_: int) -> tuple:
    return (id_, rng.randrange(1, 1_000_000), _text(rng, 5, 30), _ts(rng))


def wide_row(rng: random.Random, id_: int) -> tuple:
    created = _ts(rng)
    payload = {
        "sku": f"SKU-{rng.randrange(10**6):06d}",
        "tags": rng.sample(_TAGS, rng.randint(1, 3)),
        "dims": {"w": rng.randrange(1, 500), "h": rng.randrange(1, 500), "unit": "mm"},
        "lot": rng.randrange(10**9),
        "inspected": rng.random() < 0.5,
    }
    return (
        id_,
        rng.randrange(1, 100_000),
        rng.choice(STATUSES),
        rng.randrange(1, 10_000),
        Decimal(rng.randrange(1, 10**8)).scaleb(-2),
        round(rng.random() * 1000, 3),
        rng.random() < 0.5,
        _DAY0 + timedelta(days=rng.randrange(730)),
        created,
        created + timedelta(microseconds=rng.randrange(10**10)),
        json.dumps(payload, separators=(",", ":")),
        None if rng.random() < 0.3 else _text(rng, 20, 120),
    )


_MAKERS = {NARROW.name: narrow_row, WIDE.name: wide_row}


def generate(table: Table, first_id: int, count: int, seed: int) -> Iterator[tuple]:
    """`count` rows with ids first_id.. (deterministic for a given seed and first_id)."""
    rng = random.Random(f"{seed}:{table.name}:{first_id}")
    make = _MAKERS[table.name]
    for i in range(first_id, first_id + count):
        yield make(rng, i)


def updated(table: Table, row: tuple, rng: random.Random) -> tuple:
    """The row after an update of a few columns (version column moved forward)."""
    r = list(row)
    if table is WIDE:
        r[2] = rng.choice(STATUSES)
        r[3] = rng.randrange(1, 10_000)
        r[9] = r[9] + timedelta(seconds=1 + rng.randrange(1000))
        r[11] = None if rng.random() < 0.3 else _text(rng, 20, 120)
    else:
        r[1] = rng.randrange(1, 1_000_000)
        r[3] = r[3] + timedelta(seconds=1 + rng.randrange(1000))
    return tuple(r)


def update_columns(table: Table) -> tuple[str, ...]:
    return ("status", "quantity", "updated_at", "note") if table is WIDE else ("qty", "changed_at")


def update_values(table: Table, row: tuple) -> tuple:
    """(changed column values..., id) for `UPDATE ... SET cols WHERE id`."""
    if table is WIDE:
        return (row[2], row[3], row[9], row[11], row[0])
    return (row[1], row[3], row[0])


def for_mes(row: tuple) -> tuple:
    return tuple(
        v.astimezone(timezone.utc).replace(tzinfo=None) if isinstance(v, datetime)
        else int(v) if isinstance(v, bool) else v
        for v in row
    )
