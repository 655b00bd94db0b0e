"""Throttled logins and registrations, and the bounded queue of password hashes.

Password guessing is limited twice: per account name (as typed, whether or
not such an account exists, so a ``429`` tells nothing about it) and per
client address. Each attempt is counted *before* its password is hashed, so a
burst of concurrent guesses cannot slip past the limit while hashes run; an
attempt that succeeds, or that never got to hash, is taken back, so only
failures count. Registration is counted per address. The counters live in the
deployment's ``LiveState``: in memory embedded, in Redis when scaled, where a
failure on one node counts on every other.

A hash takes about 50 ms and 64 MiB, so ``CONCURRENT_HASHES`` run at once;
``HashQueue`` lets at most ``hash_queue`` more wait for them and answers the
rest ``503`` at once: a flood from many addresses gets fast refusals instead
of a queue in which a real login waits for seconds.

An IPv6 client is counted by its /64 network (``server.addresses``), as the
connection cap counts it. The address is the TCP peer's: behind a reverse proxy, run uvicorn's
``--forwarded-allow-ips`` so that it is the client's.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse

from protocol import ErrorCode
from server.addresses import address_key
from server.live import LiveState
from server.settings import Settings

T = TypeVar("T")

#: Password hashes computed at once; each takes 64 MiB for a moment.
CONCURRENT_HASHES = 4
#: Seconds a client refused by a full hash queue is told to wait.
BUSY_RETRY_S = 1


class Refused(Exception):
    """Answer ``status`` with ``Retry-After: retry_after_s`` instead of doing the request."""

    def __init__(self, status: int, code: ErrorCode, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s

    def response(self) -> JSONResponse:
        """The JSON error answer (the shape of ``accounts.http_error``), with ``Retry-After``."""
        error = {
            "code": self.code.value,
            "message": str(self),
            "retry_after_ms": self.retry_after_s * 1000,
        }
        return JSONResponse(
            {"error": error},
            status_code=self.status,
            headers={"retry-after": str(self.retry_after_s)},
        )


class Busy(Refused):
    """Too many password hashes wait already."""

    def __init__(self) -> None:
        super().__init__(
            503,
            ErrorCode.UNAVAILABLE,
            f"the server is busy checking passwords; try again in {wait_text(BUSY_RETRY_S)}",
            BUSY_RETRY_S,
        )


class HashQueue:
    """Run password hashes on worker threads, ``concurrent`` at once and ``waiting`` more
    queued; beyond that, ``run`` raises ``Busy`` without waiting."""

    def __init__(self, concurrent: int = CONCURRENT_HASHES, waiting: int = 16) -> None:
        self._slots = asyncio.Semaphore(concurrent)
        self._capacity = concurrent + waiting
        self._inside = 0

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._inside >= self._capacity:
            raise Busy
        self._inside += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(fn, *args)
        finally:
            self._inside -= 1


class Attempt:
    """The counters one attempt was counted in; ``undo`` takes it back from each."""

    def __init__(self, live: LiveState, keys: list[str]) -> None:
        self._live = live
        self._keys = keys

    async def undo(self) -> None:
        for key in self._keys:
            await self._live.release(key)


class Throttle:
    def __init__(self, live: LiveState, settings: Settings) -> None:
        self.live = live
        self.settings = settings

    async def login(self, username: str, address: str) -> Attempt:
        """Count a login attempt, or raise ``Refused`` (429) when either limit is reached."""
        s = self.settings
        name = hashlib.sha256(username.casefold().encode(errors="replace")).hexdigest()[:32]
        return await self._count(
            [
                (f"login-name:{name}", s.login_account_limit, s.login_window_s),
                (f"login-addr:{address}", s.login_address_limit, s.login_window_s),
            ],
            "too many failed logins",
        )

    async def register(self, address: str) -> Attempt:
        """Count a registration from ``address``, or raise ``Refused`` (429)."""
        s = self.settings
        limits = [(f"register-addr:{address}", s.register_address_limit, s.register_window_s)]
        return await self._count(limits, "too many registrations from this address")

    async def _count(self, limits: list[tuple[str, int, int]], message: str) -> Attempt:
        counted: list[str] = []
        for key, limit, window_s in limits:
            if limit <= 0:
                continue
            wait_ms = await self.live.hit(key, limit, window_s * 1000)
            if wait_ms:
                await Attempt(self.live, counted).undo()
                retry_after_s = max(1, math.ceil(wait_ms / 1000))
                raise Refused(
                    429,
                    ErrorCode.RATE_LIMITED,
                    f"{message}; try again in {wait_text(retry_after_s)}",
                    retry_after_s,
                )
            counted.append(key)
        return Attempt(self.live, counted)


def client_address(request: Request) -> str:
    """The key of the request's client (``addresses.address_key``)."""
    return address_key(request.client.host if request.client else "")


def wait_text(seconds: int) -> str:
    """A wait for people to read: ``45 s``, ``15 min``."""
    return f"{seconds} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"
