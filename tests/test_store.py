"""The Store contract (server/store/base.py), run against every Store implementation.

Every test but the last section talks to the store only through the ``Store``
interface, through the ``store`` fixture and, where a test needs a second
instance on the same storage, through its ``backend``.
The last section tests what only the SQLite store promises: group commit.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from server.errors import Unavailable
from server.store import (
    Appended,
    Channel,
    Conflict,
    Invite,
    InviteRefused,
    LogHead,
    MemberCheck,
    Membership,
    Publishable,
    ReadState,
    Resource,
    Store,
    StoredMessage,
    User,
)
from server.store.migrate import HEAD
from server.store.postgres import PostgresStore
from server.store.sqlite import BATCH_MAX, SQLiteStore
from tests.conftest import PostgresProcess, timeout


class SQLiteBackend:
    """Where an SQLite store keeps its data: one file."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "store.db"

    def make(self) -> SQLiteStore:
        """A new, unopened store on the same file."""
        return SQLiteStore(str(self.path))


class PostgresBackend:
    """Where a PostgreSQL store keeps its data: a new database on a private server."""

    def __init__(self, postgres: PostgresProcess) -> None:
        self.url = postgres.create_database()

    def make(self) -> PostgresStore:
        """A new, unopened store on the same database."""
        return PostgresStore(self.url)


@pytest.fixture
def _backend_slot() -> dict[str, Any]:
    return {}


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, _backend_slot: dict[str, Any]
) -> AsyncIterator[Store]:
    """An opened store on fresh storage; closed after the test."""
    if request.param == "postgres":
        backend: Any = PostgresBackend(request.getfixturevalue("postgres"))
    else:
        backend = SQLiteBackend(tmp_path)
    _backend_slot["backend"] = backend
    opened = backend.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def backend(store: Store, _backend_slot: dict[str, Any]) -> Any:
    """The storage behind ``store``: ``make()`` another instance on it."""
    return _backend_slot["backend"]


async def owner_and_general(store: Store) -> tuple[User, str, str]:
    """Create the first account; return it, the community id and the general channel id."""
    user = await store.create_user("owner", "The Owner", "hash-of-owner")
    (community,) = await store.communities_of(user.id)
    general = next(c.id for c in community.channels if c.name == "general")
    return user, community.id, general


def offsets(frames: list[bytes]) -> list[int]:
    return [msgpack.unpackb(f, raw=False)["o"] for f in frames]


# gapless offsets


async def test_offsets_start_at_one_and_stay_gapless_under_500_concurrent_appends(
    store: Store,
) -> None:
    _, community, general = await owner_and_general(store)
    other = (await store.create_channel(community, "other")).id
    channels = [general, other]
    results = await asyncio.gather(
        *(store.append(channels[i % 2], "message.created", {"i": i}) for i in range(500))
    )
    for channel in channels:
        mine = [(r.offset, r.event["d"]["i"]) for r in results if r.event["ch"] == channel]
        assert sorted(o for o, _ in mine) == list(range(1, 251))
        assert (await store.log_head(channel)).offset == 250
        stored = [msgpack.unpackb(f, raw=False) for f in await store.read_after(channel, 0, 1000)]
        assert [e["o"] for e in stored] == list(range(1, 251))
        # each offset holds the event that append said it holds
        assert [(e["o"], e["d"]["i"]) for e in stored] == sorted(mine)


async def test_an_empty_log_has_offset_zero_and_no_frames(store: Store) -> None:
    _, _, general = await owner_and_general(store)
    head = await store.log_head(general)
    assert head.offset == 0
    assert isinstance(head.epoch, str) and head.epoch
    assert await store.read_after(general, 0, 10) == []
    assert await store.read_before(general, None, 10) == []


# what append returns


async def test_append_returns_the_event_and_its_msgpack_frame(store: Store) -> None:
    _, _, general = await owner_and_general(store)
    d = {"message": {"id": "m1", "text": "héllo", "n": [1, 2, {"x": None}]}}
    first = await store.append(general, "message.created", d)
    second = await store.append(general, "message.created", {"k": "v"})
    assert first.created and second.created
    assert (first.offset, second.offset) == (1, 2)
    assert first.event == {"op": "event", "t": "message.created", "ch": general, "o": 1, "d": d}
    assert isinstance(first.frame, bytes)
    assert msgpack.unpackb(first.frame, raw=False) == first.event
    assert msgpack.unpackb(second.frame, raw=False)["o"] == 2
    # what is read back is the very frame append returned
    assert await store.read_after(general, 0, 10) == [first.frame, second.frame]


# idempotency


async def test_a_reused_idempotency_key_returns_the_original_and_stores_nothing(
    store: Store,
) -> None:
    user, _, general = await owner_and_general(store)
    original = await store.append(
        general, "message.created", {"text": "a"}, idempotency=(user.id, "n1")
    )
    await store.append(general, "message.created", {"text": "b"})
    head = await store.log_head(general)
    retry = await store.append(
        general, "message.created", {"text": "a, again"}, idempotency=(user.id, "n1")
    )
    assert original.created is True
    assert retry.created is False
    assert (retry.offset, retry.event, retry.frame) == (
        original.offset,
        original.event,
        original.frame,
    )
    assert await store.log_head(general) == head
    assert offsets(await store.read_after(general, 0, 10)) == [1, 2]


async def test_the_same_nonce_of_another_user_creates_a_new_event(store: Store) -> None:
    owner, _, general = await owner_and_general(store)
    other = await store.create_user("other", "Other", "hash")
    mine = await store.append(general, "message.created", {"t": 1}, idempotency=(owner.id, "n"))
    theirs = await store.append(general, "message.created", {"t": 2}, idempotency=(other.id, "n"))
    assert theirs.created is True
    assert (mine.offset, theirs.offset) == (1, 2)
    assert (await store.log_head(general)).offset == 2


async def test_the_same_nonce_in_another_channel_creates_a_new_event(store: Store) -> None:
    owner, community, general = await owner_and_general(store)
    other = (await store.create_channel(community, "other")).id
    await store.append(general, "message.created", {}, idempotency=(owner.id, "n"))
    there = await store.append(other, "message.created", {}, idempotency=(owner.id, "n"))
    assert there.created is True
    assert there.offset == 1
    assert (await store.log_head(other)).offset == 1


async def test_concurrent_appends_with_one_idempotency_key_create_one_event(
    store: Store,
) -> None:
    owner, _, general = await owner_and_general(store)
    results = await asyncio.gather(
        *(
            store.append(general, "message.created", {"try": i}, idempotency=(owner.id, "same"))
            for i in range(20)
        )
    )
    assert sum(r.created for r in results) == 1
    assert {r.offset for r in results} == {1}
    assert len({r.frame for r in results}) == 1
    assert (await store.log_head(general)).offset == 1


# appending together


async def test_append_many_stores_each_event_or_its_refusal_in_its_place(store: Store) -> None:
    """A used key returns the original, an unknown channel refuses with KeyError, a
    ``MemberCheck`` sees the member's standing as stored and refuses that event alone."""
    owner, community, general = await owner_and_general(store)
    guest = await store.create_user("guest", "Guest", "h")
    await store.set_role(community, guest.id, "guest")
    await store.set_timeout(community, owner.id, 123)
    seen: list[Membership | None] = []

    def members_only(membership: Membership | None) -> None:
        seen.append(membership)
        if membership is None or membership.role == "guest":
            raise PermissionError("members only")

    first = await store.append(general, "message.created", {"i": 0}, idempotency=(owner.id, "n"))
    outcomes = await store.append_many(
        [
            Publishable(
                general,
                "message.created",
                {"i": 1},
                None,
                MemberCheck(community, owner.id, members_only),
            ),
            Publishable(
                general,
                "message.created",
                {"i": 2},
                None,
                MemberCheck(community, guest.id, members_only),
            ),
            Publishable("nowhere", "message.created", {"i": 3}),
            Publishable(general, "message.created", {"i": 4}, (owner.id, "n")),
            Publishable(
                general,
                "message.created",
                {"i": 5},
                None,
                MemberCheck(community, "nobody", members_only),
            ),
            Publishable(general, "message.created", {"i": 6}),
        ]
    )
    stored, refused_guest, unknown, retried, refused_nobody, last = outcomes
    assert isinstance(stored, Appended) and isinstance(last, Appended)
    assert (stored.offset, last.offset) == (2, 3)
    assert isinstance(refused_guest, PermissionError)
    assert isinstance(refused_nobody, PermissionError)
    assert isinstance(unknown, KeyError)
    assert isinstance(retried, Appended) and not retried.created
    assert retried.event == first.event
    assert seen == [Membership("owner", 123), Membership("guest", None), None]
    stored_is = [
        msgpack.unpackb(f, raw=False)["d"]["i"] for f in await store.read_after(general, 0, 10)
    ]
    assert stored_is == [0, 1, 6]


# paging


async def test_read_after_pages_oldest_first_within_limit_and_bounds(store: Store) -> None:
    _, _, general = await owner_and_general(store)
    for i in range(10):
        await store.append(general, "message.created", {"i": i})
    assert offsets(await store.read_after(general, 0, 3)) == [1, 2, 3]
    assert offsets(await store.read_after(general, 3, 3)) == [4, 5, 6]
    assert offsets(await store.read_after(general, 8, 10)) == [9, 10]
    assert await store.read_after(general, 10, 10) == []
    assert await store.read_after(general, 50, 10) == []
    assert offsets(await store.read_after(general, 0, 100)) == list(range(1, 11))


async def test_read_before_returns_the_newest_below_the_bound_oldest_first(store: Store) -> None:
    _, _, general = await owner_and_general(store)
    for i in range(10):
        await store.append(general, "message.created", {"i": i})
    assert offsets(await store.read_before(general, None, 3)) == [8, 9, 10]
    assert offsets(await store.read_before(general, 8, 3)) == [5, 6, 7]
    assert offsets(await store.read_before(general, 3, 10)) == [1, 2]
    assert await store.read_before(general, 1, 10) == []
    assert offsets(await store.read_before(general, None, 100)) == list(range(1, 11))
    assert offsets(await store.read_before(general, 11, 2)) == [9, 10]


async def test_paging_stays_within_one_channel(store: Store) -> None:
    _, community, general = await owner_and_general(store)
    other = (await store.create_channel(community, "other")).id
    for i in range(3):
        await store.append(general, "message.created", {"i": i})
        await store.append(other, "message.created", {"i": i})
    for channel in (general, other):
        frames = await store.read_after(channel, 0, 100) + await store.read_before(
            channel, None, 100
        )
        assert {msgpack.unpackb(f, raw=False)["ch"] for f in frames} == {channel}
        assert offsets(await store.read_before(channel, None, 100)) == [1, 2, 3]


# log head and epochs


async def test_log_head_follows_appends_and_its_epoch_is_stable(store: Store) -> None:
    _, _, general = await owner_and_general(store)
    before = await store.log_head(general)
    for _ in range(3):
        await store.append(general, "message.created", {})
    after = await store.log_head(general)
    assert after.offset == 3
    assert after.epoch == before.epoch


async def test_the_epoch_survives_closing_and_reopening_the_store(
    store: Store, backend: Any
) -> None:
    _, _, general = await owner_and_general(store)
    await store.append(general, "message.created", {})
    head = await store.log_head(general)
    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.log_head(general) == head
    finally:
        await reopened.close()


# durability


async def test_everything_acknowledged_is_there_after_reopening(store: Store, backend: Any) -> None:
    owner, community, general = await owner_and_general(store)
    await store.add_token("tok1", owner.id, b"\x01" * 32)
    appended = [await store.append(general, "message.created", {"i": i}) for i in range(5)]
    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.read_after(general, 0, 10) == [a.frame for a in appended]
        assert (await reopened.log_head(general)).offset == 5
        assert await reopened.credentials("owner") == (owner, "hash-of-owner")
        token = await reopened.token("tok1")
        assert token is not None and (token.user, token.secret_hash) == (owner, b"\x01" * 32)
        assert await reopened.role(community, owner.id) == "owner"
        # reopening does not bootstrap a second community or channel
        (view,) = await reopened.communities_of(owner.id)
        assert [c.name for c in view.channels] == ["general"]
        # and offsets carry on where they were
        assert (await reopened.append(general, "message.created", {})).offset == 6
    finally:
        await reopened.close()


async def test_an_acknowledged_append_is_visible_to_another_instance_at_once(
    store: Store, backend: Any
) -> None:
    _, _, general = await owner_and_general(store)
    appended = await store.append(general, "message.created", {"x": 1})
    second = backend.make()
    await second.open()
    try:
        assert await second.read_after(general, 0, 10) == [appended.frame]
    finally:
        await second.close()


async def test_check_passes_on_an_open_store_and_raises_on_a_closed_one(
    store: Store, backend: Any
) -> None:
    assert await store.check() is None
    other = backend.make()
    await other.open()
    await other.close()
    with pytest.raises(RuntimeError, match="not open"):
        await other.check()


# accounts


async def test_the_first_user_owns_the_one_community_with_general_and_later_ones_are_members(
    store: Store,
) -> None:
    first = await store.create_user("first", "First", "h1")
    second = await store.create_user("second", "Second", "h2")
    third = await store.create_user("third", "Third", "h3", bot=True)
    (view1,) = await store.communities_of(first.id)
    (view2,) = await store.communities_of(second.id)
    (view3,) = await store.communities_of(third.id)
    assert view1.id == view2.id == view3.id
    assert (view1.role, view2.role, view3.role) == ("owner", "member", "member")
    assert [c.name for c in view1.channels] == ["general"]
    assert view1.channels[0].community_id == view1.id
    assert view1.channels == view2.channels
    assert await store.role(view1.id, first.id) == "owner"
    assert await store.role(view1.id, second.id) == "member"


async def test_create_user_returns_the_account(store: Store) -> None:
    user = await store.create_user("Bot_1", "A Bot", "hash", bot=True)
    assert isinstance(user.id, str) and user.id
    assert (user.username, user.display_name, user.bot) == ("Bot_1", "A Bot", True)
    assert user.public() == {"id": user.id, "username": "Bot_1", "name": "A Bot", "bot": True}
    human = await store.create_user("human", "Human", "hash")
    assert human.bot is False
    assert human.id != user.id


@pytest.mark.parametrize("taken", ["alice", "ALICE", "Alice", "aLiCe"])
async def test_a_taken_username_in_any_case_raises_conflict(store: Store, taken: str) -> None:
    alice = await store.create_user("Alice", "Alice", "h")
    with pytest.raises(Conflict):
        await store.create_user(taken, "Impostor", "h2")
    # nothing of the refused account was kept
    assert await store.credentials("Alice") == (alice, "h")
    # and the refused attempt did not disturb who comes next
    bob = await store.create_user("bob", "Bob", "h3")
    (view,) = await store.communities_of(bob.id)
    assert view.role == "member"


async def test_credentials_return_the_account_and_its_password_hash(store: Store) -> None:
    user = await store.create_user("carol", "Carol", "$argon2id$fake")
    assert await store.credentials("carol") == (user, "$argon2id$fake")
    assert await store.credentials("nobody") is None


async def test_a_token_resolves_to_its_user_and_secret_hash(store: Store) -> None:
    user = await store.create_user("dave", "Dave", "h")
    other = await store.create_user("erin", "Erin", "h")
    await store.add_token("t1", user.id, b"secret-hash-1")
    await store.add_token("t2", user.id, b"secret-hash-2")
    await store.add_token("t3", other.id, b"secret-hash-3")
    for token_id, owner, secret_hash in [
        ("t1", user, b"secret-hash-1"),
        ("t2", user, b"secret-hash-2"),
        ("t3", other, b"secret-hash-3"),
    ]:
        token = await store.token(token_id)
        assert token is not None
        assert (token.id, token.user, token.secret_hash) == (token_id, owner, secret_hash)
        assert (token.last_used_ms, token.label, token.disabled) == (None, None, False)
    assert await store.token("nope") is None


async def test_tokens_are_listed_touched_and_revoked_only_for_their_user(store: Store) -> None:
    user = await store.create_user("tina", "Tina", "h")
    other = await store.create_user("uma", "Uma", "h")
    await store.add_token("a", user.id, b"1", label="Firefox")
    await store.add_token("b", user.id, b"2")
    await store.add_token("c", user.id, b"3")
    await store.add_token("d", other.id, b"4")
    assert [t.id for t in await store.tokens_of(user.id)] == ["a", "b", "c"]
    assert (await store.token("a")).label == "Firefox"  # type: ignore[union-attr]
    assert sorted(t.id for t in await store.tokens(["a", "d", "gone"])) == ["a", "d"]

    await store.touch_tokens(["a", "b"], 5_000)
    await store.touch_tokens(["a"], 4_000)  # never moves back
    assert [t.last_used_ms for t in await store.tokens_of(user.id)] == [5_000, 5_000, None]

    assert await store.revoke_tokens(other.id, ["a"]) == []  # not the other user's
    assert await store.revoke_tokens(user.id, ["a", "d"]) == ["a"]
    assert sorted(await store.revoke_tokens(user.id, keep="c")) == ["b"]
    assert [t.id for t in await store.tokens_of(user.id)] == ["c"]
    assert await store.revoke_tokens(user.id) == ["c"]
    assert [t.id for t in await store.tokens(["a", "b", "c", "d"])] == ["d"]


async def test_a_disabled_account_shows_on_its_tokens_until_enabled(store: Store) -> None:
    user = await store.create_user("vic", "Vic", "h")
    await store.add_token("v1", user.id, b"1")
    assert await store.disabled_ms(user.id) is None
    await store.set_disabled(user.id, 1234)
    assert await store.disabled_ms(user.id) == 1234
    assert (await store.token("v1")).disabled  # type: ignore[union-attr]
    await store.set_disabled(user.id, None)
    assert not (await store.token("v1")).disabled  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        await store.set_disabled("nobody", 1)
    assert await store.disabled_ms("nobody") is None


async def test_unknown_channel_role_and_community_are_none(store: Store) -> None:
    user, community, general = await owner_and_general(store)
    assert await store.channel("no-such-channel") is None
    assert await store.role(community, "no-such-user") is None
    assert await store.role("no-such-community", user.id) is None
    assert await store.communities_of("no-such-user") == []
    channel = await store.channel(general)
    assert channel is not None
    assert (channel.id, channel.community_id, channel.name, channel.kind) == (
        general,
        community,
        "general",
        "text",
    )


# users, communities, members and channels


async def test_users_are_listed_oldest_first_and_found_by_id(store: Store) -> None:
    made = [await store.create_user(f"user{i}", f"User {i}", "h") for i in range(5)]
    assert await store.users() == made
    assert await store.user(made[3].id) == made[3]
    assert await store.user("no-such-user") is None


async def test_a_kept_user_id_and_a_bot_owner_round_trip(store: Store) -> None:
    owner = await store.create_user("owner", "Owner", "h")
    bot = await store.create_user(
        "helper", "Helper", "", bot=True, owner_id=owner.id, user_id="4242424242"
    )
    assert (bot.id, bot.bot, bot.owner_id) == ("4242424242", True, owner.id)
    assert await store.user(bot.id) == bot
    assert await store.credentials("helper") == (bot, "")
    assert owner.owner_id is None and (await store.user(owner.id)) == owner
    # owner_id is not part of the public object
    assert bot.public() == {"id": bot.id, "username": "helper", "name": "Helper", "bot": True}


async def test_a_taken_user_id_raises_conflict_and_keeps_nothing(store: Store) -> None:
    first = await store.create_user("first", "First", "h")
    with pytest.raises(Conflict):
        await store.create_user("second", "Second", "h", user_id=first.id)
    assert await store.credentials("second") is None
    assert await store.users() == [first]


async def test_set_password_replaces_the_hash_and_unknown_users_raise_keyerror(
    store: Store,
) -> None:
    user = await store.create_user("imported", "Imported", "")
    await store.set_password(user.id, "$argon2id$new")
    assert await store.credentials("imported") == (user, "$argon2id$new")
    with pytest.raises(KeyError):
        await store.set_password("no-such-user", "h")


async def test_create_community_makes_the_owner_its_first_member(store: Store) -> None:
    first, bootstrap, _ = await owner_and_general(store)
    other = await store.create_user("other", "Other", "h")
    club = await store.create_community("Book club", other.id)
    assert club.public() == {"id": club.id, "name": "Book club"}
    assert await store.community(club.id) == club
    assert await store.community("no-such-community") is None
    assert [c.id for c in await store.communities()] == [bootstrap, club.id]
    assert await store.members(club.id) == [(other, "owner")]
    assert await store.role(club.id, other.id) == "owner"
    # a new community has no channels, and the first user still owns the first one
    views = {v.id: v for v in await store.communities_of(other.id)}
    assert views[club.id].channels == ()
    assert await store.role(bootstrap, first.id) == "owner"
    assert (await store.communities())[0].id == bootstrap
    later = await store.create_user("later", "Later", "h")
    assert [v.id for v in await store.communities_of(later.id)] == [bootstrap]


async def test_create_community_keeps_an_id_and_refuses_a_taken_one(store: Store) -> None:
    owner, bootstrap, _ = await owner_and_general(store)
    kept = await store.create_community("Kept", owner.id, community_id="777")
    assert kept.id == "777"
    for taken in ("777", bootstrap):
        with pytest.raises(Conflict):
            await store.create_community("Again", owner.id, community_id=taken)
    assert [c.id for c in await store.communities()] == [bootstrap, "777"]


async def test_create_community_with_an_unknown_owner_raises_keyerror(store: Store) -> None:
    await owner_and_general(store)
    with pytest.raises(KeyError):
        await store.create_community("Nobody's", "no-such-user")
    assert len(await store.communities()) == 1


async def test_members_come_in_join_order_with_their_roles(store: Store) -> None:
    owner, community, _ = await owner_and_general(store)
    joined = [await store.create_user(f"m{i}", f"M{i}", "h") for i in range(20)]
    assert await store.members(community) == [(owner, "owner")] + [(u, "member") for u in joined]
    assert await store.members("no-such-community") == []


async def test_set_role_adds_a_member_or_changes_a_role(store: Store) -> None:
    owner, bootstrap, _ = await owner_and_general(store)
    ann = await store.create_user("ann", "Ann", "h")
    bob = await store.create_user("bob", "Bob", "h")
    club = await store.create_community("Club", owner.id)
    await store.set_role(club.id, bob.id, "member")
    await store.set_role(club.id, ann.id, "admin")
    await store.set_role(club.id, bob.id, "admin")  # a change keeps the join order
    assert await store.members(club.id) == [(owner, "owner"), (bob, "admin"), (ann, "admin")]
    await store.set_role(bootstrap, ann.id, "admin")
    assert await store.role(bootstrap, ann.id) == "admin"
    assert [v.role for v in await store.communities_of(ann.id)] == ["admin", "admin"]


async def test_set_role_with_an_unknown_community_or_user_raises_keyerror(store: Store) -> None:
    owner, community, _ = await owner_and_general(store)
    with pytest.raises(KeyError):
        await store.set_role("no-such-community", owner.id, "member")
    with pytest.raises(KeyError):
        await store.set_role(community, "no-such-user", "member")
    assert await store.members(community) == [(owner, "owner")]


async def test_channels_come_in_creation_order_with_empty_logs(store: Store) -> None:
    owner, community, general = await owner_and_general(store)
    made = [await store.create_channel(community, f"room-{i}") for i in range(5)]
    thread = Channel(
        "999", community, "999", "thread", made[0].id, title="A thread", created_by=owner.id
    )
    await store.create_thread(thread)
    (view,) = await store.communities_of(owner.id)
    # threads are not the community's channels: their parent lists them
    assert [c.id for c in view.channels] == [general, *(c.id for c in made)]
    assert await store.channels(community) == list(view.channels)
    assert await store.channels("no-such-community") == []
    assert await store.channel("999") == thread
    assert [t.id for t in await store.threads(made[0].id, None, None, 10)] == ["999"]
    assert thread.public() == {
        "id": "999",
        "name": "999",
        "kind": "thread",
        "parent": made[0].id,
        "position": 0,
        "archived": False,
        "slowmode_s": 0,
        "community": community,
        "title": "A thread",
        "created_by": owner.id,
        "tags": [],
        "resolved": False,
        "replies": 0,
        "last_ts": None,
    }
    heads = [await store.log_head(c.id) for c in made]
    assert [h.offset for h in heads] == [0] * 5
    # each log is an incarnation of its own
    assert len({h.epoch for h in heads} | {(await store.log_head(general)).epoch}) == 6
    assert (await store.append(made[2].id, "message.created", {})).offset == 1


@pytest.mark.parametrize("taken", ["general", "GENERAL", "General"])
async def test_a_taken_channel_name_in_any_case_raises_conflict(store: Store, taken: str) -> None:
    owner, community, _ = await owner_and_general(store)
    with pytest.raises(Conflict):
        await store.create_channel(community, taken)
    # the same name is free in another community
    club = await store.create_community("Club", owner.id)
    there = await store.create_channel(club.id, taken)
    (_, club_view) = await store.communities_of(owner.id)
    assert club_view.channels == (there,)


async def test_a_taken_channel_id_raises_conflict(store: Store) -> None:
    owner, community, general = await owner_and_general(store)
    with pytest.raises(Conflict):
        await store.create_channel(community, "fresh", channel_id=general)
    (view,) = await store.communities_of(owner.id)
    assert [c.name for c in view.channels] == ["general"]


async def test_create_channel_in_an_unknown_community_raises_keyerror(store: Store) -> None:
    await owner_and_general(store)
    with pytest.raises(KeyError):
        await store.create_channel("no-such-community", "room")


# SQLite only: group commit


async def test_sqlite_group_commit_batches_1000_concurrent_appends_gaplessly(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "batch.db"))
    entered, release = threading.Event(), threading.Event()
    await store.open()
    try:
        _, _, general = await owner_and_general(store)
        batches: list[int] = []
        run_batch = store._run_batch

        def counting(db: sqlite3.Connection, batch: list[Any]) -> list[Any]:
            batches.append(len(batch))
            return run_batch(db, batch)

        store._run_batch = counting  # type: ignore[method-assign]

        def hold(db: sqlite3.Connection) -> None:
            entered.set()
            release.wait(30)

        # Hold the worker thread in a job of its own, so that the 1000 appends
        # queue up behind it and the worker finds them all waiting once let go.
        holder = asyncio.ensure_future(store._call(hold))
        await asyncio.to_thread(entered.wait, 30)
        appends = [
            asyncio.ensure_future(store.append(general, "message.created", {"i": i}))
            for i in range(1000)
        ]
        while store._jobs.qsize() < 1000:  # each task queues its job on its first step
            await asyncio.sleep(0)
        release.set()
        await holder
        results = await asyncio.gather(*appends)
    finally:
        release.set()
        await store.close()
    assert sorted(r.offset for r in results) == list(range(1, 1001))
    # one transaction for the holder, then the 1000 appends in as few as BATCH_MAX allows
    assert batches == [1] + [BATCH_MAX] * (1000 // BATCH_MAX) + (
        [1000 % BATCH_MAX] if 1000 % BATCH_MAX else []
    )
    assert len(batches) - 1 == math.ceil(1000 / BATCH_MAX)


async def test_sqlite_a_failing_job_in_a_batch_fails_alone(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "alone.db"))
    await store.open()
    try:
        _, _, general = await owner_and_general(store)
        jobs = [store.append(general, "message.created", {"i": i}) for i in range(100)]
        jobs.insert(50, store.append("no-such-channel", "message.created", {}))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1
        assert isinstance(results[50], KeyError)
        ok = [r for r in results if not isinstance(r, BaseException)]
        assert sorted(r.offset for r in ok) == list(range(1, 101))
        assert offsets(await store.read_after(general, 0, 1000)) == list(range(1, 101))
    finally:
        await store.close()


async def test_sqlite_opens_a_database_of_the_first_release_and_migrates_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE users(id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            display_name TEXT NOT NULL, password_hash TEXT NOT NULL,
            bot INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL);
        CREATE TABLE communities(id TEXT PRIMARY KEY, name TEXT NOT NULL,
            created_ms INTEGER NOT NULL);
        CREATE TABLE members(community_id TEXT NOT NULL, user_id TEXT NOT NULL,
            role TEXT NOT NULL, joined_ms INTEGER NOT NULL,
            PRIMARY KEY(community_id, user_id)) WITHOUT ROWID;
        CREATE TABLE channels(id TEXT PRIMARY KEY, community_id TEXT NOT NULL,
            name TEXT NOT NULL, kind TEXT NOT NULL, parent TEXT, epoch TEXT NOT NULL,
            head INTEGER NOT NULL DEFAULT 0);
        INSERT INTO meta VALUES ('default_community', 'c1');
        INSERT INTO communities VALUES ('c1', 'Old', 1);
        INSERT INTO channels VALUES ('g1', 'c1', 'general', 'text', NULL, 'e1', 0);
        INSERT INTO users VALUES ('u2', 'zed', 'Zed', 'h', 0, 10);
        INSERT INTO users VALUES ('u1', 'amy', 'Amy', 'h', 0, 20);
        INSERT INTO members VALUES ('c1', 'u2', 'owner', 10);
        INSERT INTO members VALUES ('c1', 'u1', 'member', 20);
        """
    )
    db.commit()
    db.close()
    store = SQLiteStore(str(path))
    await store.open()
    try:
        assert [(u.username, r) for u, r in await store.members("c1")] == [
            ("zed", "owner"),
            ("amy", "member"),
        ]
        newcomer = await store.create_user("new", "New", "h")
        assert [u.id for u, _ in await store.members("c1")] == ["u2", "u1", newcomer.id]
        assert (await store.user("u1")) == User("u1", "amy", "Amy", False, None)
        with pytest.raises(Conflict):
            await store.create_channel("c1", "General")
    finally:
        await store.close()


# migrations


def test_the_newest_migration_is_the_head_the_stores_expect() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "server.store:migrations")
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]


def sqlite_at(path: Path, revision: str) -> None:
    """An SQLite database migrated by Alembic up to ``revision`` only."""
    import sqlalchemy
    from alembic import command
    from alembic.config import Config

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", "server.store:migrations")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


async def test_sqlite_at_0002_with_messages_migrates_to_0003_and_keeps_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "at-0002.db"
    sqlite_at(path, "0002")
    old = [
        {
            "id": f"m{i}",
            "channel": "g1",
            "author": {"id": "u1", "name": "Amy", "bot": False},
            "text": f"old walrus number {i}",
            "ts": 1000 + i,
            **({"nonce": "n1"} if i == 1 else {}),
        }
        for i in range(1, 4)
    ]
    frames = [
        {"op": "event", "t": "member.joined", "ch": "g1", "o": 1, "d": {"member": {}, "ts": 1}},
        *(
            {"op": "event", "t": "message.created", "ch": "g1", "o": i + 1, "d": {"message": m}}
            for i, m in enumerate(old, 1)
        ),
    ]
    db = sqlite3.connect(path)
    db.executescript(
        """
        INSERT INTO meta VALUES ('default_community', 'c1');
        INSERT INTO communities(id, name, created_ms) VALUES ('c1', 'Old', 1);
        INSERT INTO channels(id, community_id, name, kind, parent, epoch, head)
            VALUES ('g1', 'c1', 'general', 'text', NULL, 'e1', 4);
        INSERT INTO users(id, username, display_name, password_hash, bot, created_ms)
            VALUES ('u1', 'amy', 'Amy', 'h', 0, 10);
        INSERT INTO members(community_id, user_id, role, joined_ms)
            VALUES ('c1', 'u1', 'owner', 10);
        INSERT INTO nonces VALUES ('g1', 'u1', 'n1', 2);
        """
    )
    db.executemany(
        "INSERT INTO events(channel_id, o, t, frame) VALUES ('g1', ?, ?, ?)",
        [(f["o"], f["t"], msgpack.packb(f, use_bin_type=True)) for f in frames],
    )
    db.commit()
    db.close()
    store = SQLiteStore(str(path))
    await store.open()
    try:
        stored = [msgpack.unpackb(f, raw=False) for f in await store.read_after("g1", 0, 10)]
        expected = [frames[0]] + [
            {**f, "d": {"message": {**f["d"]["message"], "reactions": []}}} for f in frames[1:]
        ]
        assert stored == expected
        assert (await store.log_head("g1")) == LogHead(4, "e1")
        assert await store.message("m2") == StoredMessage("g1", 3, {**old[1], "reactions": []})
        found = await store.search(
            "c1", ["walrus"], channel_id=None, author_id=None, before=None, limit=10
        )
        assert [m["id"] for m in found] == ["m3", "m2", "m1"]
        assert await store.read_states("u1", ["g1"]) == [ReadState("g1", 0, 0, 0)]
        retry = await store.append(
            "g1", "message.created", {"message": {}}, idempotency=("u1", "n1")
        )
        assert (retry.created, retry.offset) == (False, 2)
        new = await store.append(
            "g1", "message.created", {"message": {**old[0], "id": "m9", "reactions": []}}
        )
        assert new.offset == 5
    finally:
        await store.close()


async def test_processes_opening_a_fresh_postgres_database_together_migrate_and_bootstrap_once(
    postgres: PostgresProcess,
) -> None:
    backend = PostgresBackend(postgres)
    stores = [backend.make() for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert len(await stores[0].communities()) == 1
        user = await stores[1].create_user("first", "First", "h")
        (view,) = await stores[2].communities_of(user.id)
        assert view.role == "owner"
        assert [c.name for c in view.channels] == ["general"]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_postgres_store_answers_unavailable_while_the_server_is_down_then_recovers(
    tmp_path: Path,
) -> None:
    private = PostgresProcess().start()
    try:
        store = PostgresBackend(private).make()
        await store.open()
        _, _, general = await owner_and_general(store)
        await store.append(general, "message.created", {"n": 1})
        private.stop()
        with pytest.raises(Unavailable):
            await store.check()
        with pytest.raises(Unavailable):
            await store.append(general, "message.created", {"n": 2})
        private.start()
        async with asyncio.timeout(timeout(20)):
            while True:
                try:
                    await store.check()
                    break
                except Unavailable:
                    await asyncio.sleep(0.1)
        stored = await store.append(general, "message.created", {"n": 3})
        assert stored.offset == 2  # the failed append left no gap
        await store.close()
    finally:
        private.remove()


# community structure


async def test_channel_settings_update_order_and_clash_naming_the_existing_channel(
    store: Store,
) -> None:
    _, community, general = await owner_and_general(store)
    notes = await store.create_channel(community, "notes", topic="what we read")
    assert (notes.topic, notes.position, notes.archived, notes.slowmode_s) == (
        "what we read",
        0,
        False,
        0,
    )
    moved = await store.update_channel(notes.id, {"position": -1 + 1, "archived": True})
    assert moved.archived is True
    first = await store.update_channel(general, {"position": 5, "slowmode_s": 30})
    assert (first.position, first.slowmode_s) == (5, 30)
    assert [c.name for c in await store.channels(community)] == ["notes", "general"]
    with pytest.raises(Conflict, match="'general'"):
        await store.update_channel(notes.id, {"name": "GENERAL"})
    with pytest.raises(KeyError):
        await store.update_channel("nope", {"topic": "x"})
    assert (await store.channel(notes.id)) == moved


async def test_communities_are_unique_by_name_in_any_case_and_can_be_renamed(
    store: Store,
) -> None:
    owner, _, _ = await owner_and_general(store)
    club = await store.create_community("Book club", owner.id)
    with pytest.raises(Conflict):
        await store.create_community("book CLUB", owner.id)
    renamed = await store.rename_community(club.id, "Reading circle")
    assert await store.community(club.id) == renamed
    await store.create_community("Book club", owner.id)  # the old name is free again
    with pytest.raises(Conflict):
        await store.rename_community(club.id, "BOOK club")
    with pytest.raises(KeyError):
        await store.rename_community("nope", "x")


async def test_invites_count_uses_expire_refuse_banned_users_and_join_with_their_role(
    store: Store,
) -> None:
    owner, _, _ = await owner_and_general(store)
    users = [await store.create_user(f"u{i}", f"U{i}", "h") for i in range(4)]
    club = await store.create_community("Club", owner.id)
    await store.create_invite(Invite("once", club.id, "guest", 1, 0, None, owner.id))
    invite, joined = await store.accept_invite("once", users[0].id, 1_000)
    assert joined and invite.uses == 1
    assert await store.membership(club.id, users[0].id) == Membership("guest", None)
    assert await store.accept_invite("once", users[0].id, 1_000) == (invite, False)
    with pytest.raises(InviteRefused, match="used up"):
        await store.accept_invite("once", users[1].id, 1_000)
    await store.create_invite(Invite("late", club.id, "member", None, 0, 2_000, owner.id))
    with pytest.raises(InviteRefused, match="expired"):
        await store.accept_invite("late", users[1].id, 2_000)
    with pytest.raises(InviteRefused) as unknown:
        await store.accept_invite("nope", users[1].id, 1_000)
    assert unknown.value.unknown
    assert await store.remove_member(club.id, users[0].id, banned_by=owner.id)
    assert await store.membership(club.id, users[0].id) is None
    assert await store.banned(club.id, users[0].id)
    await store.create_invite(Invite("open", club.id, "member", None, 0, None, owner.id))
    with pytest.raises(InviteRefused, match="banned"):
        await store.accept_invite("open", users[0].id, 1_000)
    assert not await store.remove_member(club.id, users[3].id)  # never a member
    joined_at_once = await asyncio.gather(
        *(store.accept_invite("open", u.id, 1_000) for u in users[1:])
    )
    assert [j for _, j in joined_at_once] == [True, True, True]
    assert (await store.accept_invite("open", owner.id, 1_000))[0].uses == 3


async def test_an_account_made_with_an_invite_joins_only_its_community_or_is_not_made(
    store: Store,
) -> None:
    owner, _, _ = await owner_and_general(store)
    club = await store.create_community("Club", owner.id)
    await store.create_invite(Invite("code", club.id, "member", 1, 0, None, owner.id))
    ann = await store.create_user("ann", "Ann", "h", invite="code")
    assert [v.id for v in await store.communities_of(ann.id)] == [club.id]
    with pytest.raises(InviteRefused):
        await store.create_user("bob", "Bob", "h", invite="code")
    assert await store.credentials("bob") is None


async def test_timeouts_and_the_audit_log_newest_first_in_pages(store: Store) -> None:
    owner, community, _ = await owner_and_general(store)
    member = await store.create_user("m", "M", "h")
    await store.set_timeout(community, member.id, 123)
    assert await store.membership(community, member.id) == Membership("member", 123)
    await store.set_timeout(community, member.id, None)
    assert (await store.membership(community, member.id)).timeout_until is None
    with pytest.raises(KeyError):
        await store.set_timeout(community, "nobody", 1)
    written = [
        await store.add_audit(community, owner.id, "member.role", member.id, {"to": str(i)})
        for i in range(5)
    ]
    page = await store.audit(community, None, 3)
    assert page == written[:1:-1]
    assert await store.audit(community, page[-1].id, 3) == written[1::-1]
    assert await store.audit("elsewhere", None, 3) == []


# discussions (issue 10): the message index, threads, follows, read state, mentions,
# DMs, search and resources


def a_message(
    channel: str, author: User, text: str, ts: int, message_id: str | None = None
) -> dict[str, Any]:
    """A message object as the server stores it in a ``message.created``."""
    return {
        "id": message_id or f"m{ts}",
        "channel": channel,
        "author": {"id": author.id, "name": author.display_name, "bot": False},
        "text": text,
        "ts": ts,
        "reactions": [],
    }


async def post(store: Store, channel: str, author: User, text: str, ts: int) -> dict[str, Any]:
    """Append a message; the message object, with its ``o``."""
    message = a_message(channel, author, text, ts)
    appended = await store.append(channel, "message.created", {"message": message})
    return {**message, "o": appended.offset}


def frames_of(frames: list[bytes]) -> list[dict[str, Any]]:
    return [msgpack.unpackb(f, raw=False) for f in frames]


async def test_an_appended_message_is_indexed_and_a_change_rewrites_every_frame_of_it(
    store: Store,
) -> None:
    owner, _, general = await owner_and_general(store)
    first = await post(store, general, owner, "hello there", 1000)
    del first["o"]
    assert await store.message(first["id"]) == StoredMessage(general, 1, first)
    assert await store.message("no-such-message") is None

    def edit(message: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if message["text"] == "hello again":
            return None
        message["text"] = "hello again"
        message["edited_ts"] = 2000
        return "message.updated", {"message": message}

    appended, stored = await store.change_message(first["id"], edit)
    assert appended is not None and appended.offset == 2
    edited = {**first, "text": "hello again", "edited_ts": 2000}
    assert stored == StoredMessage(general, 1, edited)
    assert appended.event["d"] == {"message": edited}
    # every frame of the message holds it as it is now: created and updated alike
    events = frames_of(await store.read_after(general, 0, 10))
    assert [(e["t"], e["d"]["message"]) for e in events] == [
        ("message.created", edited),
        ("message.updated", edited),
    ]
    # nothing to change: nothing written
    again, stored = await store.change_message(first["id"], edit)
    assert again is None and stored.message == edited
    assert (await store.log_head(general)).offset == 2

    def pin(message: dict[str, Any]) -> tuple[None, None]:
        message["pinned"] = True
        return None, None

    silent, stored = await store.change_message(first["id"], pin)
    assert silent is None and stored.message["pinned"] is True
    assert (await store.log_head(general)).offset == 2  # stored, but no event
    assert await store.pinned(general) == [{**edited, "pinned": True, "o": 1}]
    assert frames_of(await store.read_after(general, 0, 1))[0]["d"]["message"]["pinned"] is True
    with pytest.raises(KeyError):
        await store.change_message("no-such-message", edit)


async def test_concurrent_changes_of_one_message_are_all_kept(store: Store, backend: Any) -> None:
    owner, _, general = await owner_and_general(store)
    message = await post(store, general, owner, "react to me", 1000)
    others = [backend.make() for _ in range(3)]
    for other in others:
        await other.open()

    def react(emoji: str) -> Any:
        def change(m: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            m["reactions"].append({"emoji": emoji, "count": 1, "users": [owner.id]})
            return "reaction.updated", {"message": m["id"], "emoji": emoji}

        return change

    try:
        await asyncio.gather(
            *(s.change_message(message["id"], react(str(i))) for i, s in enumerate(others * 3))
        )
    finally:
        for other in others:
            await other.close()
    stored = await store.message(message["id"])
    assert stored is not None
    assert sorted(r["emoji"] for r in stored.message["reactions"]) == sorted(
        str(i) for i in range(9)
    )


async def test_threads_are_listed_by_activity_followed_and_counted(store: Store) -> None:
    owner, community, general = await owner_and_general(store)
    bob = await store.create_user("bob", "Bob", "h")
    root = await post(store, general, owner, "a root", 500)

    def thread(i: int, **more: Any) -> Channel:
        return Channel(
            f"t{i}", community, f"t{i}", "thread", general, title=f"T{i}", created_by=owner.id,
            last_ts=1000 + i, **more,
        )  # fmt: skip

    made = [
        thread(0, root_message=root["id"], tags=("a",)),
        thread(1, tags=("a", "b")),
        thread(2),
    ]
    for t in made:
        await store.create_thread(t)
    assert await store.channel("t0") == made[0]
    assert await store.followers("t0") == [owner.id]  # the creator follows
    with pytest.raises(Conflict):
        await store.create_thread(made[0])
    with pytest.raises(KeyError):
        await store.create_thread(Channel("t9", community, "t9", "thread", "no-such-parent"))
    # activity: a message in t0 makes it the latest; replies count messages after the first
    await post(store, "t0", bob, "in t0", 5000)
    await post(store, "t2", bob, "opening", 4000)
    await post(store, "t2", owner, "reply", 4500)
    listed = await store.threads(general, None, None, 10)
    assert [t.id for t in listed] == ["t0", "t2", "t1"]
    assert [(t.msgs, t.replies, t.last_ts) for t in listed] == [
        (1, 1, 5000),
        (2, 1, 4500),
        (0, 0, 1001),
    ]
    assert [t.id for t in await store.threads(general, None, None, 2)] == ["t0", "t2"]
    assert [t.id for t in await store.threads(general, None, (4500, "t2"), 10)] == ["t1"]
    assert [t.id for t in await store.threads(general, "a", None, 10)] == ["t0", "t1"]
    assert [t.id for t in await store.threads(general, "b", None, 10)] == ["t1"]
    assert await store.participants("t2", 20) == [bob.id, owner.id]
    assert await store.participants("t2", 1) == [bob.id]
    # follows
    assert await store.follow("t1", bob.id, True) is True
    assert await store.follow("t1", bob.id, True) is False
    assert sorted(await store.followers("t1")) == sorted([owner.id, bob.id])
    assert [t.id for t in await store.followed_threads(bob.id)] == ["t1"]
    assert await store.follow("t1", bob.id, False) is True
    assert await store.follow("t1", bob.id, False) is False
    assert await store.followed_threads(bob.id) == []
    assert [t.id for t in await store.followed_threads(owner.id)] == ["t0", "t2", "t1"]
    # thread settings
    changed = await store.update_channel("t1", {"title": "New", "tags": ("c",), "resolved": True})
    assert (changed.title, changed.tags, changed.resolved) == ("New", ("c",), True)
    assert await store.channel("t1") == changed
    # threads are not the community's channels
    (view,) = await store.communities_of(owner.id)
    assert [c.id for c in view.channels] == [general]


async def test_read_markers_move_forward_only_and_count_unread_and_mentions(
    store: Store,
) -> None:
    owner, _, general = await owner_and_general(store)
    bob = await store.create_user("bob", "Bob", "h")
    mine = await post(store, general, owner, "mine", 1)
    theirs = [await post(store, general, bob, f"theirs {i}", 2 + i) for i in range(3)]
    stored = StoredMessage(general, theirs[1]["o"], theirs[1])
    await store.add_mentions(stored, [owner.id])
    await store.add_mentions(stored, [owner.id])  # once is enough
    [state] = await store.read_states(owner.id, [general])
    assert state == ReadState(general, 0, 3, 1)
    assert await store.mark_read(owner.id, general, 2) == 2
    assert await store.mark_read(owner.id, general, 1) is None  # never backwards
    assert await store.mark_read(owner.id, general, 2) is None
    assert await store.read_states(owner.id, [general]) == [ReadState(general, 2, 2, 1)]
    assert await store.mark_read(owner.id, general, 99) == 4  # capped at the head
    assert await store.read_states(owner.id, [general]) == [ReadState(general, 4, 0, 0)]
    assert await store.read_markers(general) == [(owner.id, 4)]
    # a deleted message is not unread
    await post(store, general, bob, "gone soon", 10)

    def delete(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        message.update(text="", deleted=True, reactions=[])
        return "message.deleted", {"id": message["id"]}

    [state] = await store.read_states(owner.id, [general])
    assert state.unread == 1
    await store.change_message("m10", delete)
    [state] = await store.read_states(owner.id, [general])
    assert state.unread == 0
    assert (await store.read_states(bob.id, [general]))[0] == ReadState(general, 0, 1, 0)
    assert mine["o"] == 1


async def test_a_dm_is_one_channel_per_pair_outside_every_community(store: Store) -> None:
    owner, community, _ = await owner_and_general(store)
    bob = await store.create_user("bob", "Bob", "h")
    loner = await store.create_user("loner", "Loner", "h")
    channel, created = await store.open_dm(owner.id, bob.id)
    assert created and channel.kind == "dm" and channel.community_id is None
    assert sorted(channel.members) == sorted([owner.id, bob.id])
    again, created = await store.open_dm(bob.id, owner.id)
    assert (again, created) == (channel, False)
    assert await store.channel(channel.id) == channel
    assert await store.dms_of(owner.id) == [channel]
    assert await store.dms_of(bob.id) == [channel]
    assert await store.dms_of(loner.id) == []
    (view,) = await store.communities_of(owner.id)
    assert channel.id not in [c.id for c in view.channels]
    assert await store.share_a_community(owner.id, loner.id)
    await store.remove_member(community, loner.id)
    assert not await store.share_a_community(owner.id, loner.id)
    assert (await store.append(channel.id, "message.created", {"message": {}})).offset == 1


async def test_search_finds_every_word_newest_first_and_never_deleted_or_old_words(
    store: Store,
) -> None:
    owner, community, general = await owner_and_general(store)
    bob = await store.create_user("bob", "Bob", "h")
    other = (await store.create_channel(community, "other")).id
    elsewhere = await store.create_community("Elsewhere", owner.id)
    far = (await store.create_channel(elsewhere.id, "far")).id
    dm, _ = await store.open_dm(owner.id, bob.id)
    a = await post(store, general, owner, "The Walrus sleeps", 1)
    b = await post(store, other, bob, "a walrus swims", 2)
    c = await post(store, general, bob, "walrus and carpenter", 3)
    await post(store, far, owner, "walrus far away", 4)
    await post(store, dm.id, owner, "walrus in private", 5)
    await post(store, general, owner, "walruses plural", 6)

    async def search(words: list[str], **more: Any) -> list[str]:
        found = await store.search(
            community,
            words,
            channel_id=more.get("channel"),
            author_id=more.get("author"),
            before=more.get("before"),
            limit=more.get("limit", 10),
        )
        return [m["id"] for m in found]

    assert await search(["walrus"]) == [c["id"], b["id"], a["id"]]
    assert await search(["walrus", "sleeps"]) == [a["id"]]
    assert await search(["walrus"], channel=general) == [c["id"], a["id"]]
    assert await search(["walrus"], author=bob.id) == [c["id"], b["id"]]
    assert await search(["walrus"], limit=1) == [c["id"]]
    assert await search(["walrus"], before=(3, c["id"])) == [b["id"], a["id"]]
    found = await store.search(
        community, ["carpenter"], channel_id=None, author_id=None, before=None, limit=5
    )
    assert found == [c]  # the message object with its offset

    def edit(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        message["text"] = "an edited seal"
        return "message.updated", {"message": message}

    def delete(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        message.update(text="", deleted=True, reactions=[])
        return "message.deleted", {"id": message["id"]}

    await store.change_message(a["id"], edit)
    await store.change_message(b["id"], delete)
    assert await search(["walrus"]) == [c["id"]]
    assert await search(["seal"]) == [a["id"]]
    assert await search(["swims"]) == []


async def test_search_finds_what_was_stored_before_it_across_index_batches_and_a_reopening(
    store: Store, backend: Any
) -> None:
    """The embedded store indexes new messages for search in batches (``SEARCH_BATCH``);
    a search still finds each message stored before it, once, with its words as they are."""
    owner, community, general = await owner_and_general(store)
    posted = [await post(store, general, owner, f"otter number{i}", i) for i in range(150)]

    def edit(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        message["text"] = "a renamed beaver"
        return "message.updated", {"message": message}

    await store.change_message(posted[3]["id"], edit)  # in a batch indexed already
    await store.change_message(posted[149]["id"], edit)  # still waiting for its batch

    async def search(words: list[str], on: Store) -> list[str]:
        found = await on.search(
            community, words, channel_id=None, author_id=None, before=None, limit=100
        )
        return [m["id"] for m in found]

    assert await search(["beaver"], store) == [posted[149]["id"], posted[3]["id"]]
    assert await search(["number3"], store) == []
    assert await search(["number148"], store) == [posted[148]["id"]]
    otters = await search(["otter"], store)
    assert len(otters) == len(set(otters)) == 100  # one page, no repeats
    later = [await post(store, general, owner, f"heron late{i}", 200 + i) for i in range(5)]
    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await search(["heron"], reopened) == [m["id"] for m in reversed(later)]
    finally:
        await reopened.close()


async def test_resources_are_unique_by_url_shared_counted_and_filtered(store: Store) -> None:
    owner, community, general = await owner_and_general(store)
    guide = Resource(
        "r1", community, "Style Guide", "https://example.org/style", "Read it", ("docs",),
        owner.id, 10,
    )  # fmt: skip
    await store.add_resource(guide)
    with pytest.raises(Conflict):
        await store.add_resource(
            Resource("r2", community, "Again", guide.url, None, (), owner.id, 11)
        )
    note = Resource("r3", community, "House rules", None, None, (), owner.id, 12)
    await store.add_resource(note)
    await store.share_urls(community, ["https://example.org/a"], owner.id, 20, (general, "m20"))
    await store.share_urls(
        community, ["https://example.org/a", guide.url], owner.id, 30, (general, "m30")
    )
    listed = await store.resources(community, None, None, None, 10)
    assert [r.title for r in listed] == ["https://example.org/a", "House rules", "Style Guide"]
    shared = listed[0]
    assert (shared.url, shared.shares, shared.message, shared.by) == (
        "https://example.org/a",
        2,
        (general, "m20"),
        owner.id,
    )
    assert listed[2].shares == guide.shares + 1 and listed[1] == note
    assert [r.id for r in await store.resources(community, "docs", None, None, 10)] == ["r1"]
    assert [r.id for r in await store.resources(community, None, "READ", None, 10)] == ["r1"]
    assert [r.id for r in await store.resources(community, None, "rules", None, 10)] == ["r3"]
    page = await store.resources(community, None, None, (12, "r3"), 10)
    assert [r.id for r in page] == ["r1"]
    assert await store.resources("no-such-community", None, None, None, 10) == []
