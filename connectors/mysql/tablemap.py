"""Table-map events parsed once per layout, not once per transaction.

Every MES transaction carries a table-map event for each table it writes. The replication
library parses each one into Python objects (`TableMapEvent`, a `Column` per column, the
optional metadata, a `Table`) at about 200 µs on a 12-column table: for 1-row transactions
that is most of the reader's time. The event's body (table id, names, column types and
metadata, optional metadata with the column names and the primary key) and the stream's
table filters are all its parsing depends on when the server logs FULL row metadata, so the
parsed state of each (body, filters) seen is kept and given to the next event with the same
bytes. A table changed by DDL logs a different body (and usually a new table id): that is
parsed afresh.

Only layouts whose column names came from the event itself are kept (FULL metadata: the
library may otherwise fill names from the server, which the bytes do not determine), and
nothing is kept for a stream with `freeze_schema` (its parsing depends on the table map).

`install()` wraps the library's `TableMapEvent.__init__` with this cache, process-wide (the
reader calls it once): every stream of the process gets the same objects it would have
parsed. Where this library version lacks the internals relied on, it installs nothing.
"""

from __future__ import annotations

import functools
from typing import Any

from pymysqlreplication.event import BinLogEvent
from pymysqlreplication.row_event import TableMapEvent

MAX_LAYOUTS = 4096  # layouts kept; the cache starts afresh past this
_FILTERS = ("only_tables", "ignored_tables", "only_schemas", "ignored_schemas")
# this event's own links, never part of a layout: the next event sets its own
_OWN = frozenset({"packet", "table_map", "_ctl_connection"})

_layouts: dict[tuple, dict[str, Any]] = {}
stats = {"parsed": 0, "reused": 0}  # table-map events parsed by the library / given a layout


def _key(wrapper: Any, event_size: int, kwargs: dict[str, Any]) -> tuple | None:
    """(the event's bytes after its header, before any checksum; the stream's filters), or
    None when the event cannot be cached: the wrapper is not in the state expected (header
    read, nothing more), or the stream freezes its schema."""
    if kwargs.get("freeze_schema"):
        return None
    if getattr(wrapper, "_BinLogPacketWrapper__data_buffer", None) != b"":
        return None
    packet = getattr(wrapper, "packet", None)
    data, pos = getattr(packet, "_data", None), getattr(packet, "_position", None)
    if not isinstance(data, bytes) or not isinstance(pos, int) or pos + event_size > len(data):
        return None
    filters = tuple(tuple(sorted(f)) if f is not None else None
                    for f in (kwargs.get(name) for name in _FILTERS))
    return data[pos:pos + event_size], filters


def _reusable(event: Any) -> bool:
    """Parsed in full, with every column's name from the event's own metadata."""
    if not getattr(event, "_processed", False) or getattr(event, "table_obj", None) is None:
        return False
    names = getattr(getattr(event, "optional_metadata", None), "column_name_list", None)
    return bool(names) and len(names) == getattr(event, "column_count", None)


def _cached(parse: Any) -> Any:
    @functools.wraps(parse)
    def init(self: Any, from_packet: Any, event_size: int, table_map: dict, ctl_connection: Any,
             **kwargs: Any) -> None:
        key = _key(from_packet, event_size, kwargs)
        state = _layouts.get(key) if key is not None else None
        if state is None:
            stats["parsed"] += 1
            parse(self, from_packet, event_size, table_map, ctl_connection, **kwargs)
            if key is not None and _reusable(self):
                if len(_layouts) >= MAX_LAYOUTS:
                    _layouts.clear()
                _layouts[key] = {k: v for k, v in self.__dict__.items() if k not in _OWN}
            return
        stats["reused"] += 1
        # what TableMapEvent.__init__ does first, for this event; then the layout's fields
        BinLogEvent.__init__(self, from_packet, event_size, table_map, ctl_connection, **kwargs)
        own = self.__dict__
        own.update({k: v for k, v in state.items() if k not in own})
        table_map[self.table_id] = self.table_obj

    init._bridge_layout_cache = True  # type: ignore[attr-defined]
    return init


def install() -> bool:
    """Wrap TableMapEvent.__init__ with the layout cache; False if this library differs."""
    current = TableMapEvent.__init__
    if getattr(current, "_bridge_layout_cache", False):
        return True
    code = getattr(current, "__code__", None)
    expected = ("self", "from_packet", "event_size", "table_map", "ctl_connection")
    if code is None or code.co_varnames[:5] != expected or not hasattr(TableMapEvent, "get_table"):
        return False
    TableMapEvent.__init__ = _cached(current)  # type: ignore[method-assign]
    return True
