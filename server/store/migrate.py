"""Schema migrations for both SQL stores, run by Alembic.

The revisions live in ``migrations/versions``; each writes what differs per
dialect side by side. A store migrates its database when it opens (``agora
serve``) and ``agora migrate`` does it alone. PostgreSQL migrations hold an
advisory lock, so several processes starting at once migrate once.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy

#: The newest revision; ``tests/test_store.py`` checks it is Alembic's head.
HEAD = "0005"
#: The key of the advisory lock that makes migrations and bootstraps run one at a time.
LOCK_KEY = int.from_bytes(b"agora")


def upgrade(connection: sqlalchemy.Connection) -> None:
    """Bring the database behind ``connection`` to ``HEAD`` (inside its transaction)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "server.store:migrations")
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def upgrade_sqlite(path: str) -> None:
    """Migrate an SQLite file (created if missing)."""
    if _sqlite_revision(path) == HEAD:
        return  # the common start: skip loading Alembic
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            upgrade(connection)
    finally:
        engine.dispose()


async def upgrade_postgres(url: str) -> None:
    """Migrate a PostgreSQL database, once however many processes start together."""
    if await _postgres_revision(url) == HEAD:
        return  # the common start: skip loading SQLAlchemy and Alembic (about 30 MiB)
    import sqlalchemy
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(sqlalchemy_url(url), poolclass=sqlalchemy.pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY}
            )
            await connection.run_sync(upgrade)
    finally:
        await engine.dispose()


def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` as SQLAlchemy names it with the asyncpg driver."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+asyncpg://{rest}" if scheme in ("postgres", "postgresql") else url


async def _postgres_revision(url: str) -> str | None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=10)
    try:
        return await connection.fetchval("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await connection.close()


def _sqlite_revision(path: str) -> str | None:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return None if row is None else row[0]
