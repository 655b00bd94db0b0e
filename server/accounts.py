"""Accounts: registration, login, tokens, and the gateway's ``identify``.

Passwords are hashed with Argon2id (memory-hard, from argon2-cffi) on a worker
thread. A token is ``<token id>.<secret>``; only a SHA-256 of the secret is
stored, and it is compared in constant time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from protocol import CloseCode, ErrorCode, ProtocolError
from server.commands import CommandRouter, Fatal
from server.ids import new_id
from server.store import Conflict, Store, User

if TYPE_CHECKING:
    from server.app import Agora
    from server.session import Session

USERNAME = re.compile(r"[A-Za-z0-9_.-]{2,32}")
MIN_PASSWORD, MAX_PASSWORD = 8, 256
MAX_DISPLAY_NAME = 64
#: Largest body the auth endpoints read, in bytes.
MAX_BODY = 16 * 1024
#: Password hashes computed at once; each takes 64 MiB for a moment.
CONCURRENT_HASHES = 4

router = CommandRouter()


class Accounts:
    def __init__(self, store: Store, *, registration: bool = True) -> None:
        self.store = store
        self.registration = registration
        self._hasher = PasswordHasher()
        self._dummy_hash = self._hasher.hash(secrets.token_hex(8))
        self._hashing = asyncio.Semaphore(CONCURRENT_HASHES)

    async def register(
        self, username: str, password: str, display_name: str | None = None, *, bot: bool = False
    ) -> tuple[User, str]:
        """Create an account and its first token. Raises ``Conflict`` on a taken name."""
        async with self._hashing:
            password_hash = await asyncio.to_thread(self._hasher.hash, password)
        user = await self.store.create_user(
            username, display_name or username, password_hash, bot=bot
        )
        return user, await self.issue_token(user)

    async def login(self, username: str, password: str) -> tuple[User, str] | None:
        if len(password) > MAX_PASSWORD:
            return None
        found = await self.store.credentials(username)
        # Verify against a dummy hash for unknown names too, so timing tells nothing.
        password_hash = found[1] if found else self._dummy_hash
        async with self._hashing:
            valid = await asyncio.to_thread(self._verify, password_hash, password)
        if not valid or found is None:
            return None
        return found[0], await self.issue_token(found[0])

    async def issue_token(self, user: User) -> str:
        token_id, secret = new_id(), secrets.token_urlsafe(32)
        await self.store.add_token(token_id, user.id, _digest(secret))
        return f"{token_id}.{secret}"

    async def authenticate(self, token: str) -> User | None:
        token_id, _, secret = token.partition(".")
        if not token_id or not secret or len(token_id) > 32:
            return None
        found = await self.store.token(token_id)
        if found is None or not hmac.compare_digest(found[1], _digest(secret)):
            return None
        return found[0]

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


# HTTP


def http_error(status: int, code: ErrorCode, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code.value, "message": message}}, status_code=status)


async def _credentials_from(request: Request) -> dict[str, Any] | JSONResponse:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            return http_error(413, ErrorCode.TOO_LARGE, f"the body is over {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        return http_error(400, ErrorCode.BAD_REQUEST, "the body must be a JSON object")
    if not isinstance(body, dict):
        return http_error(400, ErrorCode.BAD_REQUEST, "the body must be a JSON object")
    for name in ("username", "password"):
        if not isinstance(body.get(name), str):
            return http_error(400, ErrorCode.BAD_REQUEST, f"field '{name}' must be a string")
    for name, value in body.items():
        if isinstance(value, str) and not value.isascii():
            try:  # JSON escapes can carry lone surrogates
                value.encode()
            except UnicodeEncodeError:
                return http_error(
                    400, ErrorCode.BAD_REQUEST, f"field '{name}' is not valid Unicode"
                )
    return body


async def register(request: Request) -> JSONResponse:
    agora: Agora = request.app.state.agora
    if not agora.accounts.registration:
        return http_error(403, ErrorCode.FORBIDDEN, "registration is closed on this server")
    body = await _credentials_from(request)
    if isinstance(body, JSONResponse):
        return body
    username, password = body["username"], body["password"]
    display_name = body.get("display_name")
    if not USERNAME.fullmatch(username):
        return http_error(
            400,
            ErrorCode.BAD_REQUEST,
            "field 'username' must be 2 to 32 letters, digits, '_', '.' or '-'",
        )
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return http_error(
            400,
            ErrorCode.BAD_REQUEST,
            f"field 'password' must be {MIN_PASSWORD} to {MAX_PASSWORD} characters",
        )
    if display_name is not None and (
        not isinstance(display_name, str) or not 0 < len(display_name.strip()) <= MAX_DISPLAY_NAME
    ):
        return http_error(
            400,
            ErrorCode.BAD_REQUEST,
            f"field 'display_name' must be 1 to {MAX_DISPLAY_NAME} characters",
        )
    try:
        user, token = await agora.accounts.register(
            username, password, display_name.strip() if display_name else None
        )
    except Conflict as exc:
        return http_error(409, ErrorCode.CONFLICT, str(exc))
    return JSONResponse({"user": user.public(), "token": token}, status_code=201)


async def login(request: Request) -> JSONResponse:
    agora: Agora = request.app.state.agora
    body = await _credentials_from(request)
    if isinstance(body, JSONResponse):
        return body
    found = await agora.accounts.login(body["username"], body["password"])
    if found is None:
        return http_error(401, ErrorCode.UNAUTHORIZED, "wrong username or password")
    return JSONResponse({"user": found[0].public(), "token": found[1]})


# gateway


@router.command("identify")
async def identify(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    if session.user is not None:
        raise ProtocolError("this session is identified already", code=ErrorCode.CONFLICT)
    user = await session.agora.accounts.authenticate(d["token"])
    if user is None:
        raise Fatal(
            "bad token", code=ErrorCode.UNAUTHORIZED, close_code=CloseCode.NOT_AUTHENTICATED
        )
    communities = await session.agora.store.communities_of(user.id)
    session.user = user
    session.agora.metrics.sessions.inc()
    return {
        "user": user.public(),
        "session": session.id,
        "communities": [c.public() for c in communities],
    }
