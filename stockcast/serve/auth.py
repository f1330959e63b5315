"""Bearer-token authentication of the prediction service: its settings, and the check of one request's header.

A deployment that sets a token requires it on every endpoint but the open ones: the health probes (an orchestrator
calls them without credentials), the OpenAPI document and its viewer, and ``/metrics`` unless told to protect it too.
Everything else needs ``Authorization: Bearer <token>``, a route added later included: a forgotten endpoint is
closed, not open. The token comes from the environment, or from a file for a mounted secret:

- ``STOCKCAST_API_TOKEN``: the token itself;
- ``STOCKCAST_API_TOKEN_FILE``: a file holding it (leading and trailing white space ignored);
- ``STOCKCAST_PROTECT_METRICS``: ``true`` to require the token on ``/metrics`` too (default ``false``: Prometheus
  scrapes it from inside the deployment).

Neither token variable set means no authentication, as before tokens existed. The service and
``stockcast.serve.client.StockcastClient`` read the token the same way, so a client beside the server needs no
argument.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_ENV = "STOCKCAST_API_TOKEN"
TOKEN_FILE_ENV = "STOCKCAST_API_TOKEN_FILE"
PROTECT_METRICS_ENV = "STOCKCAST_PROTECT_METRICS"

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/docs.json", "/"})
"""Paths answered without a token: the health probes, the OpenAPI document and the page that shows it."""
OPEN_PREFIXES = ("/static_content/",)
"""Path prefixes answered without a token: the assets of the OpenAPI page."""
METRICS_PATH = "/metrics"

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""What a bearer token may hold (RFC 6750's ``b64token``): hex, base64 and URL-safe tokens all fit."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class AuthConfigError(ValueError):
    """The token settings cannot be used: both variables set, an unreadable or empty token file, a token with
    characters a bearer token cannot hold, a flag that is not a boolean."""


@dataclass(frozen=True)
class AuthSettings:
    """Whether requests need a bearer token, which token, and whether ``/metrics`` needs it too."""

    token: str | None = field(default=None, repr=False)  # never in a log line or a traceback
    protect_metrics: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> AuthSettings:
        """The settings the environment variables above describe (``os.environ`` by default)."""
        environ = os.environ if environ is None else environ
        flag = environ.get(PROTECT_METRICS_ENV, "").strip().lower()
        if flag not in _TRUE | _FALSE:
            raise AuthConfigError(f"{PROTECT_METRICS_ENV}={flag!r}: use true or false")
        return cls(token=read_token(environ), protect_metrics=flag in _TRUE)

    @property
    def enabled(self) -> bool:
        """True when requests need the token."""
        return self.token is not None

    def requires_token(self, path: str) -> bool:
        """True when a request for ``path`` must carry the token."""
        if not self.enabled or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return False
        return path != METRICS_PATH or self.protect_metrics

    def accepts(self, authorization: bytes | None) -> bool:
        """True when an ``Authorization`` header value carries the token, compared in constant time."""
        if self.token is None:
            return True
        scheme, _, credentials = (authorization or b"").partition(b" ")
        # Compare even when the scheme is wrong, so the time taken says nothing about the token.
        matches = hmac.compare_digest(credentials.strip(), self.token.encode())
        return matches and scheme.lower() == b"bearer"


def read_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The token ``STOCKCAST_API_TOKEN`` or the file named by ``STOCKCAST_API_TOKEN_FILE`` holds; None when neither
    is set (an empty ``STOCKCAST_API_TOKEN`` counts as not set); surrounding white space is dropped. Setting both,
    naming a file that is missing or empty, or a token with characters a bearer token cannot hold (``TOKEN_PATTERN``)
    is an ``AuthConfigError``: a server must not start open when its secret failed to mount."""
    environ = os.environ if environ is None else environ
    token = environ.get(TOKEN_ENV, "").strip() or None
    token_file = environ.get(TOKEN_FILE_ENV) or None
    if token is not None and token_file is not None:
        raise AuthConfigError(f"set {TOKEN_ENV} or {TOKEN_FILE_ENV}, not both")
    source = TOKEN_ENV
    if token_file is not None:
        source = f"{TOKEN_FILE_ENV}={token_file}"
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthConfigError(f"{source}: cannot read the token: {exc}") from exc
        if not token:
            raise AuthConfigError(f"{source}: the file is empty")
    if token is not None and not TOKEN_PATTERN.fullmatch(token):
        raise AuthConfigError(
            f"{source}: a bearer token holds only letters, digits and -._~+/ (then = signs), without spaces"
        )
    return token
