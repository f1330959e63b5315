"""The service's request guards, ASGI middlewares that answer before BentoML parses anything: the bearer token
(``BearerAuth``), the body's media type and size (``RequestGuard``), and the OpenAPI document (``OpenAPIDocument``).
Each refusal gets a JSON body of the documented error shape and one line in the server log."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockcast.serve.auth import AuthSettings
from stockcast.serve.refusals import log_refusal

REALM = "stockcast"


class BearerAuth:
    """ASGI middleware refusing, with a 401, a request for a protected path (``AuthSettings.requires_token``) that
    does not carry the token in ``Authorization: Bearer <token>``. The answer names the scheme in
    ``WWW-Authenticate`` (RFC 6750), with ``error="invalid_token"`` when a token was sent but is wrong."""

    def __init__(self, app: ASGIApp, settings: AuthSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 401."""
        if scope["type"] != "http" or not self.settings.requires_token(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization")
        if self.settings.accepts(authorization):
            await self.app(scope, receive, send)
            return
        challenge = f'Bearer realm="{REALM}"'
        if authorization is None:
            reason = "no bearer token: send the header Authorization: Bearer <token>"
        else:
            challenge += ', error="invalid_token"'
            reason = "wrong bearer token"
        await _refuse(scope, receive, send, 401, reason, headers={"WWW-Authenticate": challenge})


class RequestGuard:
    """ASGI middleware refusing, before the service parses anything, what its JSON APIs must not read: a request
    body of another media type (415; BentoML would try a form parser on it and fail with a 500) or larger than
    ``max_bytes`` (413). A declared Content-Length is checked up front; a chunked body is read up to the limit and
    replayed to the service, so a client cannot stream an unbounded body into the JSON parser either.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 415 or 413."""
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if media_type != b"application/json":
            await _refuse(
                scope,
                receive,
                send,
                415,
                f"send JSON (Content-Type: application/json), not {media_type.decode('latin-1')}",
            )
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(scope, receive, send, 413, f"request body larger than {self.max_bytes} bytes")
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _refuse(scope, receive, send, 413, f"request body larger than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        buffered = iter(messages)

        async def replay() -> Message:
            return next(buffered, None) or await receive()

        await self.app(scope, replay, send)


class OpenAPIDocument:
    """ASGI middleware answering ``GET <path>`` with the document ``build`` makes (once, on the first request), in
    place of the one BentoML would serve there: BentoML offers no hook to change its own."""

    def __init__(self, app: ASGIApp, path: str, build: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.path = path
        self.document = functools.cache(build)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer with the document, or pass the request on."""
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == self.path:
            await JSONResponse(self.document())(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, error: str, *, headers: dict[str, str] | None = None
) -> None:
    log_refusal(status, scope["method"], scope["path"], error)
    await JSONResponse({"error": error}, status_code=status, headers=headers)(scope, receive, send)
