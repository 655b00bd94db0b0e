"""State a client can trust in discussions: identify + subscribe + the events heard equals
a fresh fetch (issue 10), in the pattern of ``test_communities``' verify test.

Three users act at random (the seed is printed, and ``AGORA_TEST_SEED`` replays one);
a fourth session, of one of them, only listens. It folds every event it hears into
the messages of each channel, the threads of each parent, its read markers and its
mentions, and at the end that fold must equal what ``identify``, ``history`` and
``thread.list`` say.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import RawSession, timeout
from tests.discussion_helpers import (
    Club,
    all_events,
    close_all,
    connect,
    node,
    session_for,
    uid,
    username,
)


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    await close_all()


@dataclass
class Fold:
    """What the listening session knows, from its identify and the events it heard."""

    me: str
    messages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)  # channel: {id: o}
    last_o: dict[str, int] = field(default_factory=dict)
    threads: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # by parent
    parent_of: dict[str, str] = field(default_factory=dict)
    followed: set[str] = field(default_factory=set)
    markers: dict[str, int] = field(default_factory=dict)
    mentions: list[tuple[str, str]] = field(default_factory=list)  # (channel, message id)

    def apply(self, frame: dict[str, Any]) -> None:
        if frame.get("op") != "event":
            return
        t, d, ch = frame["t"], frame["d"], frame["ch"]
        if "o" in frame:
            last = self.last_o.get(ch, 0)
            if frame["o"] <= last:
                return  # heard twice (a replay and the live event): once is enough
            assert frame["o"] == last + 1, f"gap in {ch}: {last} then {frame['o']}"
            self.last_o[ch] = frame["o"]
        messages = self.messages.setdefault(ch, {})
        if t == "message.created":
            message = d["message"]
            messages[message["id"]] = message
            self.offsets.setdefault(ch, {})[message["id"]] = frame["o"]
        elif t == "message.updated":
            messages[d["message"]["id"]] = d["message"]
        elif t == "message.deleted":
            message = messages[d["id"]]
            # §7: text "" and no reactions; the server also drops pinned and edited_ts
            for key in ("edited_ts", "pinned"):
                message.pop(key, None)
            message.update(text="", deleted=True, reactions=[])
        elif t == "reaction.updated":
            reactions = messages[d["message"]]["reactions"]
            reaction = next((r for r in reactions if r["emoji"] == d["emoji"]), None)
            if reaction is None:
                reaction = {"emoji": d["emoji"], "count": 0, "users": []}
                reactions.append(reaction)
            if d["added"]:
                reaction["users"].append(d["user"])
            else:
                reaction["users"].remove(d["user"])
            reaction["count"] = len(reaction["users"])
            assert reaction["count"] == d["count"], frame
            if not reaction["users"]:
                reactions.remove(reaction)
        elif t == "message.pinned":
            if d["pinned"]:
                messages[d["message"]]["pinned"] = True
            else:
                messages[d["message"]].pop("pinned", None)
        elif t in ("thread.created", "thread.updated"):
            thread = d["thread"]
            self.parent_of[thread["id"]] = ch
            self.threads.setdefault(ch, {})[thread["id"]] = {
                "thread": thread,
                "replies": thread["replies"] if t == "thread.created" else d["replies"],
                "last_ts": thread["last_ts"] if t == "thread.created" else d["last_ts"],
                "tags": thread["tags"] if t == "thread.created" else d["tags"],
                "resolved": thread["resolved"] if t == "thread.created" else d["resolved"],
            }
            if t == "thread.created" and "message" in thread:
                messages[thread["message"]]["thread"] = thread["id"]  # the message names it
        elif t == "read.updated":
            self.markers[d["channel"]] = d["o"]
        elif t == "mention":
            self.mentions.append((d["message"]["channel"], d["message"]["id"]))
        elif t == "thread.followed":  # by following, creating or posting, in any session
            if d["following"]:
                self.followed.add(d["thread"]["id"])
            else:
                self.followed.discard(d["thread"]["id"])

    def read_state(self, channel: str) -> dict[str, Any]:
        o = self.markers.get(channel, 0)
        offsets = self.offsets.get(channel, {})
        unread = sum(
            1
            for mid, message in self.messages.get(channel, {}).items()
            if offsets[mid] > o
            and message["author"]["id"] != self.me
            and not message.get("deleted")
        )
        messages = self.messages.get(channel, {})
        mentions = sum(
            1
            for ch, mid in self.mentions
            if ch == channel and offsets[mid] > o and not messages[mid].get("deleted")
        )
        return {"channel": channel, "o": o, "unread": unread, "mentions": mentions}


class Listener:
    """Reads every frame of a session in the background and subscribes (``since: 0``) to
    each thread it hears created."""

    def __init__(self, session: RawSession) -> None:
        self.session = session
        self.frames: list[dict[str, Any]] = list(session.early)
        session.early.clear()
        self.last = asyncio.get_running_loop().time()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        for frame in list(self.frames):
            await self._subscribe_to_new_threads(frame)
        while True:
            frame = await self.session.recv(3600)
            self.frames.append(frame)
            self.last = asyncio.get_running_loop().time()
            await self._subscribe_to_new_threads(frame)

    async def _subscribe_to_new_threads(self, frame: dict[str, Any]) -> None:
        if frame.get("t") == "thread.created":
            channel = frame["d"]["thread"]["id"]
            d = {"channel": channel, "since": 0}
            await self.session.send({"op": "subscribe", "id": next(self.session.ids), "d": d})

    async def quiet(self, seconds: float) -> None:
        """Wait until nothing arrived for ``seconds`` (a thread's ``thread.updated`` comes
        1 s after its last message), then stop listening."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout(20)
        while loop.time() - self.last < seconds:
            assert loop.time() < deadline, "the listener never went quiet"
            await asyncio.sleep(0.1)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        errors = [f for f in self.frames if f.get("op") == "error"]
        assert errors == [], errors


WORDS = ["plum", "pear", "fig", "quince", "walnut", "thread", "chapter", "idea", "why", "yes"]
EMOJI = ["👍", "🎉", "a", "b"]


async def test_identify_subscribe_and_the_events_heard_equal_a_fresh_fetch(server) -> None:
    seed = int(os.environ.get("AGORA_TEST_SEED", random.randrange(10**9)))
    print(f"discussion verify seed: {seed} (AGORA_TEST_SEED={seed} replays it)")
    rng = random.Random(seed)
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    second = await club.channel("second")
    bob = await club.join(1, name="bob")
    cat = await club.join(0, name="cat")
    users = [owner, bob, cat]
    watcher = await connect(node(server, 1), cat.token)  # type: ignore[attr-defined]
    fold = Fold(uid(cat))
    fold.followed = {t["id"] for t in watcher.identity["threads"]}
    for read in watcher.identity["reads"]:
        fold.markers[read["channel"]] = read["o"]
    for channel in (club.general, second):
        await watcher.ok("subscribe", {"channel": channel, "since": 0})
    listener = Listener(watcher)

    # what the actors know of what they did
    posted: dict[str, list[tuple[str, str]]] = {club.general: [], second: []}  # (id, author)
    deleted: set[str] = set()
    threads: list[tuple[str, str, str]] = []  # (thread, parent, creator)
    rooted: set[str] = set()

    def live(channel: str) -> list[tuple[str, str]]:
        return [(mid, a) for mid, a in posted[channel] if mid not in deleted]

    async def post(who: RawSession, channel: str) -> None:
        text = " ".join(rng.choice(WORDS) for _ in range(3))
        if rng.random() < 0.4:
            text += f" @{username(rng.choice(users))}"
        d: dict[str, Any] = {"channel": channel, "text": text}
        if live(channel) and rng.random() < 0.3:
            d["reply_to"] = rng.choice(live(channel))[0]
        reply = await who.ok("message.send", d)
        posted[channel].append((reply["message"]["id"], uid(who)))

    kinds = ["send", "send", "reply", "edit", "delete", "react", "unreact", "pin", "thread",
             "thread", "update", "follow", "read", "read"]  # fmt: skip
    # Every kind at least once (a seed that drew no "thread" tested no thread), the rest drawn.
    actions = [*dict.fromkeys(kinds), *rng.choices(kinds, k=40 - len(set(kinds)))]
    rng.shuffle(actions)
    for action in actions:
        who = rng.choice(users)
        channel = rng.choice(list(posted))
        mine = [mid for mid, a in live(channel) if a == uid(who)]
        anyone = [mid for mid, _ in live(channel)]
        if action == "send" or (action in ("edit", "react", "unreact", "pin") and not anyone):
            await post(who, channel)
        elif action == "reply" and threads:
            await post(who, rng.choice(threads)[0])
        elif action == "edit" and mine:
            text = " ".join(rng.choice(WORDS) for _ in range(2)) + " (edited)"
            await who.ok(
                "message.edit", {"channel": channel, "message": rng.choice(mine), "text": text}
            )
        elif action == "delete" and (mine or (who is owner and anyone)):
            target = rng.choice(anyone if who is owner else mine)
            await who.ok("message.delete", {"channel": channel, "message": target})
            deleted.add(target)
        elif action in ("react", "unreact") and anyone:
            op = "reaction.add" if action == "react" else "reaction.remove"
            d = {"channel": channel, "message": rng.choice(anyone), "emoji": rng.choice(EMOJI)}
            await who.ok(op, d)
        elif action == "pin" and anyone:
            op = rng.choice(["message.pin", "message.unpin"])
            await owner.ok(op, {"channel": channel, "message": rng.choice(anyone)})
        elif action == "thread":
            channel = rng.choice([club.general, second])  # threads start in text channels
            anyone = [mid for mid, _ in live(channel)]
            d = {"channel": channel, "title": rng.choice(WORDS), "tags": [rng.choice(WORDS)]}
            free = [mid for mid in anyone if mid not in rooted]
            if free and rng.random() < 0.5:
                d["message"] = rng.choice(free)
                rooted.add(d["message"])
            else:
                d["text"] = " ".join(rng.choice(WORDS) for _ in range(4))
            made = await who.ok("thread.create", d)
            threads.append((made["thread"]["id"], channel, uid(who)))
            posted[made["thread"]["id"]] = []
        elif action == "update" and threads:
            thread, _, creator = rng.choice(threads)
            actor = next(u for u in users if uid(u) == creator) if rng.random() < 0.5 else owner
            change = rng.choice([{"resolved": rng.random() < 0.5}, {"tags": [rng.choice(WORDS)]}])
            await actor.ok("thread.update", {"thread": thread, **change})
        elif action == "follow" and threads:
            op = rng.choice(["thread.follow", "thread.unfollow"])
            await who.ok(op, {"thread": rng.choice(threads)[0]})
        elif action == "read":
            places = [club.general, second, *(t for t, _, _ in threads)]
            target = rng.choice(places)
            head = len(await all_events(who, target))
            await who.ok("read.mark", {"channel": target, "o": rng.randrange(head + 3)})
        else:
            await post(who, channel)
    print("actions:", " ".join(actions))
    await listener.quiet(1.6)
    for frame in listener.frames:
        fold.apply(frame)
    heard = Counter(f["t"] for f in listener.frames if f.get("op") == "event")
    print("heard:", dict(heard))
    assert heard["message.created"] and heard["thread.created"], heard

    fresh = await connect(node(server, 0), cat.token)  # type: ignore[attr-defined]
    places = [club.general, second, *(t for t, _, _ in threads)]
    for channel in places:
        events = await all_events(fresh, channel)
        assert fold.last_o.get(channel, 0) == (events[-1]["o"] if events else 0), channel
        stored = {
            e["d"]["message"]["id"]: e["d"]["message"]
            for e in events
            if e["t"] == "message.created"
        }
        assert fold.messages.get(channel, {}) == stored, (seed, channel)
    for parent in (club.general, second):
        listed = (await fresh.ok("thread.list", {"channel": parent, "limit": 100}))["threads"]
        assert fold.threads.get(parent, {}) == {t["thread"]["id"]: t for t in listed}, (
            seed,
            parent,
        )
    followed = {t["id"]: t for t in fresh.identity["threads"]}
    assert fold.followed == set(followed), seed
    for thread_id, thread in followed.items():
        assert fold.threads[fold.parent_of[thread_id]][thread_id]["thread"] == thread, seed
    reads = {r["channel"]: r for r in fresh.identity["reads"]}
    for channel in [club.general, second, *followed]:
        assert fold.read_state(channel) == reads[channel], (seed, channel)
