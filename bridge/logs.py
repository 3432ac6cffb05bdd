"""structlog configuration. Only the CLI calls `configure`; library code just gets a logger.

Every line is one JSON object (ts, level, logger, event, fields) on stderr, so it fits log
shippers. Audit events (logger "bridge.audit") also go to `audit_file` when configured.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class _AuditTee:
    """Processor: copies audit events to a JSON-lines file."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, logger: Any, method: str, event: dict) -> dict:
        if event.get("logger") == "bridge.audit":
            line = json.dumps(event, default=str, ensure_ascii=False)
            with self._lock:
                self._fh.write(line + "\n")
                self._fh.flush()
        return event


def _add_logger_name(logger: Any, method: str, event: dict) -> dict:
    name = getattr(logger, "name", None) or event.pop("_logger_name", None)
    if name and "logger" not in event:
        event["logger"] = name
    return event


def configure(level: str = "info", audit_file: Path | None = None,
              stream: TextIO | None = None, pretty: bool = False) -> None:
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_logger_name,
    ]
    if audit_file is not None:
        processors.append(_AuditTee(audit_file))
    processors.append(structlog.processors.format_exc_info)
    if pretty:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    else:
        processors.append(structlog.processors.JSONRenderer(default=str, ensure_ascii=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=_NamedLoggerFactory(stream or _Stderr()),
        cache_logger_on_first_use=False,
    )


class _Stderr:
    """Whatever sys.stderr is when a line is written (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _NamedPrintLogger(structlog.PrintLogger):
    def __init__(self, file: TextIO, name: str | None):
        super().__init__(file)
        self.name = name


class _NamedLoggerFactory:
    def __init__(self, file: TextIO):
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(self._file, args[0] if args else None)
