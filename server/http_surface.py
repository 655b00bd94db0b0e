"""Rules for every HTTP request: JSON bodies, browser security headers, who sees /metrics.

One ASGI middleware, so that routes added later are covered without a line of
their own:

- **JSON only.** A request to ``/api/v1/`` that carries a body (any method;
  ``Content-Length`` above 0 or a ``Transfer-Encoding``) must say
  ``Content-Type: application/json`` (parameters such as ``charset`` allowed);
  otherwise 415 and the route never runs. A browser sends a cross-site POST
  without a preflight only as ``text/plain``, form or multipart, so no page
  elsewhere can make a visitor's browser register or log in.
- **Headers for browsers.** Every response carries a Content-Security-Policy
  that allows only the server's own scripts, styles and connections and no
  framing, ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (for
  browsers that predate ``frame-ancestors``) and ``Referrer-Policy: no-referrer``
  (an invite link's code is in its path).
- **/metrics.** With ``metrics_address`` set it is served on that socket only,
  and that socket serves nothing else; with ``metrics_token`` set it needs
  ``Authorization: Bearer <token>``.

WebSocket traffic passes untouched (the gateway is reached before Starlette's
middleware anyway, see ``server.app.AgoraApp``).
"""

from __future__ import annotations

import hmac
import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol import ErrorCode
from server.settings import Settings

#: What the web client needs: its own scripts, stylesheet and connections (fetch and
#: the same-origin WebSocket), and the blank ``data:`` icon of ``index.html``.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)

SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class HttpSurface:
    """The middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.metrics_token = settings.metrics_token.encode()
        listen = settings.metrics_listen
        self.metrics_port = None if listen is None else listen[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await _answer(send_with_headers, *refusal)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(
        self, scope: Scope
    ) -> tuple[int, ErrorCode, str, list[tuple[bytes, bytes]]] | None:
        """The status, code, message and extra headers to answer instead of the app, if any."""
        path: str = scope["path"]
        headers = Headers(scope=scope)
        metrics_apart = self.metrics_port is not None
        if metrics_apart and on_port(scope, self.metrics_port) != (path == "/metrics"):
            return 404, ErrorCode.NOT_FOUND, "not found", []
        if path == "/metrics" and self.metrics_token:
            given = headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, b"Bearer " + self.metrics_token):
                return (
                    401,
                    ErrorCode.UNAUTHORIZED,
                    "/metrics needs Authorization: Bearer <metrics_token>",
                    [(b"www-authenticate", b"Bearer")],
                )
        if path.startswith("/api/v1/") and _has_body(headers):
            media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                return (
                    415,
                    ErrorCode.BAD_REQUEST,
                    "the body must be JSON, sent with Content-Type: application/json",
                    [],
                )
        return None


def on_port(scope: Scope, port: int | None) -> bool:
    """Whether the connection of ``scope`` came in on the local ``port``."""
    return port is not None and (scope.get("server") or (None, None))[1] == port


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length", "0").strip()
    return "transfer-encoding" in headers or not (length.isdigit() and int(length) == 0)


async def _answer(
    send: Send, status: int, code: ErrorCode, message: str, extra: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps({"error": {"code": code.value, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    # The request's body (if any) is left unread: uvicorn discards it.
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
