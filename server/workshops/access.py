"""Who may take part in a workshop and who drives it: the checks every command makes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol import ErrorCode, ProtocolError, echo
from protocol.workshop import TooLarge
from server.domain.channels import readable_channel, require_in
from server.domain.permissions import Permission

if TYPE_CHECKING:
    from server.gateway.session import Session
    from server.store import Channel
    from server.workshops.live import LiveWorkshops


async def workshop_channel(session: Session, channel_id: str) -> Channel:
    channel = await readable_channel(session, channel_id)
    if channel.kind != "workshop":
        raise ProtocolError(
            f"'{echo(channel_id)}' is not a workshop channel", code=ErrorCode.BAD_REQUEST
        )
    return channel


async def taking_part(session: Session, channel_id: str) -> Channel:
    """The workshop channel, if the user may take part (vote, raise a hand, ask, pulse)."""
    channel = await workshop_channel(session, channel_id)
    await require_in(session, channel, Permission.PARTICIPATE)
    return channel


async def driving(session: Session, channel_id: str) -> Channel:
    """The workshop channel, if the user may run workshops there."""
    channel = await workshop_channel(session, channel_id)
    await require_in(session, channel, Permission.RUN_WORKSHOPS)
    return channel


def live(session: Session) -> LiveWorkshops:
    return session.agora.workshops


def user_id(session: Session) -> str:
    assert session.user is not None
    return session.user.id


def not_found(what: str, item_id: str) -> ProtocolError:
    return ProtocolError(f"no {what} '{echo(item_id)}' in this workshop", code=ErrorCode.NOT_FOUND)


def conflict(message: str) -> ProtocolError:
    return ProtocolError(message, code=ErrorCode.CONFLICT)


def bad_request(message: str) -> ProtocolError:
    return ProtocolError(message, code=ErrorCode.BAD_REQUEST)


def room_for_one_more(items: list[object], most: int, what: str) -> None:
    """Raise ``too_large`` when a workshop holds ``most`` of ``what`` already."""
    if len(items) >= most:
        raise ProtocolError(f"a workshop holds at most {most} {what}", code=ErrorCode.TOO_LARGE)


def refused(exc: ValueError) -> ProtocolError:
    """A payload part ``protocol.workshop`` refused: ``too_large`` or ``bad_request``."""
    code = ErrorCode.TOO_LARGE if isinstance(exc, TooLarge) else ErrorCode.BAD_REQUEST
    return ProtocolError(str(exc), code=code)
