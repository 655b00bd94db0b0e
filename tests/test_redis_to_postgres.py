"""The way from the Redis store to PostgreSQL: ``agora export`` there, ``agora import`` here.

Run once before the Redis store was removed (issue 8); kept in the history.
"""

from __future__ import annotations

from pathlib import Path

from server import communities, transfer
from server.store.postgres import PostgresStore
from server.store.redis import RedisStore
from tests.conftest import PostgresProcess, RedisProcess


async def test_a_redis_store_community_exports_and_imports_into_postgres_intact(
    tmp_path: Path, shared_redis: RedisProcess, postgres: PostgresProcess
) -> None:
    source = RedisStore(shared_redis.url)
    await source.open()
    target = PostgresStore(postgres.create_database())
    await target.open()
    try:
        ann = await source.create_user("ann", "Ann", "h")
        bob = await source.create_user("bob", "Bob", "h")
        bot = await source.create_user("helper", "Helper", "", bot=True, owner_id=ann.id)
        club = await source.create_community("Book club", ann.id)
        general = await source.create_channel(club.id, "general")
        prose = await source.create_channel(club.id, "prose")
        for user in (ann, bob, bot):
            if user is not ann:
                await source.set_role(club.id, user.id, "member")
            channel, d = await communities.join_event(source, club.id, user)
            await source.append(channel, "member.joined", d)
        for i in range(300):
            author = (ann, bob)[i % 2]
            await source.append(
                (general, prose)[i % 3 == 0].id,
                "message.created",
                {
                    "message": {
                        "id": f"m{i}",
                        "text": f"ünïcode {i} 👋",
                        "author": author.public(),
                        "nonce": f"n{i}",
                    }
                },
                idempotency=(author.id, f"n{i}"),
            )
        path = tmp_path / "club.json"
        exported = await transfer.export_community(source, club, path, lambda _: None)
        imported = await transfer.import_data(target, transfer.load(path), lambda _: None)

        assert imported.events == exported == 303
        assert await target.members(club.id) == await source.members(club.id)
        assert await target.channels(club.id) == await source.channels(club.id)
        for channel in (general, prose):
            head = await source.log_head(channel.id)
            assert (await target.log_head(channel.id)).offset == head.offset
            frames = await target.read_after(channel.id, 0, 1000)
            assert frames == await source.read_after(channel.id, 0, 1000)  # byte for byte
        retry = await target.append(general.id, "message.created", {}, idempotency=(bob.id, "n1"))
        assert not retry.created and retry.event["d"]["message"]["id"] == "m1"
    finally:
        await source.close()
        await target.close()
