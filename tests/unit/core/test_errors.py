"""A user error is its reason alone; the traceback comes only when asked for."""

from __future__ import annotations

import pytest

from stockcast.core.errors import DEBUG_ENV, UserError


def _raised() -> UserError:
    try:
        raise UserError("prices.csv: rule 'field_count' broken")
    except UserError as error:
        return error


def test_the_message_is_the_reason_alone(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    error = _raised()
    assert error.message == str(error) == "prices.csv: rule 'field_count' broken"


@pytest.mark.parametrize("value", ["1", "true"])
def test_debugging_adds_the_traceback_below_the_reason(monkeypatch, value):
    monkeypatch.setenv(DEBUG_ENV, value)
    message = _raised().message
    assert message.startswith("prices.csv: rule 'field_count' broken\n\nTraceback")
    assert "_raised" in message
