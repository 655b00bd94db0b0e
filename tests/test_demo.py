"""``agora demo``: it starts, the sample workshop is live and its participants take part.

The demo runs as a real subprocess. Embedded, on a SQLite file; scaled, on a
database of the test session's PostgreSQL and a Redis of its own (one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from clients import Client, login
from clients.examples import participants
from server.operator import demo
from tests.conftest import ROOT, RedisProcess, eventually, free_port, shared_postgres, timeout

PASSWORD = "demo password"


@contextlib.asynccontextmanager
async def storage(deployment: str, directory: Path) -> AsyncIterator[list[str]]:
    """The demo's storage options for a deployment."""
    if deployment == "embedded":
        yield ["--db", str(directory / "demo.db")]
        return
    redis = RedisProcess(directory / "redis").start()
    try:
        yield ["--database", shared_postgres().create_database(), "--redis", redis.url]
    finally:
        redis.kill()


async def test_agora_demo_starts_a_live_workshop_whose_participants_take_part(
    deployment: str, tmp_path: Path
) -> None:
    port = free_port()
    async with storage(deployment, tmp_path) as options:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "demo", "--port", str(port),
            "--password", PASSWORD, "--pace", "0.05", "--seed", "7", *options,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert process.stdout is not None
        said: list[str] = []
        try:
            async with asyncio.timeout(timeout(60)):
                while not said or said[-1] != "Ctrl-C stops the demo.":
                    line = await process.stdout.readline()
                    assert line, "the demo ended:\n" + "\n".join(said)
                    said.append(line.decode().rstrip())
            base = f"http://127.0.0.1:{port}"
            assert f"Agora demo is live at {base}/" in said
            assert any("--username host --channel workshop" in line for line in said)

            token = (await login(base, "host", PASSWORD))["token"]
            async with Client(f"ws://127.0.0.1:{port}", token) as host:
                room = host.channel_named("workshop", "Workshop demo")
                await host.subscribe(room)
                followed = host.workshops[room]
                assert followed.workshop is not None
                assert followed.workshop["title"] == demo.TITLE
                assert (followed.current_item() or {}).get("title") == demo.AGENDA[0]["title"]
                poll = followed.workshop["polls"][0]
                assert poll["question"] == demo.POLL[0]
                # the room answers: every participant votes; some raise hands or ask
                await eventually(
                    lambda: followed.poll(poll["id"])["voters"] == 6, "six votes", wait=30
                )
                await host.agenda_next(room)
                await eventually(
                    lambda: bool(
                        followed.workshop["hands"]["queue"] or followed.workshop["questions"]
                    ),
                    "a hand or a question",
                    wait=30,
                )
                people = {name for _, name in participants.PEOPLE}
                messages = [e for e in await host.history(room) if e.t == "message.created"]
                assert people & {e.d["message"]["author"]["name"] for e in messages}
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(timeout(30)):
                    rest = await process.stdout.read()
                    code = await process.wait()
            except TimeoutError:
                process.kill()
                raise
        output = "\n".join(said) + rest.decode()
        assert code == 0, output
        assert "Traceback" not in output, output
