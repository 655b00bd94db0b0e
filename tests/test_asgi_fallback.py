"""Which write path the gateway takes: direct to uvicorn's transport, or ASGI ``send``.

``agora serve`` runs uvicorn's websockets-sansio protocol, whose transport the
outbox writes to directly (server/gateway/transport.py). Under any other server or
protocol every frame goes through ASGI ``send``; this runs the app under
uvicorn's legacy ``websockets`` protocol to prove that path delivers too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import Encoding
from tests.conftest import (
    ROOT,
    AgoraProcess,
    closed_with,
    documented_close,
    general_channel,
    new_user,
    raw_session,
    wait_until_healthy,
)


class LegacyProtocolServer(AgoraProcess):
    def start(self) -> LegacyProtocolServer:
        env = dict(
            os.environ, AGORA_DB=str(self.db), AGORA_RATE_LIMIT="0", AGORA_OUTBOX_LIMIT="65536"
        )
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "server.app:create_app",
            "--ws",
            "websockets",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until_healthy(self.proc, self.http, self.log)
        return self


@pytest.fixture
def legacy(tmp_path: Path) -> Iterator[LegacyProtocolServer]:
    server = LegacyProtocolServer(tmp_path / "legacy.db").start()
    yield server
    server.kill()


@pytest.mark.parametrize("encoding", [Encoding.MSGPACK, Encoding.JSON], ids=["msgpack", "json"])
async def test_events_replies_and_closes_go_through_asgi_send(
    legacy: LegacyProtocolServer, encoding: Encoding
) -> None:
    account = await new_user(legacy)
    reader = await raw_session(legacy, encoding, token=account["token"])
    channel = general_channel(reader.identity)
    await reader.ok("subscribe", {"channel": channel})
    writer = await raw_session(legacy, encoding, token=account["token"])
    for i in range(50):
        await writer.ok("message.send", {"channel": channel, "text": f"via asgi {i}"})
    texts = []
    while len(texts) < 50:
        frame = reader.early.pop(0) if reader.early else await reader.recv()
        if frame["op"] == "event":
            texts.append(frame["d"]["message"]["text"])
    assert texts == [f"via asgi {i}" for i in range(50)]
    bad = await writer.command("identify", {"token": "1.2"})
    assert bad["d"]["code"] == "conflict"
    # the server closes a session: its error, then its close frame, both through `send`
    refused = await raw_session(legacy, encoding)
    assert legacy.metric("agora_connections") == 3
    assert legacy.metric("agora_direct_write_connections") == 0
    answer = await refused.command("identify", {"token": "1.not-the-secret"})
    assert answer["d"]["code"] == "unauthorized"
    assert await closed_with(refused.ws) == documented_close(4001, "bad token")
    assert legacy.metric("agora_closes_total", 'code="4001"') == 1
    await writer.ws.close()
    await reader.ws.close()


async def test_agora_serve_writes_directly_to_the_transport(server: AgoraProcess) -> None:
    """If a uvicorn release changed the internals the fast path relies on, this fails."""
    account = await new_user(server)
    session = await raw_session(server, token=account["token"])
    assert server.metric("agora_direct_write_connections") == server.metric("agora_connections")
    assert server.metric("agora_direct_write_connections") >= 1
    await session.ws.close()
