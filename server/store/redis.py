"""The scaled Store: everything in one Redis, shared by every Agora process.

Each change that must be atomic is one Lua script, so it is atomic across
processes and hosts without locks. A channel's log is a Redis stream whose
entry ids are ``<offset>-0``: ``append`` increments the channel's ``head`` and
adds the entry in the same script, so offsets are gapless, and ``read_after``
and ``read_before`` are range reads by offset.

Frames are built so that the script never decodes anything: Python encodes
the event map without its offset as a msgpack map whose last key is ``o``,
and the script appends the offset's msgpack encoding (``cmsgpack``, which
picks the same smallest integer form as msgpack-python).

Durability is Redis's: with ``appendonly yes`` an acknowledged write has
been written to the append-only file before the reply, so it survives a
crash or ``kill -9`` of Redis; ``appendfsync always`` also survives a power
loss (see the README). Every method raises ``Unavailable`` while Redis
cannot be reached.

Keys, with ``agora:`` in front: ``meta`` (hash), ``seq`` (the counter that
orders everything "oldest first"), ``user:<id>``, ``usernames`` (lowercased
name to id), ``users`` (ids by seq), ``token:<id>``, ``community:<id>``,
``communities``, ``members:<community>`` (ids by seq), ``roles:<community>``,
``memberships:<user>`` (set), ``channel:<id>``, ``channels:<community>``,
``channel_names:<community>``, ``log:<channel>`` (stream),
``nonces:<channel>`` (``<user>:<nonce>`` to offset).
"""

from __future__ import annotations

import secrets
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from protocol import event
from server.ids import new_id, now_ms
from server.redis_support import connection_pool, unavailable_on_errors
from server.store.base import (
    Appended,
    Channel,
    Community,
    CommunityView,
    Conflict,
    LogHead,
    User,
)

K = "agora:"
#: Connections to Redis per process; more concurrent commands wait for one.
MAX_CONNECTIONS = 64

# Scripts return an error string ("conflict: …", "missing: …") rather than raise,
# so that Python can tell a broken rule from a broken script.

_BOOTSTRAP = """
if redis.call('HEXISTS', KEYS[1], 'default_community') == 1 then return 0 end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', 'agora:community:' .. ARGV[1], 'name', ARGV[2], 'created_ms', ARGV[4])
redis.call('ZADD', 'agora:communities', seq, ARGV[1])
redis.call('HSET', 'agora:channel:' .. ARGV[3], 'community_id', ARGV[1], 'name', 'general',
    'kind', 'text', 'epoch', ARGV[5], 'head', 0)
redis.call('ZADD', 'agora:channels:' .. ARGV[1], seq, ARGV[3])
redis.call('HSET', 'agora:channel_names:' .. ARGV[1], 'general', ARGV[3])
redis.call('HSET', KEYS[1], 'default_community', ARGV[1])
return 1
"""

# ARGV: id, username, lowered username, display name, password hash, bot, owner, created
_CREATE_USER = """
if redis.call('HEXISTS', 'agora:usernames', ARGV[3]) == 1 then
    return 'conflict: the username ' .. ARGV[2] .. ' is taken'
end
if redis.call('EXISTS', 'agora:user:' .. ARGV[1]) == 1 then
    return 'conflict: the user id ' .. ARGV[1] .. ' is taken'
end
local first = redis.call('ZCARD', 'agora:users') == 0
local seq = redis.call('INCR', 'agora:seq')
redis.call('HSET', 'agora:user:' .. ARGV[1], 'username', ARGV[2], 'display_name', ARGV[4],
    'password_hash', ARGV[5], 'bot', ARGV[6], 'owner_id', ARGV[7], 'created_ms', ARGV[8])
redis.call('HSET', 'agora:usernames', ARGV[3], ARGV[1])
redis.call('ZADD', 'agora:users', seq, ARGV[1])
local community = redis.call('HGET', 'agora:meta', 'default_community')
redis.call('ZADD', 'agora:members:' .. community, seq, ARGV[1])
redis.call('HSET', 'agora:roles:' .. community, ARGV[1], first and 'owner' or 'member')
redis.call('SADD', 'agora:memberships:' .. ARGV[1], community)
return 'ok'
"""

# ARGV: user, password hash
_SET_PASSWORD = """
if redis.call('EXISTS', 'agora:user:' .. ARGV[1]) == 0 then
    return 'missing: no user ' .. ARGV[1]
end
redis.call('HSET', 'agora:user:' .. ARGV[1], 'password_hash', ARGV[2])
return 'ok'
"""

# ARGV: id, name, owner, created
_CREATE_COMMUNITY = """
if redis.call('EXISTS', 'agora:user:' .. ARGV[3]) == 0 then
    return 'missing: no user ' .. ARGV[3]
end
if redis.call('EXISTS', 'agora:community:' .. ARGV[1]) == 1 then
    return 'conflict: the community id ' .. ARGV[1] .. ' is taken'
end
local seq = redis.call('INCR', 'agora:seq')
redis.call('HSET', 'agora:community:' .. ARGV[1], 'name', ARGV[2], 'created_ms', ARGV[4])
redis.call('ZADD', 'agora:communities', seq, ARGV[1])
redis.call('ZADD', 'agora:members:' .. ARGV[1], seq, ARGV[3])
redis.call('HSET', 'agora:roles:' .. ARGV[1], ARGV[3], 'owner')
redis.call('SADD', 'agora:memberships:' .. ARGV[3], ARGV[1])
return 'ok'
"""

# ARGV: community, user, role
_SET_ROLE = """
if redis.call('EXISTS', 'agora:community:' .. ARGV[1]) == 0 then
    return 'missing: no community ' .. ARGV[1]
end
if redis.call('EXISTS', 'agora:user:' .. ARGV[2]) == 0 then
    return 'missing: no user ' .. ARGV[2]
end
if redis.call('HEXISTS', 'agora:roles:' .. ARGV[1], ARGV[2]) == 0 then
    redis.call('ZADD', 'agora:members:' .. ARGV[1], redis.call('INCR', 'agora:seq'), ARGV[2])
    redis.call('SADD', 'agora:memberships:' .. ARGV[2], ARGV[1])
end
redis.call('HSET', 'agora:roles:' .. ARGV[1], ARGV[2], ARGV[3])
return 'ok'
"""

# ARGV: id, community, name, lowered name, kind, parent, epoch
_CREATE_CHANNEL = """
if redis.call('EXISTS', 'agora:community:' .. ARGV[2]) == 0 then
    return 'missing: no community ' .. ARGV[2]
end
if redis.call('HEXISTS', 'agora:channel_names:' .. ARGV[2], ARGV[4]) == 1 then
    return 'conflict: the community has a channel named ' .. ARGV[3]
end
if redis.call('EXISTS', 'agora:channel:' .. ARGV[1]) == 1 then
    return 'conflict: the channel id ' .. ARGV[1] .. ' is taken'
end
local seq = redis.call('INCR', 'agora:seq')
redis.call('HSET', 'agora:channel:' .. ARGV[1], 'community_id', ARGV[2], 'name', ARGV[3],
    'kind', ARGV[5], 'epoch', ARGV[7], 'head', 0)
if ARGV[6] ~= '' then redis.call('HSET', 'agora:channel:' .. ARGV[1], 'parent', ARGV[6]) end
redis.call('ZADD', 'agora:channels:' .. ARGV[2], seq, ARGV[1])
redis.call('HSET', 'agora:channel_names:' .. ARGV[2], ARGV[4], ARGV[1])
return 'ok'
"""

# KEYS: channel, log, nonces. ARGV: the frame without its offset's value, nonce key or ''.
# Returns {created, offset, frame}.
_APPEND = """
if ARGV[2] ~= '' then
    local seen = redis.call('HGET', KEYS[3], ARGV[2])
    if seen then
        local entry = redis.call('XRANGE', KEYS[2], seen .. '-0', seen .. '-0')
        return {0, tonumber(seen), entry[1][2][2]}
    end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing: no channel' end
local offset = redis.call('HINCRBY', KEYS[1], 'head', 1)
local frame = ARGV[1] .. cmsgpack.pack(offset)
redis.call('XADD', KEYS[2], offset .. '-0', 'f', frame)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[3], ARGV[2], offset) end
return {1, offset, frame}
"""

_USER_FIELDS = ("username", "display_name", "bot", "owner_id")
_CHANNEL_FIELDS = ("community_id", "name", "kind", "parent")


class RedisStore:
    def __init__(self, url: str, *, community_name: str = "Agora") -> None:
        self.url = url
        self.community_name = community_name
        self._pool = connection_pool(url, max_connections=MAX_CONNECTIONS)
        self._redis = Redis(connection_pool=self._pool)
        self._scripts = {
            name: self._redis.register_script(source)
            for name, source in (
                ("bootstrap", _BOOTSTRAP),
                ("create_user", _CREATE_USER),
                ("set_password", _SET_PASSWORD),
                ("create_community", _CREATE_COMMUNITY),
                ("set_role", _SET_ROLE),
                ("create_channel", _CREATE_CHANNEL),
                ("append", _APPEND),
            )
        }

    # lifecycle

    async def open(self) -> None:
        await self._script(
            "bootstrap",
            [K + "meta", K + "seq"],
            [new_id(), self.community_name, new_id(), now_ms(), secrets.token_hex(8)],
        )

    async def close(self) -> None:
        await self._redis.aclose()
        await self._pool.disconnect()

    async def check(self) -> None:
        with unavailable_on_errors():
            await self._redis.ping()

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
    ) -> User:
        user = User(user_id or new_id(), username, display_name, bot, owner_id)
        await self._script(
            "create_user",
            [],
            [
                user.id,
                username,
                _fold(username),
                display_name,
                password_hash,
                int(bot),
                owner_id or "",
                now_ms(),
            ],
        )
        return user

    async def user(self, user_id: str) -> User | None:
        with unavailable_on_errors():
            values = await self._redis.hmget(K + "user:" + user_id, _USER_FIELDS)
        return _user(user_id, values)

    async def users(self) -> list[User]:
        with unavailable_on_errors():
            ids = await self._redis.zrange(K + "users", 0, -1)
        return await self._users([i.decode() for i in ids])

    async def credentials(self, username: str) -> tuple[User, str] | None:
        with unavailable_on_errors():
            user_id = await self._redis.hget(K + "usernames", _fold(username))
            if user_id is None:
                return None
            key = K + "user:" + user_id.decode()
            values = await self._redis.hmget(key, (*_USER_FIELDS, "password_hash"))
        user = _user(user_id.decode(), values[:-1])
        return None if user is None else (user, values[-1].decode())

    async def set_password(self, user_id: str, password_hash: str) -> None:
        await self._script("set_password", [], [user_id, password_hash])

    async def add_token(self, token_id: str, user_id: str, secret_hash: bytes) -> None:
        with unavailable_on_errors():
            await self._redis.hset(
                K + "token:" + token_id,
                mapping={"user_id": user_id, "secret_hash": secret_hash, "created_ms": now_ms()},
            )

    async def token(self, token_id: str) -> tuple[User, bytes] | None:
        with unavailable_on_errors():
            user_id, secret_hash = await self._redis.hmget(
                K + "token:" + token_id, ("user_id", "secret_hash")
            )
        if user_id is None:
            return None
        user = await self.user(user_id.decode())
        return None if user is None else (user, secret_hash)

    # communities and channels

    async def create_community(
        self, name: str, owner_id: str, *, community_id: str | None = None
    ) -> Community:
        community = Community(community_id or new_id(), name)
        await self._script("create_community", [], [community.id, name, owner_id, now_ms()])
        return community

    async def communities(self) -> list[Community]:
        with unavailable_on_errors():
            ids = [i.decode() for i in await self._redis.zrange(K + "communities", 0, -1)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for community_id in ids:
                    pipe.hget(K + "community:" + community_id, "name")
                names = await pipe.execute()
        return [Community(i, n.decode()) for i, n in zip(ids, names, strict=True) if n is not None]

    async def community(self, community_id: str) -> Community | None:
        with unavailable_on_errors():
            name = await self._redis.hget(K + "community:" + community_id, "name")
        return None if name is None else Community(community_id, name.decode())

    async def communities_of(self, user_id: str) -> list[CommunityView]:
        with unavailable_on_errors():
            ids = [i.decode() for i in await self._redis.smembers(K + "memberships:" + user_id)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for community_id in ids:
                    pipe.zscore(K + "communities", community_id)
                    pipe.hget(K + "community:" + community_id, "name")
                    pipe.hget(K + "roles:" + community_id, user_id)
                    pipe.zrange(K + "channels:" + community_id, 0, -1)
                found = await pipe.execute()
        views: list[tuple[float, CommunityView]] = []
        for n, community_id in enumerate(ids):
            seq, name, role, channel_ids = found[4 * n : 4 * n + 4]
            if name is None or role is None:
                continue
            channels = await self._channels([c.decode() for c in channel_ids])
            views.append(
                (seq, CommunityView(community_id, name.decode(), role.decode(), tuple(channels)))
            )
        return [view for _, view in sorted(views, key=lambda v: v[0])]

    async def set_role(self, community_id: str, user_id: str, role: str) -> None:
        await self._script("set_role", [], [community_id, user_id, role])

    async def members(self, community_id: str) -> list[tuple[User, str]]:
        with unavailable_on_errors():
            ids = [
                i.decode() for i in await self._redis.zrange(K + "members:" + community_id, 0, -1)
            ]
            roles = await self._redis.hmget(K + "roles:" + community_id, ids) if ids else []
        users = {u.id: u for u in await self._users(ids)}
        return [(users[i], r.decode()) for i, r in zip(ids, roles, strict=True) if i in users and r]

    async def create_channel(
        self,
        community_id: str,
        name: str,
        *,
        kind: str = "text",
        parent: str | None = None,
        channel_id: str | None = None,
    ) -> Channel:
        channel = Channel(channel_id or new_id(), community_id, name, kind, parent)
        await self._script(
            "create_channel",
            [],
            [channel.id, community_id, name, _fold(name), kind, parent or "", secrets.token_hex(8)],
        )
        return channel

    async def channels(self, community_id: str) -> list[Channel]:
        with unavailable_on_errors():
            ids = await self._redis.zrange(K + "channels:" + community_id, 0, -1)
        return await self._channels([i.decode() for i in ids])

    async def channel(self, channel_id: str) -> Channel | None:
        found = await self._channels([channel_id])
        return found[0] if found else None

    async def role(self, community_id: str, user_id: str) -> str | None:
        with unavailable_on_errors():
            role = await self._redis.hget(K + "roles:" + community_id, user_id)
        return None if role is None else role.decode()

    # channel logs

    async def append(
        self,
        channel_id: str,
        t: str,
        d: dict[str, Any],
        *,
        idempotency: tuple[str, str] | None = None,
    ) -> Appended:
        head = b"\x85" + b"".join(
            msgpack.packb(x, use_bin_type=True) for x in ("op", "event", "t", t, "ch", channel_id)
        )
        unfinished = head + msgpack.packb("d") + msgpack.packb(d, use_bin_type=True) + b"\xa1o"
        nonce = f"{idempotency[0]}:{idempotency[1]}" if idempotency is not None else ""
        created, offset, frame = await self._script(
            "append",
            [K + "channel:" + channel_id, K + "log:" + channel_id, K + "nonces:" + channel_id],
            [unfinished, nonce],
        )
        stored = event(t, channel_id, d, offset) if created else msgpack.unpackb(frame, raw=False)
        return Appended(offset, stored, frame, created=bool(created))

    async def read_after(self, channel_id: str, after: int, limit: int) -> list[bytes]:
        with unavailable_on_errors():
            entries = await self._redis.xrange(
                K + "log:" + channel_id, f"{after + 1}-0", "+", count=limit
            )
        return [fields[b"f"] for _, fields in entries]

    async def read_before(self, channel_id: str, before: int | None, limit: int) -> list[bytes]:
        upper = "+" if before is None else f"({before}-0"
        with unavailable_on_errors():
            entries = await self._redis.xrevrange(K + "log:" + channel_id, upper, "-", count=limit)
        return [fields[b"f"] for _, fields in reversed(entries)]

    async def log_head(self, channel_id: str) -> LogHead:
        with unavailable_on_errors():
            head, epoch = await self._redis.hmget(K + "channel:" + channel_id, ("head", "epoch"))
        if head is None:
            raise KeyError(channel_id)
        return LogHead(int(head), epoch.decode())

    # helpers

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        with unavailable_on_errors():
            try:
                result = await self._scripts[name](keys=keys, args=args)
            except ResponseError as exc:
                raise RuntimeError(f"Redis script {name} failed: {exc}") from exc
        if isinstance(result, bytes):
            outcome = result.decode()
            if outcome.startswith("conflict: "):
                raise Conflict(outcome.removeprefix("conflict: "))
            if outcome.startswith("missing: "):
                raise KeyError(outcome.removeprefix("missing: "))
        return result

    async def _users(self, ids: list[str]) -> list[User]:
        with unavailable_on_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in ids:
                    pipe.hmget(K + "user:" + user_id, _USER_FIELDS)
                found = await pipe.execute()
        users = (_user(i, values) for i, values in zip(ids, found, strict=True))
        return [u for u in users if u is not None]

    async def _channels(self, ids: list[str]) -> list[Channel]:
        with unavailable_on_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel_id in ids:
                    pipe.hmget(K + "channel:" + channel_id, _CHANNEL_FIELDS)
                found = await pipe.execute()
        return [
            Channel(i, v[0].decode(), v[1].decode(), v[2].decode(), v[3] and v[3].decode())
            for i, v in zip(ids, found, strict=True)
            if v[0] is not None
        ]


def _fold(name: str) -> str:
    """Names compare case-insensitively in ASCII, as SQLite's NOCASE does."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _user(user_id: str, values: list[bytes | None]) -> User | None:
    username, display_name, bot, owner_id = values
    if username is None or display_name is None:
        return None
    return User(
        user_id,
        username.decode(),
        display_name.decode(),
        bot == b"1",
        owner_id.decode() if owner_id else None,
    )
