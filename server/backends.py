"""Which Store, Broker and LiveState a deployment uses: embedded, or PostgreSQL and Redis."""

from __future__ import annotations

from server.broker import Broker, MemoryBroker
from server.live import LiveState, MemoryLiveState
from server.settings import Settings
from server.store import Store
from server.store.sqlite import SQLiteStore


def store_from(settings: Settings) -> Store:
    """The store the settings name (unopened)."""
    if settings.postgres:
        from server.store.postgres import PostgresStore

        return PostgresStore(settings.database_url, community_name=settings.community_name)
    return SQLiteStore(
        settings.sqlite_path,
        community_name=settings.community_name,
        synchronous=settings.sqlite_synchronous,
    )


def live_from(settings: Settings) -> LiveState:
    """The fast, forgettable state the settings name (not started)."""
    if settings.redis_url:
        from server.live.redis import RedisLiveState

        return RedisLiveState(settings.redis_url, presence_timeout_ms=settings.presence_timeout_ms)
    return MemoryLiveState()


def broker_from(settings: Settings) -> Broker:
    """The broker the settings name (not started)."""
    if settings.redis_url:
        from server.broker.redis import RedisBroker

        return RedisBroker(settings.redis_url)
    return MemoryBroker()
