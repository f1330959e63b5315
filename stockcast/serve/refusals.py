"""Refused requests in the server log: one bounded line each, at INFO (a 401 at WARNING), never a traceback.

A client error says nothing about the server's health, so it must not read like a server error: BentoML logs every
request its API refuses (a 400) at ERROR with the full traceback of the validation error, about 2 KB a request, so
a misbehaving client could fill a disk and bury the server errors that matter. ``ClientErrorLogFilter`` rewrites
those records into one line; the service's own refusals (401, 413, 415, answered before BentoML sees the request)
are logged by ``log_refusal`` in the same form:

    2026-12-05T10:00:00+0000 [INFO] [entry_service:stockcast:1] 400 POST /predict_from_history: prices.3.close: price
    must be > 0 (+1 more)

(on one line). Server errors (5xx) keep BentoML's ERROR record and traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

LOGGER_NAME = "bentoml.stockcast"
"""The logger of refusals: under BentoML's, so the server's logging settings (level, format, handler) apply to it as
to BentoML's own lines."""
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
"""The logger BentoML reports an exception raised while answering an API request with ("Exception on PATH [METHOD]")."""
MAX_PATH_CHARS = 64
MAX_REASON_CHARS = 96
"""A path and a reason are cut to these many characters: a line stays under 200 bytes, whatever a client sends."""


def refusal_line(status: int, method: str, path: str, reason: str) -> str:
    """``"<status> <method> <path>: <reason>"`` on one line (a client's line breaks, which a path or a reason may
    carry, become spaces), the path and the reason cut to ``MAX_PATH_CHARS`` and ``MAX_REASON_CHARS``."""
    return (
        f"{status} {_one_line(method, MAX_PATH_CHARS)} {_one_line(path, MAX_PATH_CHARS)}: "
        f"{_one_line(reason, MAX_REASON_CHARS)}"
    )


def log_refusal(status: int, method: str, path: str, reason: str) -> None:
    """Log a request the service refused: at WARNING when the client was not authenticated, else at INFO."""
    level = logging.WARNING if status == HTTPStatus.UNAUTHORIZED else logging.INFO
    logging.getLogger(LOGGER_NAME).log(level, "%s", refusal_line(status, method, path, reason))


def client_error_status(error: BaseException | None) -> int | None:
    """The 4xx status BentoML answers an exception raised while handling a request with; None for any other."""
    if isinstance(error, ValidationError):
        return HTTPStatus.BAD_REQUEST
    if isinstance(error, BentoMLException) and error.error_code < HTTPStatus.INTERNAL_SERVER_ERROR:
        return int(error.error_code)
    return None


def error_summary(error: BaseException) -> str:
    """What was wrong, for the log: a validation error's first error as ``place: message`` and how many more."""
    if not isinstance(error, ValidationError):
        return str(error)
    first, *others = error.errors(include_input=False, include_url=False)
    place = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{place}: {first['msg']}" + (f" (+{len(others)} more)" if others else "")


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class ClientErrorLogFilter(logging.Filter):
    """Turns BentoML's record of a refused API request (ERROR, "Exception on PATH [METHOD]", with the traceback) into
    ``refusal_line``'s one line at INFO; records of server errors pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place when it reports a client error; let every record through."""
        error = record.exc_info[1] if record.exc_info else None
        status = client_error_status(error)
        if status is None or error is None or not (isinstance(record.args, tuple) and len(record.args) == 2):
            return True
        path, method = record.args
        record.msg, record.args = "%s", (refusal_line(status, str(method), str(path), error_summary(error)),)
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.exc_info, record.exc_text = None, None
        return True


def quiet_client_errors() -> None:
    """Install ``ClientErrorLogFilter`` on BentoML's request logger, once per process (the service calls it when it
    starts, after the server has configured logging)."""
    logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(existing, ClientErrorLogFilter) for existing in logger.filters):
        logger.addFilter(ClientErrorLogFilter())
