"""``message.search``: words in the messages of one community's channels and threads.

The store does the finding (SQLite FTS5, PostgreSQL full-text search); this module
decides what the caller may see: only a community they are a member of, and so
never a DM.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError
from server.domain import pages
from server.domain.channels import readable_channel
from server.domain.permissions import Permission, require
from server.gateway.router import CommandRouter

if TYPE_CHECKING:
    from server.gateway.session import Session

router = CommandRouter()

#: Most words one query looks for.
MAX_WORDS = 16


def words_of(query: str) -> list[str]:
    return re.findall(r"\w+", query.lower())[:MAX_WORDS]


@router.command("message.search")
async def search(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    store = session.agora.store
    await require(store, d["community"], session.user.id, Permission.READ)
    if d["channel"] is not None:
        channel = await readable_channel(session, d["channel"])
        if channel.community_id != d["community"]:
            raise ProtocolError("that channel is not in this community", code=ErrorCode.BAD_REQUEST)
    words = words_of(d["query"])
    if not words:
        raise ProtocolError("the query has no words to look for", code=ErrorCode.BAD_REQUEST)
    found = await store.search(
        d["community"],
        words,
        channel_id=d["channel"],
        author_id=d["author"],
        before=pages.cursor(d["before"]),
        limit=d["limit"] + 1,
    )
    page = found[: d["limit"]]
    answer: dict[str, Any] = {"messages": page}
    if len(found) > d["limit"]:
        answer["next"] = pages.next_cursor(page[-1]["ts"], page[-1]["id"])
    return answer
