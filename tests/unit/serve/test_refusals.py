"""Refused requests in the log: BentoML's ERROR record with a traceback becomes one bounded INFO line; a server error
keeps its traceback."""

from __future__ import annotations

import logging
import sys

import pytest
from bentoml.exceptions import BentoMLException, InternalServerError, InvalidArgument
from pydantic import BaseModel, ValidationError

from stockcast.serve.refusals import (
    BENTOML_REQUEST_LOGGER,
    LOGGER_NAME,
    MAX_PATH_CHARS,
    MAX_REASON_CHARS,
    ClientErrorLogFilter,
    client_error_status,
    error_summary,
    log_refusal,
    quiet_client_errors,
    refusal_line,
)


class Request(BaseModel):
    tickers: list[str]
    limit: int


def _validation_error() -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Request.model_validate({"tickers": [1, 2], "limit": "x"})
    return caught.value


def _record(error: BaseException) -> logging.LogRecord:
    """The record BentoML makes for an exception raised while answering a request (``log_exception``)."""
    try:
        raise error
    except type(error):
        exc_info = sys.exc_info()
    return logging.LogRecord(
        BENTOML_REQUEST_LOGGER, logging.ERROR, __file__, 1, "Exception on %s [%s]", ("/predict", "POST"), exc_info
    )


def test_a_refusal_is_one_short_line() -> None:
    assert refusal_line(400, "POST", "/predict", "tickers: unknown ticker(s) ['ZZZ']") == (
        "400 POST /predict: tickers: unknown ticker(s) ['ZZZ']"
    )
    line = refusal_line(415, "POST", "/predict\n/forged", "send JSON,\r\nnot " + "x" * 500)
    assert "\n" not in line and "\r" not in line
    assert line.startswith("415 POST /predict /forged: send JSON, not xxx")
    assert line.endswith("...") and len(line) <= 4 + 5 + MAX_PATH_CHARS + 2 + MAX_REASON_CHARS


def test_a_validation_error_is_summed_up_by_its_first_error() -> None:
    assert error_summary(_validation_error()) == "tickers.0: Input should be a valid string (+2 more)"
    assert error_summary(InvalidArgument("bad input")) == "bad input"


def test_which_exceptions_are_client_errors() -> None:
    assert client_error_status(_validation_error()) == 400
    assert client_error_status(InvalidArgument("no")) == 400
    assert client_error_status(InternalServerError("boom")) is None
    assert client_error_status(BentoMLException("boom")) is None
    assert client_error_status(RuntimeError("boom")) is None
    assert client_error_status(None) is None


def test_the_filter_turns_a_refused_request_into_one_info_line() -> None:
    record = _record(_validation_error())

    assert ClientErrorLogFilter().filter(record)

    assert (record.levelno, record.levelname) == (logging.INFO, "INFO")
    assert record.exc_info is None and record.exc_text is None
    assert record.getMessage() == "400 POST /predict: tickers.0: Input should be a valid string (+2 more)"


def test_the_filter_leaves_a_server_error_and_its_traceback_alone() -> None:
    record = _record(RuntimeError("model exploded"))

    assert ClientErrorLogFilter().filter(record)

    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == "Exception on /predict [POST]"


def test_the_filter_is_installed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    monkeypatch.setattr(logger, "filters", [])

    quiet_client_errors()
    quiet_client_errors()

    assert [type(installed) for installed in logger.filters] == [ClientErrorLogFilter]


def test_an_unauthenticated_request_is_a_warning_other_refusals_are_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        log_refusal(401, "GET", "/model", "wrong bearer token")
        log_refusal(413, "POST", "/predict", "request body larger than 1048576 bytes")

    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("WARNING", "401 GET /model: wrong bearer token"),
        ("INFO", "413 POST /predict: request body larger than 1048576 bytes"),
    ]
