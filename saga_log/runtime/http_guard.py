"""What every service's HTTP server does before a route sees a request: ask for the token
when one is configured, and send headers that keep a browser from being turned against the
page (a Content-Security-Policy without 'unsafe-inline', no sniffing, no referrer).

The token is accepted as `Authorization: Bearer <token>` (scripts, Prometheus) or as the
password of HTTP Basic with any user name (a browser asks for it). `/health` stays open:
it says only whether the service runs, and orchestrators probe it without credentials.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The history's page loads its script and style from itself, draws with SVG (data: URLs
#: for nothing but icons), and talks only to its own API.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
OPEN_PATHS = frozenset({"/health"})


def presented_token(authorization: str) -> str | None:
    """The token an `Authorization` header carries (Bearer, or Basic's password)."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon else None
    return None


class HttpGuard:
    """ASGI middleware: the token check (if `token`) and the security headers."""

    def __init__(self, app: ASGIApp, *, token: str = "", open_paths: Iterable[str] = OPEN_PATHS):
        self.app = app
        self._token = token.encode()
        self._open = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self._token:
            # No route upgrades today; one that does must not skip the token.
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {name for name, _ in SECURITY_HEADERS}
                ]
                message = {**message, "headers": [*headers, *SECURITY_HEADERS]}
            await send(message)

        if self._token and scope.get("path", "") not in self._open and not self._allowed(scope):
            await self._refuse(send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                token = presented_token(value.decode("latin-1"))
                return token is not None and hmac.compare_digest(token.encode(), self._token)
        return False

    @staticmethod
    async def _refuse(send: Send) -> None:
        body = json.dumps(
            {
                "error": "credentials required: send the token (SAGA_HTTP_TOKEN) as "
                "'Authorization: Bearer <token>', or as the password of HTTP Basic"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Basic realm="saga", charset="UTF-8"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
