"""The Store interface: everything Agora keeps, and the channel event logs.

What a Store promises:

- **Acknowledged is durable.** A coroutine that changes state returns only
  after the change is committed to durable storage (it survives ``kill -9`` of
  the process).
- **Gapless offsets.** ``append`` assigns a channel's next offset (1, 2, 3, …)
  atomically with storing the event; two appends never get the same offset and
  no offset is skipped, even under concurrency or across processes.
- **Stored before published.** The caller publishes an event only after
  ``append`` returned it, so any event a subscriber sees can be read back with
  ``read_after``/``read_before`` on any node.
- **Idempotent sends.** An ``append`` with an ``idempotency`` key that was
  already used in that channel stores nothing and returns the original event
  with ``created=False``.
- **Epochs.** ``LogHead.epoch`` names one incarnation of a channel's log; it
  changes whenever a log had to start again from offset 1, and whenever the
  store may have lost acknowledged commits (a power loss with SQLite's
  ``synchronous=NORMAL``, a PostgreSQL crash with ``synchronous_commit = off``:
  see ``server/store/epochs.py``), so an offset never names two events
  within one epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from server.store.workshops import WorkshopStore


class Conflict(Exception):
    """The change would break a uniqueness rule (a taken username, …)."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    display_name: str
    bot: bool = False
    owner_id: str | None = None  # a bot's owner; not part of the public object

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.display_name,
            "bot": self.bot,
        }


@dataclass(frozen=True, slots=True)
class Token:
    """An issued token as stored: never its secret, only the secret's SHA-256."""

    id: str
    user: User
    secret_hash: bytes
    created_ms: int
    last_used_ms: int | None  # written coarsely; None: not used since it was issued
    label: str | None  # what the client said it was when the token was issued
    disabled: bool  # the account is disabled (a bot's: or its owner's)

    @property
    def used_ms(self) -> int:
        """When the token was last known to be in use (issued counts as used)."""
        return self.created_ms if self.last_used_ms is None else self.last_used_ms


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    community_id: str | None  # None for a DM
    name: str
    kind: str = "text"
    parent: str | None = None
    topic: str | None = None
    position: int = 0
    archived: bool = False
    slowmode_s: int = 0
    # threads
    title: str | None = None
    created_by: str | None = None
    root_message: str | None = None  # the message of ``parent`` it started from
    tags: tuple[str, ...] = ()
    resolved: bool = False
    msgs: int = 0  # messages posted in it
    last_ts: int | None = None  # ms of the latest message
    # DMs: the two users
    members: tuple[str, ...] = ()

    @property
    def replies(self) -> int:
        """A thread's messages after its first (its opening post, or the message it came from)."""
        return self.msgs if self.root_message is not None else max(0, self.msgs - 1)

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "position": self.position,
            "archived": self.archived,
            "slowmode_s": self.slowmode_s,
        }
        if self.parent is not None:
            out["parent"] = self.parent
        if self.topic is not None:
            out["topic"] = self.topic
        if self.kind == "thread":
            out["community"] = self.community_id
            out["title"] = self.title
            out["created_by"] = self.created_by
            if self.root_message is not None:
                out["message"] = self.root_message
            out["tags"] = list(self.tags)
            out["resolved"] = self.resolved
            out["replies"] = self.replies
            out["last_ts"] = self.last_ts
        elif self.kind == "dm":
            out["members"] = list(self.members)
        return out


#: What ``Store.update_channel`` may change.
CHANNEL_SETTINGS = ("name", "topic", "position", "archived", "slowmode_s")
#: What ``Store.update_channel`` may also change of a thread.
THREAD_SETTINGS = ("title", "tags", "resolved")


@dataclass(frozen=True, slots=True)
class Membership:
    """A member's standing in a community."""

    role: str
    timeout_until: int | None = None  # ms since the epoch; acting is refused until then

    @classmethod
    def of(cls, row: Sequence[Any] | None) -> Membership | None:
        """The membership a ``MEMBERSHIP`` row says, or None for no row."""
        return None if row is None else cls(*row)


@dataclass(frozen=True, slots=True)
class Invite:
    code: str
    community_id: str
    role: str
    max_uses: int | None
    uses: int
    expires_ts: int | None  # ms since the epoch
    created_by: str

    def public(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "community": self.community_id,
            "role": self.role,
            "max_uses": self.max_uses,
            "uses": self.uses,
            "expires_ts": self.expires_ts,
        }


class InviteRefused(Exception):
    """The invite cannot be used: unknown, expired, used up, or its user is banned."""

    def __init__(self, reason: str, *, unknown: bool = False) -> None:
        super().__init__(reason)
        self.unknown = unknown


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    community_id: str
    ts: int
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]

    def public(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class Community:
    id: str
    name: str

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class CommunityView:
    """A community as one member sees it: its channels and the member's role."""

    id: str
    name: str
    role: str
    channels: tuple[Channel, ...]

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "channels": [c.public() for c in self.channels],
        }


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as it is now: where it is and its object (``message`` of its frames)."""

    channel_id: str
    o: int
    message: dict[str, Any]

    @property
    def author_id(self) -> str:
        return self.message["author"]["id"]


#: A change to a message object, made in place under the store's lock on it.
#: Returns None (nothing changed, nothing written) or ``(t, d)``: the event to
#: append to the message's channel, or ``(None, None)`` to store the change
#: with no event.
MessageChange = Callable[[dict[str, Any]], "tuple[str, dict[str, Any]] | tuple[None, None] | None"]


@dataclass(frozen=True, slots=True)
class ReadState:
    """A user's read marker in a channel, and what is after it."""

    channel_id: str
    o: int  # 0: nothing read
    unread: int  # messages after ``o`` by others, not deleted
    mentions: int  # mentions of the user after ``o``

    def public(self) -> dict[str, Any]:
        return {
            "channel": self.channel_id,
            "o": self.o,
            "unread": self.unread,
            "mentions": self.mentions,
        }


@dataclass(frozen=True, slots=True)
class Resource:
    id: str
    community_id: str
    title: str
    url: str | None
    note: str | None
    tags: tuple[str, ...]
    by: str
    ts: int
    shares: int = 0
    message: tuple[str, str] | None = None  # (channel, message id) that first shared it

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "community": self.community_id,
            "title": self.title,
            "tags": list(self.tags),
            "by": self.by,
            "ts": self.ts,
            "shares": self.shares,
        }
        if self.url is not None:
            out["url"] = self.url
        if self.note is not None:
            out["note"] = self.note
        if self.message is not None:
            out["message"] = {"channel": self.message[0], "id": self.message[1]}
        return out


@dataclass(frozen=True, slots=True)
class LogHead:
    offset: int  # the channel's latest offset; 0 for an empty log
    epoch: str


@dataclass(frozen=True, slots=True)
class Appended:
    """An event as stored: its offset, its frame, and its msgpack encoding."""

    offset: int
    event: dict[str, Any]  # the whole event frame: {op, t, ch, o, d}
    frame: bytes  # msgpack of ``event``, the bytes the broker carries
    created: bool  # False when an idempotency key matched an earlier append


@dataclass(frozen=True, slots=True)
class Publishable:
    """An event to append (``Store.append``'s arguments, for ``append_many``)."""

    channel_id: str
    t: str
    d: dict[str, Any]
    idempotency: tuple[str, str] | None = None
    member_check: MemberCheck | None = None


@dataclass(frozen=True, slots=True)
class MemberCheck:
    """A check of the acting user's membership, made in the append's own transaction.

    A send that needs nothing else from the store checks its permission there:
    one trip to the store instead of two. ``check`` raises to refuse the event.
    """

    community_id: str
    user_id: str
    check: Callable[[Membership | None], None]

    def refusal(self, row: Sequence[Any] | None) -> Exception | None:
        """What ``check`` raised for the member's ``MEMBERSHIP`` row, or None if it passed."""
        try:
            self.check(Membership.of(row))
        except Exception as exc:
            return exc
        return None


class Store(WorkshopStore, Protocol):
    #: Called when every epoch changed while the store was open (live subscribers
    #: must resubscribe); a store that changes them only in ``open`` never calls it.
    on_epochs_rotated: Callable[[], None] | None

    async def open(self) -> None:
        """Create or migrate storage; a fresh store gets its first community.

        If the store may have lost acknowledged commits since it was last open,
        every channel gets a new epoch first.
        """

    async def close(self) -> None: ...

    async def renew_epochs(self) -> int:
        """Give every channel a new epoch, in one statement; how many channels.

        For a log rolled back behind the store's back (a database restored from a
        backup): clients then refetch instead of trusting offsets that may name
        other events now. Live sessions of a running server are not told.
        """

    async def has_users(self) -> bool:
        """Whether any account exists (else the next one becomes the owner)."""

    async def setup_code(self, new: str) -> str:
        """The database's one setup code for its first account: ``new`` unless one is kept.

        Kept in ``meta``, so every process of a deployment has the same one.
        """

    async def check(self) -> None:
        """Raise unless the store can serve (for ``/healthz``)."""

    # accounts
    async def create_user(
        self,
        username: str,
        display_name: str,
        password_hash: str,
        *,
        bot: bool = False,
        owner_id: str | None = None,
        user_id: str | None = None,
        invite: str | None = None,
    ) -> User:
        """Create an account and make it a member of the first community.

        With ``invite`` (a code) it joins that invite's community instead, in
        the same transaction: ``InviteRefused`` leaves no account behind.
        The first account ever becomes the first community's owner. ``password_hash``
        may be ``""`` for an account that cannot log in with a password (bots,
        imported accounts). ``user_id`` keeps an id from another server (import);
        by default a new one is assigned. Raises ``Conflict`` when the username
        (compared case-insensitively) or the id is taken, or when the username
        looks like an existing one (the same ``names.skeleton``).
        """

    async def user(self, user_id: str) -> User | None: ...

    async def user_like(self, username: str) -> User | None:
        """The account whose username is or looks like ``username`` (same skeleton)."""

    async def users(self) -> list[User]:
        """Every account, oldest first."""

    async def credentials(self, username: str) -> tuple[User, str] | None:
        """The account and its password hash, or None."""

    async def set_password(self, user_id: str, password_hash: str) -> None:
        """Replace the account's password hash (``""``: no password login).

        Raises ``KeyError`` for an unknown user. Tokens already issued stay valid
        (``revoke_tokens`` takes them back).
        """

    async def set_disabled(self, user_id: str, disabled_ms: int | None) -> None:
        """Disable the account as of ``disabled_ms`` (None: enable it again).

        Its tokens stay stored: the account's being disabled is what refuses them,
        so enabling it again makes them work again. Raises ``KeyError`` for an
        unknown user.
        """

    async def disabled_ms(self, user_id: str) -> int | None:
        """When the account was disabled, or None (enabled, or no such account)."""

    async def add_token(
        self, token_id: str, user_id: str, secret_hash: bytes, *, label: str | None = None
    ) -> None: ...

    async def token(self, token_id: str) -> Token | None:
        """The token, its user and the hash of its secret, or None if it is not stored."""

    async def tokens(self, token_ids: list[str]) -> list[Token]:
        """The tokens of ``token_ids`` that are stored, in no particular order."""

    async def tokens_of(self, user_id: str) -> list[Token]:
        """Every stored token of the user, oldest first."""

    async def touch_tokens(self, token_ids: list[str], used_ms: int) -> None:
        """Record that the tokens were in use at ``used_ms`` (never moves one back)."""

    async def revoke_tokens(
        self, user_id: str, token_ids: list[str] | None = None, *, keep: str | None = None
    ) -> list[str]:
        """Delete the user's tokens of ``token_ids`` (None: all of them) but ``keep``.

        Tokens of other users are never touched. Returns the ids deleted.
        """

    # communities and channels
    async def create_community(
        self, name: str, owner_id: str, *, community_id: str | None = None
    ) -> Community:
        """A new community with ``owner_id`` as its owner and no channels.

        Raises ``KeyError`` for an unknown owner, ``Conflict`` for a taken id.
        """

    async def communities(self) -> list[Community]:
        """Every community, oldest first."""

    async def rename_community(self, community_id: str, name: str) -> Community:
        """Rename; ``KeyError`` for an unknown community, ``Conflict`` for a taken name."""

    async def community(self, community_id: str) -> Community | None: ...

    async def channels(self, community_id: str) -> list[Channel]:
        """The community's channels by position, then creation (none for an unknown community)."""

    async def communities_of(self, user_id: str) -> list[CommunityView]:
        """The user's communities, oldest first, each with its channels in ``channels`` order."""

    async def set_role(self, community_id: str, user_id: str, role: str) -> None:
        """Make the user a member with ``role``, or change the role of a member.

        Raises ``KeyError`` for an unknown community or user.
        """

    async def members(self, community_id: str) -> list[tuple[User, str]]:
        """The community's members and their roles, in the order they joined."""

    async def membership(self, community_id: str, user_id: str) -> Membership | None:
        """The member's role and time-out, or None if not a member."""

    async def remove_member(
        self, community_id: str, user_id: str, *, banned_by: str | None = None
    ) -> bool:
        """Remove a member (their role and time-out go); with ``banned_by``, also ban them.

        Returns whether they were a member. A ban stays until lifted, member or not.
        """

    async def banned(self, community_id: str, user_id: str) -> bool: ...

    async def set_timeout(self, community_id: str, user_id: str, until_ms: int | None) -> None:
        """Refuse the member's actions until ``until_ms``; raises ``KeyError`` for a non-member."""

    async def create_invite(self, invite: Invite) -> None: ...

    async def accept_invite(self, code: str, user_id: str, now_ms: int) -> tuple[Invite, bool]:
        """Join the invite's community with its role and count the use, in one transaction.

        Returns the invite (as used) and whether the user joined (False: a member
        already, no use counted). Raises ``InviteRefused``.
        """

    async def add_audit(
        self,
        community_id: str,
        actor: str,
        action: str,
        target: str | None,
        details: dict[str, Any],
    ) -> AuditEntry: ...

    async def audit(self, community_id: str, before: int | None, limit: int) -> list[AuditEntry]:
        """The community's audit entries with ``id < before``, newest first, at most ``limit``."""

    async def create_thread(self, thread: Channel) -> None:
        """Store a new thread (or DM-less channel of kind ``thread``); its creator follows it.

        Raises ``KeyError`` for an unknown parent, ``Conflict`` for a taken id.
        """

    async def create_channel(
        self,
        community_id: str,
        name: str,
        *,
        kind: str = "text",
        parent: str | None = None,
        channel_id: str | None = None,
        topic: str | None = None,
    ) -> Channel:
        """A new channel with an empty log and a fresh epoch.

        Raises ``KeyError`` for an unknown community, ``Conflict`` when the
        community has a channel of that name (case-insensitively) or the id is taken.
        """

    async def channel(self, channel_id: str) -> Channel | None: ...

    async def update_channel(self, channel_id: str, changes: dict[str, Any]) -> Channel:
        """Change some ``CHANNEL_SETTINGS``; ``KeyError``, or ``Conflict`` for a taken name."""

    async def role(self, community_id: str, user_id: str) -> str | None:
        """The user's role in the community, or None if not a member."""

    # channel logs
    async def append(
        self,
        channel_id: str,
        t: str,
        d: dict[str, Any],
        *,
        idempotency: tuple[str, str] | None = None,
    ) -> Appended:
        """Store an event at the channel's next offset. See the module docstring."""

    async def append_many(self, events: list[Publishable]) -> list[Appended | Exception]:
        """``append`` each event, in order, committed together.

        Each event is stored or refused on its own (its exception in its place:
        ``KeyError`` for an unknown channel, what its ``member_check`` raised);
        the whole call raises only if the commit failed, and then none of them
        is stored.
        """

    async def read_after(self, channel_id: str, after: int, limit: int) -> list[bytes]:
        """Stored frames with ``o > after``, oldest first, at most ``limit``."""

    async def read_before(self, channel_id: str, before: int | None, limit: int) -> list[bytes]:
        """The newest ``limit`` stored frames with ``o < before``, oldest first."""

    async def log_head(self, channel_id: str) -> LogHead: ...

    # discussions (``append`` of a ``message.created`` also indexes its message)

    async def message(self, message_id: str) -> StoredMessage | None:
        """A message as it is now, or None."""

    async def change_message(
        self, message_id: str, change: MessageChange
    ) -> tuple[Appended | None, StoredMessage]:
        """Apply ``change`` to the message under a lock on it, in one transaction.

        When it changed something, every stored frame of the message is kept in
        its new state and the event ``change`` returned (if any) is appended.
        Returns that event (None if none) and the message as it is now. Raises
        ``KeyError`` for an unknown message.
        """

    async def pinned(self, channel_id: str) -> list[dict[str, Any]]:
        """The channel's pinned message objects, oldest first, each with its ``o``."""

    async def threads(
        self, parent: str, tag: str | None, before: tuple[int, str] | None, limit: int
    ) -> list[Channel]:
        """The parent's threads by latest activity (``last_ts``, then id), newest first,
        after the cursor ``before`` (exclusive), at most ``limit``."""

    async def follow(self, thread_id: str, user_id: str, following: bool) -> bool:
        """Follow or unfollow; whether that changed anything."""

    async def followers(self, thread_id: str) -> list[str]: ...

    async def followed_threads(self, user_id: str) -> list[Channel]: ...

    async def participants(self, thread_id: str, limit: int) -> list[str]:
        """Distinct authors of the thread's messages, first posters first."""

    async def mark_read(self, user_id: str, channel_id: str, o: int) -> int | None:
        """Move the user's marker forward to ``o`` (at most the channel's head).

        Returns the new marker, or None when it did not move.
        """

    async def read_markers(self, channel_id: str) -> list[tuple[str, int]]:
        """Every user's read marker in the channel: (user id, offset)."""

    async def read_states(self, user_id: str, channel_ids: list[str]) -> list[ReadState]:
        """The user's read state in each channel, in the order given."""

    async def add_mentions(self, message: StoredMessage, user_ids: list[str]) -> None: ...

    async def open_dm(self, user_a: str, user_b: str) -> tuple[Channel, bool]:
        """The one DM channel of the pair, and whether it was created now."""

    async def dms_of(self, user_id: str) -> list[Channel]: ...

    async def dms_and_read_states(
        self, user_id: str, channel_ids: list[str]
    ) -> tuple[list[Channel], list[ReadState]]:
        """``dms_of`` and the read states of ``channel_ids`` then of those DMs, in one
        round trip (``identify`` asks for both)."""

    async def share_a_community(self, user_a: str, user_b: str) -> bool: ...

    async def search(
        self,
        community_id: str,
        words: list[str],
        *,
        channel_id: str | None,
        author_id: str | None,
        before: tuple[int, str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Message objects (each with its ``o``) of the community's channels and threads,
        not deleted, that hold every word, newest first (``ts``, then id), after the
        cursor ``before``."""

    async def add_resource(self, resource: Resource) -> None:
        """Raises ``Conflict`` when the community has a resource with that URL."""

    async def share_urls(
        self, community_id: str, urls: list[str], by: str, ts: int, message: tuple[str, str]
    ) -> None:
        """Add each URL as a resource once (titled with itself), or count one more share."""

    async def resources(
        self,
        community_id: str,
        tag: str | None,
        query: str | None,
        before: tuple[int, str] | None,
        limit: int,
    ) -> list[Resource]:
        """Newest first (``ts``, then id), after the cursor ``before``."""
