"""Bot accounts over HTTP: create a bot, list yours, issue a fresh token for one.

A bot is an account with ``bot`` set, an ``owner_id`` (the user who made it)
and no password: it identifies over the gateway with a token like anyone
else, and cannot log in. Owners and admins of a community may create bots;
bots may not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse

from protocol import ErrorCode
from server.domain import communities, names
from server.domain.accounts import (
    Invalid,
    check_account,
    http_error,
    issue_token,
    label_of,
    read_body,
)
from server.domain.tokens import bearer
from server.store import Conflict, User

if TYPE_CHECKING:
    from server.app import Agora

#: Roles that may create bots, in any one community.
CREATORS = frozenset({"owner", "admin"})


async def create(request: Request) -> JSONResponse:
    agora: Agora = request.app.state.agora
    caller = await _caller(request)
    if isinstance(caller, JSONResponse):
        return caller
    if caller.bot:
        return http_error(403, ErrorCode.FORBIDDEN, "bots cannot create bots")
    roles = {view.role for view in await agora.store.communities_of(caller.id)}
    if not roles & CREATORS:
        return http_error(
            403, ErrorCode.FORBIDDEN, "only an owner or admin of a community may create bots"
        )
    body = await read_body(request, required=("username",))
    if isinstance(body, JSONResponse):
        return body
    try:
        display_name = check_account(body["username"], None, body.get("display_name"))
    except Invalid as exc:
        return http_error(400, ErrorCode.BAD_REQUEST, str(exc))
    if (reserved := names.reserved_refusal(body["username"])) is not None:
        return http_error(409, ErrorCode.CONFLICT, reserved)
    try:
        bot = await agora.store.create_user(
            body["username"], display_name, "", bot=True, owner_id=caller.id
        )
    except Conflict as exc:
        return http_error(409, ErrorCode.CONFLICT, str(exc))
    token = await issue_token(agora.store, bot, label_of(request))
    await communities.announce_new_account(agora, bot)
    return JSONResponse({"user": bot.public(), "token": token}, status_code=201)


async def list_mine(request: Request) -> JSONResponse:
    agora: Agora = request.app.state.agora
    caller = await _caller(request)
    if isinstance(caller, JSONResponse):
        return caller
    bots = [u.public() for u in await agora.store.users() if u.bot and u.owner_id == caller.id]
    return JSONResponse({"bots": bots})


async def new_token(request: Request) -> JSONResponse:
    agora: Agora = request.app.state.agora
    caller = await _caller(request)
    if isinstance(caller, JSONResponse):
        return caller
    bot = await agora.store.user(request.path_params["bot_id"])
    if bot is None or not bot.bot or bot.owner_id != caller.id:
        return http_error(404, ErrorCode.NOT_FOUND, "you have no bot with this id")
    token = await issue_token(agora.store, bot, label_of(request))
    return JSONResponse({"token": token}, status_code=201)


async def _caller(request: Request) -> User | JSONResponse:
    """The account behind ``Authorization: Bearer <token>``, or the 401 to answer."""
    token = await bearer(request)
    return token if isinstance(token, JSONResponse) else token.user
