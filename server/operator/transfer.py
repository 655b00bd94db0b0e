"""Moving a community between servers: ``agora export`` and ``agora import``.

The file (format ``agora-export``, version 1, described in docs/export.md) is
one JSON object: the community, its members, its channels and threads each
with its whole event log in offset order (messages as they are now: edits,
reactions, deletes), its readers' markers and a thread's followers, and the
community's resources. Export streams the logs a page at a time, so
a large community never sits in memory. Import checks the whole file against
the target storage before it writes anything, keeps every id (ids are
snowflakes, unique across servers) and appends each channel's events in
order, so offsets come out the same as on the source.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgpack

from server.domain import communities
from server.domain.accounts import Invalid, check_account
from server.domain.names import skeleton
from server.store import Channel, Community, Resource, Store

FORMAT, VERSION = "agora-export", 1
#: Frames read from the store at once while exporting.
EXPORT_PAGE = 500
#: Problems an import refusal lists before it says "and N more".
MAX_PROBLEMS = 20

Progress = Callable[[int], object]


class TransferError(Exception):
    """The export or import cannot go on; the message says why."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# export


async def count_events(store: Store, community: Community) -> int:
    """How many events an export of the community writes now."""
    total = 0
    for channel in await _channels(store, community):
        total += (await store.log_head(channel.id)).offset
    return total


async def _channels(store: Store, community: Community) -> list[Channel]:
    """The community's channels, each followed by its threads."""
    found = []
    for channel in await store.channels(community.id):
        found.append(channel)
        before = None
        while threads := await store.threads(channel.id, None, before, EXPORT_PAGE):
            found += threads
            before = (threads[-1].last_ts or 0, threads[-1].id)
    return found


async def _resources(store: Store, community: Community) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    before = None
    while page := await store.resources(community.id, None, None, before, EXPORT_PAGE):
        found += [r.public() for r in page]
        before = (page[-1].ts, page[-1].id)
    return found


async def export_community(
    store: Store, community: Community, path: Path, progress: Progress
) -> int:
    """Write the community to ``path``; the number of events written.

    The file appears only once it is complete. Logs are exported up to their
    heads at the start of the export: events appended meanwhile are left out.
    """
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as out:
            written = await _write(store, community, out, progress)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


async def _write(store: Store, community: Community, out: TextIO, progress: Progress) -> int:
    out.write(f'{{"format":"{FORMAT}","version":{VERSION},\n')
    out.write(f'"community":{_dumps(community.public())},\n"members":[')
    for i, (user, role) in enumerate(await store.members(community.id)):
        entry = communities.member(user, role)
        if user.owner_id is not None:
            entry["owner_id"] = user.owner_id
        out.write(("," if i else "") + "\n" + _dumps(entry))
    out.write('\n],\n"channels":[')
    written = 0
    for i, channel in enumerate(await _channels(store, community)):
        head = await store.log_head(channel.id)
        entry = {**channel.public(), "epoch": head.epoch}
        entry["reads"] = [{"user": u, "o": o} for u, o in await store.read_markers(channel.id)]
        if channel.kind == "thread":
            entry["followers"] = await store.followers(channel.id)
        out.write(("," if i else "") + "\n" + _dumps(entry)[:-1] + ',"events":[')
        after = 0
        while after < head.offset:
            frames = await store.read_after(
                channel.id, after, min(EXPORT_PAGE, head.offset - after)
            )
            if not frames:
                break
            for frame in frames:
                event = msgpack.unpackb(frame, raw=False)
                out.write(("," if after else "") + "\n" + _dumps(event))
                after = event["o"]
            written += len(frames)
            progress(len(frames))
        out.write("\n]}")
    out.write(f'\n],\n"resources":{_dumps(await _resources(store, community))}}}\n')
    return written


# import


@dataclass(slots=True)
class Imported:
    """What an import did."""

    community: Community
    members: int = 0
    channels: int = 0
    events: int = 0
    #: usernames of the accounts it created (they have no password yet)
    new_accounts: list[str] = field(default_factory=list)


def load(path: Path) -> dict[str, Any]:
    """The export file's contents, checked for shape; raises ``TransferError``."""
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise TransferError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise TransferError(f"{path} is not JSON: {exc}") from None
    problems = _shape_problems(data)
    if problems:
        raise TransferError(_refusal(f"{path} is not a valid agora export", problems))
    return data


def total_events(data: dict[str, Any]) -> int:
    return sum(len(c["events"]) for c in data["channels"])


async def check_target(store: Store, data: dict[str, Any]) -> None:
    """Raise ``TransferError`` listing every clash of the export with the store's contents."""
    problems = await _target_problems(store, data)
    if problems:
        raise TransferError(_refusal("refusing to import, nothing was written", problems))


async def import_data(store: Store, data: dict[str, Any], progress: Progress) -> Imported:
    """Load an export from ``load`` into the store, or refuse with nothing written."""
    await check_target(store, data)
    known = {m["id"] for m in data["members"]}
    new = []
    for m in data["members"]:
        if await store.user(m["id"]) is None:
            new.append(m)
    for m in new:
        owner = m.get("owner_id")
        if owner is not None and owner not in known and await store.user(owner) is None:
            owner = None  # the owner stayed behind on the source server
        name = check_account(m["username"], None, m["name"])  # cleaned as everywhere
        await store.create_user(
            m["username"], name, "", bot=m["bot"], owner_id=owner, user_id=m["id"]
        )
    spec = data["community"]
    owner = next(m for m in data["members"] if m["role"] == "owner")
    community = await store.create_community(spec["name"], owner["id"], community_id=spec["id"])
    for m in data["members"]:
        if m is not owner:
            await store.set_role(community.id, m["id"], m["role"])
    done = Imported(community, len(data["members"]), new_accounts=[m["username"] for m in new])
    for c in data["channels"]:
        if c["kind"] == "thread":
            await store.create_thread(_thread(community.id, c, owner["id"]))
            if c.get("resolved"):
                await store.update_channel(c["id"], {"resolved": True})
        else:
            await store.create_channel(
                community.id, c["name"], kind=c["kind"], parent=c.get("parent"), channel_id=c["id"]
            )
        done.channels += 1
        for event in c["events"]:
            stored = await store.append(c["id"], event["t"], event["d"], idempotency=_key(event))
            if stored.offset != event["o"]:
                raise TransferError(
                    f"channel {c['id']}: event {event['o']} was stored at offset {stored.offset};"
                    " the import is incomplete"
                )
            done.events += 1
            progress(1)
            message = event["d"].get("message")
            if event["t"] == "message.created" and (
                message.get("deleted") or message.get("pinned")
            ):
                await store.change_message(message["id"], _as_it_is)
        for follower in c.get("followers", ()):
            await store.follow(c["id"], follower, True)
        for marker in c.get("reads", ()):
            await store.mark_read(marker["user"], c["id"], marker["o"])
    for r in data.get("resources", ()):
        message = r.get("message")
        await store.add_resource(
            Resource(
                r["id"],
                community.id,
                r["title"],
                r.get("url"),
                r.get("note"),
                tuple(r.get("tags", ())),
                r["by"],
                r["ts"],
                r.get("shares", 0),
                None if message is None else (message["channel"], message["id"]),
            )
        )
    return done


def _thread(community_id: str, c: dict[str, Any], owner_id: str) -> Channel:
    return Channel(
        c["id"],
        community_id,
        c["name"],
        "thread",
        c.get("parent"),
        title=c.get("title") or c["name"],
        created_by=c.get("created_by") or owner_id,
        root_message=c.get("message"),
        tags=tuple(c.get("tags", ())),
        last_ts=c.get("last_ts"),
    )


def _as_it_is(message: dict[str, Any]) -> tuple[None, None]:
    """A change that changes nothing: the store re-indexes the message (deleted, pinned)."""
    return None, None


def _key(event: dict[str, Any]) -> tuple[str, str] | None:
    """The idempotency key a message was sent with, so retries stay idempotent after a move."""
    message = event["d"].get("message")
    if event["t"] != "message.created" or not isinstance(message, dict):
        return None
    author, nonce = message.get("author"), message.get("nonce")
    if isinstance(author, dict) and isinstance(author.get("id"), str) and isinstance(nonce, str):
        return author["id"], nonce
    return None


async def _target_problems(store: Store, data: dict[str, Any]) -> list[str]:
    problems = []
    spec = data["community"]
    if await store.community(spec["id"]) is not None:
        problems.append(f"community id {spec['id']} exists here already")
    for c in data["channels"]:
        if await store.channel(c["id"]) is not None:
            problems.append(f"channel id {c['id']} ('{c['name']}') exists here already")
    for m in data["members"]:
        same_id = await store.user(m["id"])
        if same_id is not None and same_id.username.casefold() != m["username"].casefold():
            problems.append(
                f"user id {m['id']} is '{same_id.username}' here, '{m['username']}' in the file"
            )
        same_name = await store.user_like(m["username"])
        if same_name is not None and same_name.id != m["id"]:
            problems.append(
                f"username '{m['username']}' is taken here by another account, or looks like"
                f" its name '{same_name.username}' (id {same_name.id}, the file has {m['id']})"
            )
    return problems


def _shape_problems(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return ["the file must hold a JSON object"]
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        return [f'"format" must be "{FORMAT}" and "version" {VERSION}']
    problems: list[str] = []
    community = data.get("community")
    if not _fields(community, {"id": str, "name": str}):
        problems.append("community: must be {id, name} with string values")
    problems += _member_problems(data.get("members"))
    problems += _channel_problems(data.get("channels"))
    return problems


def _member_problems(members: Any) -> list[str]:
    if not isinstance(members, list):
        return ["members: must be a list"]
    problems, ids, names = [], set(), set()
    for i, m in enumerate(members):
        where = f"members[{i}]"
        shape = {"id": str, "username": str, "name": str, "bot": bool, "role": str}
        if not _fields(m, shape) or not isinstance(m.get("owner_id"), str | None):
            problems.append(f"{where}: must be {{id, username, name, bot, role, owner_id?}}")
            continue
        try:
            check_account(m["username"], None, m["name"])
        except Invalid as exc:
            problems.append(f"{where}: {exc}")
        if m["role"] not in communities.ROLES:
            problems.append(f"{where}: role must be one of {', '.join(communities.ROLES)}")
        if m["id"] in ids or skeleton(m["username"]) in names:
            problems.append(f"{where}: id or username listed twice (or a name that looks alike)")
        ids.add(m["id"])
        names.add(skeleton(m["username"]))
    if not problems and not any(m["role"] == "owner" for m in members):
        problems.append("members: the community has no owner")
    return problems


def _channel_problems(channels: Any) -> list[str]:
    if not isinstance(channels, list):
        return ["channels: must be a list"]
    problems, ids, names = [], set(), set()
    for i, c in enumerate(channels):
        where = f"channels[{i}]"
        if not _fields(c, {"id": str, "name": str, "kind": str, "events": list}) or not isinstance(
            c.get("parent"), str | None
        ):
            problems.append(f"{where}: must be {{id, name, kind, parent?, epoch?, events}}")
            continue
        if c["id"] in ids or c["name"].casefold() in names:
            problems.append(f"{where}: id or name listed twice")
        ids.add(c["id"])
        names.add(c["name"].casefold())
        for o, event in enumerate(c["events"], start=1):
            ok = _fields(event, {"op": str, "t": str, "ch": str, "o": int, "d": dict})
            if not ok or event["op"] != "event" or event["ch"] != c["id"] or event["o"] != o:
                problems.append(
                    f"{where}.events[{o - 1}]: must be an event frame of this channel with o = {o}"
                )
                break
    return problems


def _fields(value: Any, types: dict[str, type]) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(name), kind) and not (kind is int and isinstance(value[name], bool))
        for name, kind in types.items()
    )


def _refusal(headline: str, problems: list[str]) -> str:
    lines = [headline + ":"] + [f"  - {p}" for p in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"  … and {len(problems) - MAX_PROBLEMS} more")
    return "\n".join(lines)
