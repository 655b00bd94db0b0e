"""Read state on the server: ``read.mark``, ``read.updated``, and what ``identify`` adds.

A marker per user and channel (followed thread, DM) that only moves forward.
Unread and mention counts are counted from it when asked, so they never drift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.domain import communities
from server.domain.channels import readable_channel
from server.gateway.router import CommandRouter

if TYPE_CHECKING:
    from server.gateway.session import Session
    from server.store import Channel, CommunityView, Store, User

router = CommandRouter()


@router.command("read.mark")
async def mark(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    channel = await readable_channel(session, d["channel"])
    agora = session.agora
    if d["o"] == 0:
        return {}  # no marker is lower
    marker = await agora.store.mark_read(session.user.id, channel.id, d["o"])
    if marker is not None:
        await agora.publish_ephemeral(
            communities.user_topic(session.user.id),
            "read.updated",
            session.user.id,
            {"channel": channel.id, "o": marker},
        )
    return {}


async def on_identify(
    store: Store, user: User, views: list[CommunityView], threads: list[Channel]
) -> dict[str, Any]:
    """``identify``'s ``threads`` (followed), ``dms`` and ``reads`` (one per channel of
    the user's communities, followed thread and DM)."""
    channel_ids = [c.id for view in views for c in view.channels] + [c.id for c in threads]
    dms, states = await store.dms_and_read_states(user.id, channel_ids)
    return {
        "threads": [c.public() for c in threads],
        "dms": [c.public() for c in dms],
        "reads": [state.public() for state in states],
    }
