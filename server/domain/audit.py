"""The audit log: every moderation, role and structure change, and ``audit.list``.

Entries are written by the domain functions that make the changes, the
admin CLI's included, and read newest first, a page at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol import RequestError
from server.domain.permissions import Permission, require
from server.gateway.router import CommandRouter

if TYPE_CHECKING:
    from server.gateway.session import Session
    from server.store import AuditEntry, Store

router = CommandRouter()

#: The actor of changes the operator makes with the admin CLI.
OPERATOR = "operator"


async def write(
    store: Store,
    community_id: str,
    actor: str,
    action: str,
    target: str | None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    return await store.add_audit(community_id, actor, action, target, details or {})


@router.command("audit.list")
async def list_entries(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    store = session.agora.store
    await require(store, d["community"], session.user.id, Permission.READ_AUDIT_LOG)
    before = d["before"]
    if before is not None and not before.isdigit():
        raise RequestError("field 'before' must be a cursor from an earlier page")
    entries = await store.audit(d["community"], None if before is None else int(before), d["limit"])
    answer: dict[str, Any] = {"entries": [e.public() for e in entries]}
    if len(entries) == d["limit"]:
        answer["next"] = str(entries[-1].id)
    return answer
