"""Tokens that can be taken back: logout, a user's sessions, a password change, and
closing the gateway sessions of a token that stopped working, on every node.

A revocation deletes tokens from the store, then closes their open sessions with
4001 and a reason (``protocol.AuthCloseReason``): at once on this node, and on
the others through the internal broker topic ``REVOCATIONS`` (every node serves
it; no client ever hears it). A broker message is best effort, and the admin CLI
(``agora user disable``) has no broker, so each node also checks its open
sessions' tokens in the store every ``revocation_check_ms`` (``TokenWatch``):
one gone closes its sessions with ``token revoked``, a disabled account's with
``account disabled``. The same check records that open sessions' tokens are in
use, so a token does not expire under a session that stays connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgpack
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from protocol import AuthCloseReason, CloseCode, ErrorCode
from server.domain import throttle
from server.domain.accounts import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    TOKEN_ID,
    Refused,
    http_error,
    read_body,
)
from server.errors import Unavailable
from server.ids import now_ms
from server.store import Token

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session

log = logging.getLogger("agora.tokens")

#: The internal broker topic of revocations: ``{user, tokens, reason}`` in msgpack,
#: ``tokens`` None for every session of the user. No channel or topic id has a ``:``
#: after ``agora``.
REVOCATIONS = "agora:revocations"

#: The 401 message for a missing or unusable bearer token, by why it is refused.
BEARER_REFUSED = {
    AuthCloseReason.BAD_TOKEN: "send 'Authorization: Bearer <token>' with a valid token",
    AuthCloseReason.TOKEN_EXPIRED: "this token has expired; log in again",
    AuthCloseReason.ACCOUNT_DISABLED: "this account is disabled",
}


# closing sessions


class RecentRevocations:
    """The revocations this node heard in the last minute.

    An ``identify`` reads its token, then awaits the store before its session is
    registered; a revocation heard in between finds no session to close. The
    identify looks here once registered-to-be (no await left), so it is closed too.
    """

    KEEP_S = 60.0
    MOST = 10_000

    def __init__(self) -> None:
        self._heard: deque[tuple[float, str, list[str] | None, AuthCloseReason]] = deque()

    def add(self, user_id: str, token_ids: list[str] | None, reason: AuthCloseReason) -> None:
        now = time.monotonic()
        self._heard.append((now, user_id, token_ids, reason))
        while self._heard and (
            self._heard[0][0] < now - self.KEEP_S or len(self._heard) > self.MOST
        ):
            self._heard.popleft()

    def since(self, started: float, user_id: str, token_id: str) -> AuthCloseReason | None:
        """The reason a revocation heard after ``started`` names this token, if one did."""
        for heard, user, token_ids, reason in reversed(self._heard):
            if heard < started:
                return None
            if user == user_id and (token_ids is None or token_id in token_ids):
                return reason
        return None


def close_sessions(
    agora: Agora, user_id: str, token_ids: list[str] | None, reason: AuthCloseReason
) -> None:
    """Close this node's sessions of the user identified with ``token_ids`` (None: all)."""
    agora.revocations.add(user_id, token_ids, reason)
    for session in list(agora.user_sessions.get(user_id, ())):
        if token_ids is None or session.token_id in token_ids:
            _close(session, reason)


def _close(session: Session, reason: AuthCloseReason) -> None:
    session.close(CloseCode.NOT_AUTHENTICATED, reason.value)


async def announce(
    agora: Agora, user_id: str, token_ids: list[str] | None, reason: AuthCloseReason
) -> None:
    """Close the sessions of tokens just revoked (or of a disabled account) on every node."""
    close_sessions(agora, user_id, token_ids, reason)
    try:
        await agora.broker.publish(REVOCATIONS, revocation_frame(user_id, token_ids, reason))
    except Unavailable as exc:  # stored already: every node's TokenWatch closes them soon
        log.warning("revocation not published (%s); nodes find it within their check", exc)


def revocation_frame(user_id: str, token_ids: list[str] | None, reason: AuthCloseReason) -> bytes:
    """What ``REVOCATIONS`` carries: ``{user, tokens, reason}`` in msgpack."""
    return msgpack.packb({"user": user_id, "tokens": token_ids, "reason": reason.value})


def on_revocation(agora: Agora, frame: bytes) -> None:
    """A node announced a revocation: close this node's sessions it names."""
    try:
        notice = msgpack.unpackb(frame, raw=False)
        user_id, token_ids = notice["user"], notice["tokens"]
        reason = AuthCloseReason(notice["reason"])
    except (ValueError, TypeError, KeyError):
        log.error("a revocation frame that is not one; dropped")
        return
    if isinstance(user_id, str) and (token_ids is None or isinstance(token_ids, list)):
        close_sessions(agora, user_id, token_ids, reason)


class TokenWatch:
    """Every ``revocation_check_ms``, checks the tokens of this node's open sessions.

    It closes the sessions of tokens that are gone or of accounts now disabled
    (what no broker message told this node), and records that the others are in
    use (coarsely, as identify does).
    """

    def __init__(self, agora: Agora) -> None:
        self.agora = agora
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        interval = self.agora.settings.revocation_check_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Unavailable as exc:
                log.warning("could not check open sessions' tokens: %s", exc)
            except Exception:
                log.exception("checking open sessions' tokens failed")

    async def check(self) -> None:
        sessions = [s for group in self.agora.user_sessions.values() for s in group if s.token_id]
        if not sessions:
            return
        found = {t.id: t for t in await self.agora.store.tokens(_unique(sessions))}
        for session in sessions:
            token = found.get(session.token_id or "")
            if token is None:
                _close(session, AuthCloseReason.TOKEN_REVOKED)
            elif token.disabled:
                _close(session, AuthCloseReason.ACCOUNT_DISABLED)
        now = now_ms()
        stale = [
            t.id
            for t in found.values()
            if not t.disabled and now - t.used_ms >= self.agora.accounts.touch_interval_ms
        ]
        if stale:
            await self.agora.store.touch_tokens(stale, now)


def _unique(sessions: list[Session]) -> list[str]:
    return list(dict.fromkeys(s.token_id for s in sessions if s.token_id))


# HTTP


async def bearer(request: Request) -> Token | JSONResponse:
    """The token of ``Authorization: Bearer <token>``, its use recorded, or the 401."""
    agora: Agora = request.app.state.agora
    scheme, _, raw = request.headers.get("authorization", "").partition(" ")
    reason = AuthCloseReason.BAD_TOKEN
    if scheme.lower() == "bearer" and raw.strip():
        try:
            return await agora.accounts.authenticate(raw.strip())
        except Refused as exc:
            reason = exc.reason
    return http_error(401, ErrorCode.UNAUTHORIZED, BEARER_REFUSED[reason])


def with_bearer(
    route: Callable[[Request, Agora, Token], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """A route that runs only with a working bearer token (``bearer``); else the 401."""

    async def checked(request: Request) -> Response:
        token = await bearer(request)
        if isinstance(token, JSONResponse):
            return token
        return await route(request, request.app.state.agora, token)

    return checked


@with_bearer
async def logout(request: Request, agora: Agora, token: Token) -> Response:
    """Revoke the token the request carries."""
    revoked = await agora.store.revoke_tokens(token.user.id, [token.id])
    await announce(agora, token.user.id, revoked, AuthCloseReason.LOGGED_OUT)
    return Response(status_code=204)


@with_bearer
async def sessions(request: Request, agora: Agora, token: Token) -> JSONResponse:
    """The caller's tokens that still work: never a secret."""
    now = now_ms()
    listed = [
        _public(t, current=t.id == token.id)
        for t in await agora.store.tokens_of(token.user.id)
        if not agora.accounts.expired(t, now)
    ]
    return JSONResponse({"sessions": listed})


@with_bearer
async def revoke(request: Request, agora: Agora, token: Token) -> Response:
    """Revoke one of the caller's sessions (the current one too, like a logout)."""
    session_id = request.path_params["session_id"]
    revoked = []
    if TOKEN_ID.fullmatch(session_id):
        revoked = await agora.store.revoke_tokens(token.user.id, [session_id])
    if not revoked:
        return http_error(404, ErrorCode.NOT_FOUND, "you have no session with this id")
    await announce(agora, token.user.id, revoked, AuthCloseReason.TOKEN_REVOKED)
    return Response(status_code=204)


@with_bearer
async def revoke_others(request: Request, agora: Agora, token: Token) -> JSONResponse:
    """Revoke every session of the caller but the current one."""
    revoked = await agora.store.revoke_tokens(token.user.id, keep=token.id)
    if revoked:
        await announce(agora, token.user.id, revoked, AuthCloseReason.TOKEN_REVOKED)
    return JSONResponse({"revoked": len(revoked)})


@with_bearer
async def change_password(request: Request, agora: Agora, token: Token) -> Response:
    """``{password, new_password}``: a new password, and every other session revoked."""
    body = await read_body(request, required=("password", "new_password"))
    if isinstance(body, JSONResponse):
        return body
    if token.user.bot:
        return http_error(403, ErrorCode.FORBIDDEN, "bots have no password")
    new_password = body["new_password"]
    if not MIN_PASSWORD <= len(new_password) <= MAX_PASSWORD:
        return http_error(
            400,
            ErrorCode.BAD_REQUEST,
            f"field 'new_password' must be {MIN_PASSWORD} to {MAX_PASSWORD} characters",
        )
    # Guessing the current password with a stolen token is throttled like logins.
    try:
        attempt = await agora.throttle.login(token.user.username, throttle.client_address(request))
    except throttle.Refused as exc:
        return exc.response()
    try:
        valid = await agora.accounts.check_password(token.user, body["password"])
        if valid:
            await agora.accounts.set_password(token.user, new_password)
    except throttle.Busy as exc:  # never got to hash: not a failure
        await attempt.undo()
        return exc.response()
    if not valid:
        return http_error(403, ErrorCode.FORBIDDEN, "wrong password")
    await attempt.undo()
    revoked = await agora.store.revoke_tokens(token.user.id, keep=token.id)
    if revoked:
        await announce(agora, token.user.id, revoked, AuthCloseReason.PASSWORD_CHANGED)
    return Response(status_code=204)


def _public(token: Token, *, current: bool) -> dict[str, Any]:
    return {
        "id": token.id,
        "created_ts": token.created_ms,
        "last_used_ts": token.used_ms,
        "label": token.label,
        "current": current,
    }
