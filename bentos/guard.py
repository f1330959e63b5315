"""The service's request guard: what its JSON APIs must not read is refused before BentoML parses anything."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
                scope, receive, send, 415, f"send JSON (Content-Type: application/json), not {media_type.decode()}"
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


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, error: str) -> None:
    await JSONResponse({"error": error}, status_code=status)(scope, receive, send)
