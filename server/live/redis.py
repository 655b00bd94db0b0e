"""The LiveState of the scaled deployment: Redis, shared by every process.

Keys (all forgettable; a Redis restart only resets presence and claims):

- ``agora:presence:<user>``: hash, ``<node>/<session>`` -> ``online``/``idle``;
- ``agora:presence-status:<user>``: the user's last reported status;
- ``agora:node-users:<node>``: the users a process holds sessions of;
- ``agora:nodes``: sorted set, process -> the time its heartbeat runs out;
- ``agora:claim:<key>``: a claim, expiring by itself;
- ``agora:count:<key>``: a throttle counter, expiring with its window.

A session's change and the user's new status are computed in one script, so
two processes changing one user's sessions at once report each change once.
Every process renews its heartbeat every ``timeout / 3``; one whose
heartbeat ran out is swept by whichever survivor first removes it from
``agora:nodes`` (``ZREM`` answers 1 to one caller only): its sessions go, and
each user whose status changed is reported once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis

from server.ids import new_id
from server.live.base import OnPresenceChange
from server.redis_support import connection_pool, unavailable_on_errors

log = logging.getLogger("agora.live")

K = "agora:"
#: Connections to Redis per process for live state.
MAX_CONNECTIONS = 16

# The status of a user from the hash of their sessions; sets the last reported
# status and answers the new one when it changed, else false.
_STATUS = """
local status = 'offline'
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
    if v == 'online' then status = 'online' break end
    status = 'idle'
end
local before = redis.call('GET', KEYS[2]) or 'offline'
if status == 'offline' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], status) end
if status == before then return false end
return status
"""
# KEYS: presence hash, status key, node-users set; ARGV: field, status ('' = gone), user
_UPDATE = (
    """
if ARGV[2] == '' then
    redis.call('HDEL', KEYS[1], ARGV[1])
    local prefix = string.match(ARGV[1], '^[^/]*/')
    local here = false
    for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
        if string.sub(field, 1, string.len(prefix)) == prefix then here = true break end
    end
    if not here then redis.call('SREM', KEYS[3], ARGV[3]) end
else
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
    redis.call('SADD', KEYS[3], ARGV[3])
end
"""
    + _STATUS
)
# KEYS: presence hash, status key; ARGV: the dead node's field prefix
_SWEEP = (
    """
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(field, 1, string.len(ARGV[1])) == ARGV[1] then
        redis.call('HDEL', KEYS[1], field)
    end
end
"""
    + _STATUS
)
# KEYS: the counter; ARGV: limit, window in ms. 0 if counted, else ms until the window closes.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n <= tonumber(ARGV[1]) then return 0 end
redis.call('DECR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return tonumber(ARGV[2]) end
return math.max(1, left)
"""
# KEYS: the counter. Never below 0, never a key without its expiry.
_RELEASE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
"""


class RedisLiveState:
    def __init__(self, url: str, *, presence_timeout_ms: int = 30_000) -> None:
        self.node = new_id()
        self.timeout_ms = presence_timeout_ms
        self._redis = Redis(connection_pool=connection_pool(url, max_connections=MAX_CONNECTIONS))
        self._update = self._redis.register_script(_UPDATE)
        self._sweep = self._redis.register_script(_SWEEP)
        self._hit = self._redis.register_script(_HIT)
        self._release = self._redis.register_script(_RELEASE)
        self._on_change: OnPresenceChange | None = None
        self._beat: asyncio.Task[None] | None = None

    async def start(self, on_change: OnPresenceChange) -> None:
        self._on_change = on_change
        await self._heartbeat()
        self._beat = asyncio.create_task(self._keep_beating())

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        # Leaving cleanly: the others sweep this node's sessions at once.
        with contextlib.suppress(Exception):
            await self._redis.zadd(K + "nodes", {self.node: 0})
        await self._redis.aclose(close_connection_pool=True)

    async def update(self, user_id: str, session_id: str, status: str | None) -> str | None:
        with unavailable_on_errors():
            changed = await self._update(
                keys=[
                    K + "presence:" + user_id,
                    K + "presence-status:" + user_id,
                    K + "node-users:" + self.node,
                ],
                args=[f"{self.node}/{session_id}", status or "", user_id],
            )
        return changed.decode() if changed else None

    async def statuses(self, user_ids: list[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        with unavailable_on_errors():
            found = await self._redis.mget([K + "presence-status:" + u for u in user_ids])
        return {u: s.decode() for u, s in zip(user_ids, found, strict=True) if s is not None}

    async def claim(self, key: str, ms: int) -> int:
        with unavailable_on_errors():
            if await self._redis.set(K + "claim:" + key, self.node, px=ms, nx=True):
                return 0
            return max(1, await self._redis.pttl(K + "claim:" + key))

    async def hit(self, key: str, limit: int, ms: int) -> int:
        with unavailable_on_errors():
            return int(await self._hit(keys=[K + "count:" + key], args=[limit, ms]))

    async def release(self, key: str) -> None:
        with unavailable_on_errors():
            await self._release(keys=[K + "count:" + key])

    # liveness of the processes

    async def _keep_beating(self) -> None:
        while True:
            await asyncio.sleep(self.timeout_ms / 3000)
            try:
                await self._heartbeat()
                await self._sweep_dead()
            except Exception as exc:  # Redis away: try again next beat
                log.warning("presence heartbeat failed: %s", exc)

    async def _heartbeat(self) -> None:
        with unavailable_on_errors():
            await self._redis.zadd(K + "nodes", {self.node: _now_ms() + self.timeout_ms})

    async def _sweep_dead(self) -> None:
        dead = await self._redis.zrangebyscore(K + "nodes", "-inf", _now_ms())
        for raw in dead:
            node = raw.decode()
            if node == self.node or not await self._redis.zrem(K + "nodes", node):
                continue  # this one lives, or another survivor sweeps it
            users = K + "node-users:" + node
            for user in await self._redis.smembers(users):
                user_id = user.decode()
                changed = await self._sweep(
                    keys=[K + "presence:" + user_id, K + "presence-status:" + user_id],
                    args=[node + "/"],
                )
                if changed and self._on_change is not None:
                    await self._on_change(user_id, changed.decode())
            await self._redis.delete(users)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
