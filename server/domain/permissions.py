"""Who may do what in a community: the one table every command asks.

Roles, lowest first: ``guest``, ``member``, ``facilitator``, ``admin``,
``owner``. A permission belongs to a least role and every role above it.
Reading needs membership only, and is the one thing a time-out leaves.
Acting on another member (roles, time-outs, kicks, bans) also needs a rank
above theirs, except for the owner; nobody kicks or bans an owner, and only
the owner makes admins and owners.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from protocol import ErrorCode, ProtocolError
from protocol.commands import ROLES
from server.ids import now_ms

if TYPE_CHECKING:
    from server.store import Membership, Store

RANK = {role: rank for rank, role in enumerate(ROLES)}


class Permission(StrEnum):
    READ = "read"  # read channels, mark them read
    PARTICIPATE = "participate"  # react, vote, raise a hand, ask and upvote, pulse
    POST = "post"  # post messages, create threads, add resources, edit/delete own
    MANAGE_CHANNELS = "manage_channels"  # create and update channels, slow mode
    CREATE_INVITES = "create_invites"
    PIN_MESSAGES = "pin_messages"
    MENTION_HERE = "mention_here"  # ``@here``: everyone online
    MANAGE_THREADS = "manage_threads"  # change anyone's thread (title, tags, resolved)
    DELETE_MESSAGES = "delete_messages"  # anyone's
    TIME_OUT = "time_out_members"
    RUN_WORKSHOPS = "run_workshops"
    READ_AUDIT_LOG = "read_audit_log"
    READ_PARTICIPATION = "read_participation"
    KICK = "kick_members"
    BAN = "ban_members"
    SET_ROLES = "set_roles"


#: The least role that has each permission.
LEAST_ROLE: dict[Permission, str] = {
    Permission.READ: "guest",
    Permission.PARTICIPATE: "guest",
    Permission.POST: "member",
    Permission.MANAGE_CHANNELS: "facilitator",
    Permission.CREATE_INVITES: "facilitator",
    Permission.PIN_MESSAGES: "facilitator",
    Permission.MENTION_HERE: "facilitator",
    Permission.MANAGE_THREADS: "facilitator",
    Permission.DELETE_MESSAGES: "facilitator",
    Permission.TIME_OUT: "facilitator",
    Permission.RUN_WORKSHOPS: "facilitator",
    Permission.READ_AUDIT_LOG: "facilitator",
    Permission.READ_PARTICIPATION: "facilitator",
    Permission.KICK: "admin",
    Permission.BAN: "admin",
    Permission.SET_ROLES: "admin",
}


class Forbidden(ProtocolError):
    """A ``forbidden`` answer naming the permission the caller lacks."""

    code = ErrorCode.FORBIDDEN

    def __init__(self, message: str, permission: Permission | str) -> None:
        super().__init__(message, permission=str(permission))


def has(role: str, permission: Permission) -> bool:
    return RANK[role] >= RANK[LEAST_ROLE[permission]]


def check(membership: Membership | None, permission: Permission, now: int) -> None:
    """Raise ``Forbidden`` unless this membership allows ``permission`` now."""
    if membership is None:
        raise Forbidden("you are not a member of this community", Permission.READ)
    if not has(membership.role, permission):
        least = LEAST_ROLE[permission]
        raise Forbidden(
            f"missing permission '{permission}': it needs the role {least} or above",
            permission,
        )
    until = membership.timeout_until
    if permission is not Permission.READ and until is not None and until > now:
        seconds = -(-(until - now) // 1000)
        raise Forbidden(f"you are timed out for {seconds} more seconds", permission)


def may(permission: Permission) -> Callable[[Membership | None], None]:
    """``check`` for ``permission``, as of when it is called (a ``MemberCheck``'s check)."""
    return lambda membership: check(membership, permission, now_ms())


async def require(store: Store, community_id: str, user_id: str, permission: Permission) -> str:
    """Check the user's permission in the community now; their role."""
    membership = await store.membership(community_id, user_id)
    check(membership, permission, now_ms())
    assert membership is not None
    return membership.role


def check_over(actor_role: str, target_role: str | None, permission: Permission) -> None:
    """Raise ``Forbidden`` unless ``actor_role`` may act on a member with ``target_role``."""
    if target_role is None:
        raise ProtocolError("that user is not a member of this community", code=ErrorCode.NOT_FOUND)
    if target_role == "owner" and permission in (Permission.KICK, Permission.BAN):
        raise Forbidden("nobody may kick or ban an owner", permission)
    if actor_role != "owner" and RANK[target_role] >= RANK[actor_role]:
        raise Forbidden(f"a {actor_role} may not act on a {target_role}", permission)


def check_grant(actor_role: str, new_role: str) -> None:
    """Raise ``Forbidden`` unless ``actor_role`` may give ``new_role``."""
    if actor_role != "owner" and RANK[new_role] >= RANK["admin"]:
        raise Forbidden(f"only an owner may make {new_role}s", Permission.SET_ROLES)
