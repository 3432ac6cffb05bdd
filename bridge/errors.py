"""Error classes. The daemon decides retry / stop / dead-letter from the class, never from text."""

from __future__ import annotations


class BridgeError(Exception):
    """Base class for the bridge's own errors."""


class Retryable(BridgeError):
    """A server went away or is restarting: reconnect with backoff and resume from the
    position stored on the target. Nothing is lost."""


class SourceUnavailable(Retryable):
    """The change source cannot be read right now."""


class TargetUnavailable(Retryable):
    """The target cannot be written right now."""


class Fatal(BridgeError):
    """Needs a human: bad settings, missing privilege, schema mismatch. The message names the fix."""


class SetupError(Fatal):
    """A server setting, object or privilege the bridge needs is missing."""


class Unrepresentable(BridgeError):
    """A value the target column cannot hold exactly. The row goes to the dead-letter table."""

    def __init__(self, column: str, reason: str):
        super().__init__(f"column {column}: {reason}")
        self.column = column
        self.reason = reason
