"""Resources: a community's shelf of links and notes, and the links its messages share.

Every ``http(s)://`` URL in a posted message is added once per community (titled
with the URL) or counted once more in ``shares``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError
from protocol.commands import MAX_URL_CHARS, tag_filter, tags_of
from server.domain import pages
from server.domain.permissions import Permission, require
from server.gateway.router import CommandRouter
from server.ids import new_id, now_ms
from server.store import Conflict, Resource

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session

router = CommandRouter()

URL = re.compile(r"https?://[^\s<>]+", re.IGNORECASE)
#: Characters that end a sentence around a URL rather than belong to it.
TRAILING = ".,;:!?)]}'\""
#: Most URLs collected from one message.
MAX_URLS = 10


def urls_in(text: str) -> list[str]:
    """The distinct ``http(s)://`` URLs in a text, in order."""
    found: list[str] = []
    for match in URL.finditer(text):
        url = match.group().rstrip(TRAILING)
        if len(url) > len("https://") and len(url) <= MAX_URL_CHARS and url not in found:
            found.append(url)
    return found[:MAX_URLS]


async def collect(agora: Agora, community_id: str, message: dict[str, Any]) -> None:
    urls = urls_in(message["text"])
    if urls:
        await agora.store.share_urls(
            community_id,
            urls,
            message["author"]["id"],
            message["ts"],
            (message["channel"], message["id"]),
        )


@router.command("resource.add")
async def add(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    store = session.agora.store
    await require(store, d["community"], session.user.id, Permission.POST)
    url = d["url"]
    if url is not None and (urls_in(url) != [url.strip()]):
        raise ProtocolError(
            "field 'url' must be one http:// or https:// URL", code=ErrorCode.BAD_REQUEST
        )
    try:
        tags = tags_of(d["tags"]) or []
    except ValueError as exc:
        raise ProtocolError(str(exc), code=ErrorCode.BAD_REQUEST) from None
    resource = Resource(
        new_id(),
        d["community"],
        d["title"].strip(),
        None if url is None else url.strip(),
        d["note"] or None,
        tuple(tags),
        session.user.id,
        now_ms(),
    )
    try:
        await store.add_resource(resource)
    except Conflict as exc:
        raise ProtocolError(str(exc), code=ErrorCode.CONFLICT) from None
    return {"resource": resource.public()}


@router.command("resource.list")
async def list_resources(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    store = session.agora.store
    await require(store, d["community"], session.user.id, Permission.READ)
    tag, query = tag_filter(d["tag"]), d["query"] or None
    found = await store.resources(
        d["community"], tag, query, pages.cursor(d["before"]), d["limit"] + 1
    )
    page = found[: d["limit"]]
    answer: dict[str, Any] = {"resources": [r.public() for r in page]}
    if len(found) > d["limit"]:
        answer["next"] = pages.next_cursor(page[-1].ts, page[-1].id)
    return answer
