"""Accounts: registration, login, tokens, and the gateway's ``identify``.

Passwords are hashed with Argon2id (memory-hard, from argon2-cffi) on a worker
thread. A token is ``<token id>.<secret>``; only a SHA-256 of the secret is
stored, and it is compared in constant time. A token is refused when it is
unknown (never issued, or revoked: ``server/domain/tokens.py``), when its
account is disabled, or when it went unused for ``token_ttl_days`` (a bot's
never expires by non-use: a bot offline for a month should not need its owner).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from protocol import AuthCloseReason, CloseCode, ErrorCode, ProtocolError, echo
from protocol.schema import unstorable
from server.discussions import reads, threads
from server.domain import communities, names, presence, throttle
from server.gateway.router import CommandRouter, Fatal, Reply
from server.ids import new_id, now_ms
from server.store import Conflict, InviteRefused, Store, Token, User

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session

USERNAME = re.compile(r"[A-Za-z0-9_.-]{2,32}")
#: What a token's id may be (ours are digits); anything else is no token's (and no NUL
#: reaches PostgreSQL, which refuses one in text).
TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
MIN_PASSWORD, MAX_PASSWORD = 8, 256
MAX_DISPLAY_NAME = 64
#: Largest body the auth endpoints read, in bytes.
MAX_BODY = 16 * 1024
#: Longest token label kept (the client's User-Agent), in characters.
MAX_LABEL = 200
#: A token's use is written at most this often (ms), so identify storms write nothing;
#: with a short ``token_ttl_days`` it is written every tenth of the TTL instead.
TOUCH_INTERVAL_MS = 3_600_000

router = CommandRouter()


class Invalid(ValueError):
    """A field of a new account breaks its rule; the message names the field."""


def check_account(username: str, password: str | None, display_name: object = None) -> str:
    """Check a new account's fields (``password`` None: an account without one).

    Returns the display name to store: cleaned (``names.clean_display_name``), or
    the username when absent.
    Raises ``Invalid``. Registration, bot creation and the admin CLI share it.
    """
    if not USERNAME.fullmatch(username):
        raise Invalid("field 'username' must be 2 to 32 letters, digits, '_', '.' or '-'")
    if password is not None and not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Invalid(f"field 'password' must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if display_name is None:
        return username
    if isinstance(display_name, str):
        display_name = names.clean_display_name(display_name)
    if not isinstance(display_name, str) or not 0 < len(display_name) <= MAX_DISPLAY_NAME:
        raise Invalid(f"field 'display_name' must be 1 to {MAX_DISPLAY_NAME} characters")
    return display_name


def hash_password(password: str) -> str:
    """Argon2id, as registration stores it (blocking: about 50 ms and 64 MiB)."""
    return PasswordHasher().hash(password)


async def issue_token(store: Store, user: User, label: str | None = None) -> str:
    """A new token for the user; only the hash of its secret is stored."""
    token_id, secret = new_id(), secrets.token_urlsafe(32)
    await store.add_token(token_id, user.id, _digest(secret), label=label)
    return f"{token_id}.{secret}"


def label_of(request: Request) -> str | None:
    """What a token issued to this request is labelled with: the client's User-Agent."""
    agent = request.headers.get("user-agent", "").strip()
    return agent[:MAX_LABEL] or None


class Refused(Exception):
    """A token that lets no one in; ``reason`` says why (the 4001 close reason)."""

    def __init__(self, reason: AuthCloseReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class AccountDisabled(Exception):
    """The password was right, but an operator disabled the account."""


class Accounts:
    def __init__(
        self,
        store: Store,
        *,
        registration: bool = True,
        hash_queue: int = 16,
        token_ttl_days: float = 0,
    ) -> None:
        self.store = store
        self.registration = registration
        #: how long a token may go unused, in ms (0: forever)
        self.token_ttl_ms = round(token_ttl_days * 86_400_000)
        #: how stale a token's recorded use may get before it is written again, in ms
        self.touch_interval_ms = (
            min(TOUCH_INTERVAL_MS, max(1, self.token_ttl_ms // 10))
            if self.token_ttl_ms
            else TOUCH_INTERVAL_MS
        )
        self._hasher = PasswordHasher()
        self._dummy_hash = self._hasher.hash(secrets.token_hex(8))
        self._hashing = throttle.HashQueue(throttle.CONCURRENT_HASHES, hash_queue)

    async def register(
        self,
        username: str,
        password: str,
        display_name: str | None = None,
        *,
        bot: bool = False,
        invite: str | None = None,
        label: str | None = None,
    ) -> tuple[User, str]:
        """Create an account and its first token.

        Raises ``Conflict`` on a taken name, ``InviteRefused`` for an invite
        that cannot take the account in (then no account is made), and
        ``throttle.Busy`` when too many password hashes wait already.
        """
        password_hash = await self._hashing.run(self._hasher.hash, password)
        user = await self.store.create_user(
            username, display_name or username, password_hash, bot=bot, invite=invite
        )
        return user, await issue_token(self.store, user, label)

    async def login(
        self, username: str, password: str, label: str | None = None
    ) -> tuple[User, str] | None:
        """The account and a new token, or None for a wrong name or password.

        Raises ``AccountDisabled`` for the right password of a disabled account.
        """
        user = await self._verified(username, password)
        if user is None:
            return None
        if await self.store.disabled_ms(user.id) is not None:
            raise AccountDisabled(user.username)
        return user, await issue_token(self.store, user, label)

    async def check_password(self, user: User, password: str) -> bool:
        """Whether ``password`` is the account's (False for accounts without one)."""
        return await self._verified(user.username, password) is not None

    async def _verified(self, username: str, password: str) -> User | None:
        """The account if ``password`` is its password, else None."""
        if len(password) > MAX_PASSWORD:
            return None
        found = await self.store.credentials(username)
        # Verify against a dummy hash for unknown names and for accounts without a
        # password (bots, imported accounts) too, so timing tells nothing.
        password_hash = found[1] if found and found[1] else self._dummy_hash
        valid = await self._hashing.run(self._verify, password_hash, password)
        return found[0] if valid and found is not None and found[1] else None

    async def set_password(self, user: User, password: str) -> None:
        """Raises ``throttle.Busy`` when the hash queue is full."""
        password_hash = await self._hashing.run(self._hasher.hash, password)
        await self.store.set_password(user.id, password_hash)

    async def authenticate(self, token: str) -> Token:
        """The stored token behind ``token``, its use recorded (coarsely).

        Raises ``Refused``: ``bad token`` for one that is malformed, unknown,
        revoked or has a wrong secret (which of these is not told), then
        ``account disabled`` or ``token expired``.
        """
        token_id, _, secret = token.partition(".")
        if not secret or not TOKEN_ID.fullmatch(token_id):
            raise Refused(AuthCloseReason.BAD_TOKEN)
        found = await self.store.token(token_id)
        if found is None or not hmac.compare_digest(found.secret_hash, _digest(secret)):
            raise Refused(AuthCloseReason.BAD_TOKEN)
        if found.disabled:
            raise Refused(AuthCloseReason.ACCOUNT_DISABLED)
        now = now_ms()
        if self.expired(found, now):
            await self.store.revoke_tokens(found.user.id, [found.id])
            raise Refused(AuthCloseReason.TOKEN_EXPIRED)
        if now - found.used_ms >= self.touch_interval_ms:
            await self.store.touch_tokens([found.id], now)
        return found

    def expired(self, token: Token, now: int) -> bool:
        """Whether the token went unused too long (a bot's never does)."""
        return (
            bool(self.token_ttl_ms)
            and not token.user.bot
            and (now - token.used_ms > self.token_ttl_ms)
        )

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


# HTTP


def http_error(status: int, code: ErrorCode, message: str) -> JSONResponse:
    """The JSON error answer; like an ``error`` frame, its message always encodes."""
    body = {"error": {"code": code.value, "message": echo(message, limit=None)}}
    return JSONResponse(body, status_code=status)


async def read_body(
    request: Request, required: tuple[str, ...] = ("username", "password")
) -> dict[str, Any] | JSONResponse:
    """The JSON object of a request, with ``required`` string fields, or the error to answer."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            return http_error(413, ErrorCode.TOO_LARGE, f"the body is over {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        return http_error(400, ErrorCode.BAD_REQUEST, "the body must be a JSON object")
    except RecursionError:  # e.g. thousands of '[': no account has fields that deep
        return http_error(400, ErrorCode.BAD_REQUEST, "the body is nested too deeply")
    if not isinstance(body, dict):
        return http_error(400, ErrorCode.BAD_REQUEST, "the body must be a JSON object")
    for name in required:
        if not isinstance(body.get(name), str):
            return http_error(400, ErrorCode.BAD_REQUEST, f"field '{name}' must be a string")
    for name, value in body.items():
        if isinstance(value, str) and (problem := unstorable(value)):
            return http_error(400, ErrorCode.BAD_REQUEST, f"field '{echo(name)}' {problem}")
    return body


async def register(request: Request) -> JSONResponse:
    agora: Agora = request.app.state.agora
    if not agora.accounts.registration:
        return http_error(403, ErrorCode.FORBIDDEN, "registration is closed on this server")
    body = await read_body(request)
    if isinstance(body, JSONResponse):
        return body
    username, password = body["username"], body["password"]
    try:
        display_name = check_account(username, password, body.get("display_name"))
    except Invalid as exc:
        return http_error(400, ErrorCode.BAD_REQUEST, str(exc))
    invite = body.get("invite")
    if invite is not None and (not isinstance(invite, str) or not 0 < len(invite) <= 64):
        return http_error(400, ErrorCode.BAD_REQUEST, "field 'invite' must be an invite code")
    if (reserved := names.reserved_refusal(username)) is not None:
        return http_error(409, ErrorCode.CONFLICT, reserved)
    try:  # counted before any hashing (see ``throttle``)
        attempt = await agora.throttle.register(throttle.client_address(request))
    except throttle.Refused as exc:
        return exc.response()
    if (refusal := await agora.first_owner.refusal(body)) is not None:
        return refusal
    try:
        user, token = await agora.accounts.register(
            username, password, display_name, invite=invite, label=label_of(request)
        )
    except throttle.Busy as exc:
        await attempt.undo()
        return exc.response()
    except Conflict as exc:
        return http_error(409, ErrorCode.CONFLICT, str(exc))
    except InviteRefused as exc:
        status = 404 if exc.unknown else 403
        return http_error(
            status, ErrorCode.NOT_FOUND if exc.unknown else ErrorCode.FORBIDDEN, str(exc)
        )
    await communities.announce_new_account(agora, user)
    return JSONResponse({"user": user.public(), "token": token}, status_code=201)


async def login(request: Request) -> JSONResponse:
    agora: Agora = request.app.state.agora
    body = await read_body(request)
    if isinstance(body, JSONResponse):
        return body
    try:  # counted before any hashing; only failures stay counted (see ``throttle``)
        attempt = await agora.throttle.login(body["username"], throttle.client_address(request))
        found = await agora.accounts.login(body["username"], body["password"], label_of(request))
    except throttle.Busy as exc:
        await attempt.undo()
        return exc.response()
    except throttle.Refused as exc:
        return exc.response()
    except AccountDisabled:
        return http_error(403, ErrorCode.FORBIDDEN, "this account is disabled")
    if found is None:
        return http_error(401, ErrorCode.UNAUTHORIZED, "wrong username or password")
    await attempt.undo()
    return JSONResponse({"user": found[0].public(), "token": found[1]})


# gateway

#: The ``forbidden`` message and the 1008 close reason for one session too many.
TOO_MANY_SESSIONS = "too many sessions for this account"


@router.command("identify")
async def identify(session: Session, d: dict[str, Any]) -> Reply:
    if session.user is not None:
        raise ProtocolError("this session is identified already", code=ErrorCode.CONFLICT)
    started = time.monotonic()
    try:
        token = await session.agora.accounts.authenticate(d["token"])
    except Refused as exc:
        raise Fatal(
            exc.reason.value, code=ErrorCode.UNAUTHORIZED, close_code=CloseCode.NOT_AUTHENTICATED
        ) from None
    user = token.user
    views = await session.agora.store.communities_of(user.id)
    # No await from here to ``identified``: a revocation heard since the token was read
    # would find no session to close, so it is looked for here.
    revoked = session.agora.revocations.since(started, user.id, token.id)
    if revoked is not None:
        raise Fatal(
            revoked.value, code=ErrorCode.UNAUTHORIZED, close_code=CloseCode.NOT_AUTHENTICATED
        )
    # Counted and joined with no await between: concurrent identifies cannot pass it together.
    cap = session.agora.settings.max_sessions_per_user
    if cap and len(session.agora.user_sessions.get(user.id, ())) >= cap:
        # One account's sockets must not hold a process's memory (each may queue up to
        # outbox_limit); a client must close a session, not retry this one.
        raise Fatal(
            TOO_MANY_SESSIONS, code=ErrorCode.FORBIDDEN, close_code=CloseCode.POLICY_VIOLATION
        )
    session.user = user
    session.token_id = token.id
    session.outbox.owner = user.id
    session.agora.metrics.sessions.inc()
    session.agora.identified(session)
    await communities.attach(session, views)
    followed = await session.agora.store.followed_threads(user.id)
    await threads.attach(session, followed)
    answer = {
        "user": user.public(),
        "session": session.id,
        "communities": [c.public() for c in views],
        **await reads.on_identify(session.agora.store, user, views, followed),
    }
    # Online once the reply is out: the session's own presence.updated follows it.
    return Reply(answer, then=lambda: presence.start(session))
