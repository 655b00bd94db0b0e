"""The first owner: on a fresh database served beyond loopback, a setup code.

The first account of a database becomes the owner of its first community.
Served on a loopback address (a local trial, the tests) anyone who can reach
it is on the machine already, and the first to register is the owner. Served
on any other address, a stranger could be first: then the first registration
must carry the database's one-time setup code, which ``agora serve`` writes
to its log at start (as Jupyter does with its token), and without it the
answer is ``403`` with ``reason`` ``setup_code``. The code is kept in the
store's ``meta``, so every process of a scaled deployment logs and accepts
the same one. Once any account exists no code is asked again; the operator
can also make the first account (the owner) with ``agora user create``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from typing import Any

from starlette.responses import JSONResponse

from protocol import ErrorCode
from server.store import Store

log = logging.getLogger("agora.setup")

#: The field of a registration that carries the setup code.
FIELD = "setup_code"
#: The ``reason`` of the 403 that asks for it.
REASON = "setup_code"


def loopback(host: str) -> bool:
    """Whether ``host`` (the address served on) is reachable from this machine only."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class FirstOwner:
    def __init__(self, store: Store, host: str) -> None:
        self.store = store
        self.host = host
        #: the code while the database has no account and is served beyond loopback
        self.code: str | None = None

    async def start(self) -> None:
        """On a fresh database served beyond loopback: fetch or make the code, and log it."""
        if loopback(self.host) or await self.store.has_users():
            return
        self.code = await self.store.setup_code(secrets.token_hex(10))
        log.warning(
            "this database has no account yet and is served on %s: the first account to"
            " register becomes its owner and must give the setup code %s (in the web"
            " client's 'Setup code' field, or as \"%s\" in POST /api/v1/auth/register);"
            " or create the owner with: agora user create USERNAME",
            self.host,
            self.code,
            FIELD,
        )

    async def refusal(self, body: dict[str, Any]) -> JSONResponse | None:
        """The 403 for a registration that needs the setup code and lacks it, else None."""
        if self.code is None:
            return None
        if await self.store.has_users():
            self.code = None  # the owner exists: never asked again
            return None
        given = body.get(FIELD)
        if isinstance(given, str) and hmac.compare_digest(
            given.strip().lower().encode(errors="replace"), self.code.encode()
        ):
            return None
        message = (
            "the setup code is wrong"
            if given
            else "the first account of this server needs the setup code"
        )
        error = {
            "code": ErrorCode.FORBIDDEN.value,
            "message": message + ": the server wrote it to its log when it started",
            "reason": REASON,
        }
        return JSONResponse({"error": error}, status_code=403)
