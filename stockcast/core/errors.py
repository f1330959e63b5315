"""Failures a user can act on: deterministic, so retrying them would fail the same way.

A bad configuration, a rejected input file, a bad parameter, data too short for the backtest, no champion yet: each
is a ``UserError``. They derive from Metaflow's ``MetaflowException``, which Metaflow prints as its headline and one
message, without a traceback; the steps that can raise them run without ``@retry`` (storage and network errors are
what retries are for). Outside Metaflow they are plain ``ValueError`` subclasses with their message as ``str()``.

``STOCKCAST_DEBUG=1`` adds the traceback below the message, for whoever debugs the code rather than the input.
"""

from __future__ import annotations

import os
import traceback

from metaflow.exception import MetaflowException

DEBUG_ENV = "STOCKCAST_DEBUG"


class UserError(MetaflowException, ValueError):
    """A deterministic failure with one message saying what is wrong and what to change."""

    headline = "Stopped"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.args = (message,)

    @property
    def message(self) -> str:
        """What Metaflow prints under the headline: the reason, and the traceback when debugging."""
        if os.environ.get(DEBUG_ENV, "") not in ("", "0") and self.__traceback__ is not None:
            return f"{self._message}\n\n{''.join(traceback.format_exception(self))}"
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        self._message = value
