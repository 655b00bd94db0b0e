"""Which Store and Broker a deployment uses: SQLite and in-process, or PostgreSQL and Redis."""

from __future__ import annotations

from server.broker import Broker, MemoryBroker
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


def broker_from(settings: Settings) -> Broker:
    """The broker the settings name (not started)."""
    if settings.redis_url:
        from server.broker.redis import RedisBroker

        return RedisBroker(settings.redis_url)
    return MemoryBroker()
