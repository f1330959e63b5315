"""Failures a user can act on: deterministic, so retrying them would fail the same way.

A bad configuration, a rejected input file, a bad parameter, data too short for the backtest, no champion yet: each
is a ``UserError``. They derive from Metaflow's ``MetaflowException``, which Metaflow prints as its headline and one
message, without a traceback; the steps that can raise them run without ``@retry`` (storage and network errors are
what retries are for). Outside Metaflow they are plain ``ValueError`` subclasses with their message as ``str()``.
"""

from __future__ import annotations

from metaflow.exception import MetaflowException


class UserError(MetaflowException, ValueError):
    """A deterministic failure with one message saying what is wrong and what to change."""

    headline = "Stopped"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.args = (message,)
