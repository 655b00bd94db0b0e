"""The gateway under generated input (hypothesis), over real sockets to a real server.

One server (or cluster) per deployment for the whole module; each test drives one
session per encoding through ``AGORA_FUZZ_EXAMPLES`` (default 150) generated messages,
one at a time, and checks every answer against ``tests/fuzz_strategies.py``'s reading
of docs/protocol.md. ``benchmarks/fuzz.py`` runs the same strategies for longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from protocol import Encoding
from tests.conftest import ServerLog, new_user, start_deployment, stop_deployment, timeout
from tests.fuzz_strategies import (
    Case,
    Known,
    commands,
    invalid_commands,
    not_frames,
    raw_bytes,
    raw_text,
)

EXAMPLES = int(os.environ.get("AGORA_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # real round trips: timing is not what is tested
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class Fuzzed:
    """The module's server, its two accounts and the ids a fuzzed value may name."""

    def __init__(self, server: Any, owner: dict[str, Any], fuzzer: dict[str, Any]) -> None:
        self.server = server
        self.owner = owner
        self.fuzzer = fuzzer
        self.log = ServerLog(server)
        self.known = Known(())
        self.ids = itertools.count(10)


@pytest.fixture(scope="module")
def fuzzed(deployment: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    server = start_deployment(deployment, tmp_path_factory.mktemp("fuzz"), rate_limit=0)
    try:
        owner = asyncio.run(new_user(server.nodes[0], "owner"))
        fuzzer = asyncio.run(new_user(server.nodes[-1], "fuzzer"))
        state = Fuzzed(server, owner, fuzzer)
        with _session(state, Encoding.JSON) as ws:
            identity = _command(ws, Encoding.JSON, "identify", {"token": fuzzer["token"]})["d"]
        community = identity["communities"][0]
        state.known = Known(
            (
                community["id"],
                *(c["id"] for c in community["channels"]),
                owner["user"]["id"],
                fuzzer["user"]["id"],
            )
        )
        yield state
    finally:
        stop_deployment(server)


@contextlib.contextmanager
def _session(
    fuzzed: Fuzzed, encoding: Encoding, *, identified: bool = False
) -> Iterator[ClientConnection]:
    """A session on the next node, past ``hello`` (and identified as the fuzzer)."""
    node = fuzzed.server.nodes[next(fuzzed.ids) % len(fuzzed.server.nodes)]
    with connect(
        f"{node.ws}/gateway?v=1&encoding={encoding.value}",
        compression=None,
        max_size=None,
        open_timeout=timeout(10),
    ) as ws:
        hello = _decode(ws.recv(timeout(10)), encoding)
        assert hello["op"] == "hello"
        if identified:
            _command(ws, encoding, "identify", {"token": fuzzed.fuzzer["token"]})
        yield ws


def _decode(message: bytes | str, encoding: Encoding) -> dict[str, Any]:
    if encoding is Encoding.JSON:
        return json.loads(message)
    return msgpack.unpackb(message, raw=False)


def _answer(ws: ClientConnection, encoding: Encoding) -> dict[str, Any]:
    """The next ``reply`` or ``error``, past any events."""
    while True:
        frame = _decode(ws.recv(timeout(10)), encoding)
        if frame["op"] in ("reply", "error"):
            return frame


def _command(ws: ClientConnection, encoding: Encoding, op: str, d: dict[str, Any]) -> Any:
    frame = {"op": op, "id": 1, "d": d}
    ws.send(json.dumps(frame) if encoding is Encoding.JSON else msgpack.packb(frame))
    answer = _answer(ws, encoding)
    assert answer["op"] == "reply" and answer["id"] == 1, answer
    return answer


def _fuzz(
    fuzzed: Fuzzed, encoding: Encoding, cases: Callable[[Encoding], st.SearchStrategy[Case]]
) -> int:
    """Send every generated case on one identified session; check each answer. Returns
    how many were sent; the session must still answer a ping."""
    sent = itertools.count(1)
    with _session(fuzzed, encoding, identified=True) as ws:

        @FUZZ
        @given(cases(encoding))
        def run(case: Case) -> None:
            ws.send(case.message)
            next(sent)
            problem = case.check(_answer(ws, encoding))
            assert problem is None, problem

        run()
        _command(ws, encoding, "ping", {})  # the session lived through all of it
    fuzzed.log.assert_no_traceback()
    return next(sent) - 1


def _state(fuzzed: Fuzzed) -> tuple[dict[str, Any], dict[str, tuple[int, str]]]:
    """A fresh identify's answer (but its session id) and every channel's head and epoch."""
    with _session(fuzzed, Encoding.JSON) as ws:
        identity = _command(ws, Encoding.JSON, "identify", {"token": fuzzed.fuzzer["token"]})["d"]
        del identity["session"]
        heads = {}
        for community in identity["communities"]:
            for channel in community["channels"]:
                d = _command(ws, Encoding.JSON, "subscribe", {"channel": channel["id"]})["d"]
                heads[channel["id"]] = (d["offset"], d["epoch"])
        return identity, heads


@pytest.mark.parametrize("encoding", [Encoding.MSGPACK, Encoding.JSON], ids=["msgpack", "json"])
def test_messages_that_are_not_frames_get_bad_frame_without_an_id(
    fuzzed: Fuzzed, encoding: Encoding
) -> None:
    def cases(encoding: Encoding) -> st.SearchStrategy[Case]:
        return st.one_of(not_frames(encoding), raw_bytes(encoding), raw_text(encoding))

    assert _fuzz(fuzzed, encoding, cases) >= EXAMPLES // 2


@pytest.mark.parametrize("encoding", [Encoding.MSGPACK, Encoding.JSON], ids=["msgpack", "json"])
def test_invalid_commands_get_bad_request_or_too_large_and_change_nothing(
    fuzzed: Fuzzed, encoding: Encoding
) -> None:
    before = _state(fuzzed)

    assert _fuzz(fuzzed, encoding, lambda e: invalid_commands(e, fuzzed.known)) >= EXAMPLES // 2

    assert _state(fuzzed) == before


@pytest.mark.parametrize("encoding", [Encoding.MSGPACK, Encoding.JSON], ids=["msgpack", "json"])
def test_valid_commands_with_fuzzed_values_get_a_reply_or_a_documented_error(
    fuzzed: Fuzzed, encoding: Encoding
) -> None:
    assert _fuzz(fuzzed, encoding, lambda e: commands(e, fuzzed.known)) >= EXAMPLES // 2


@pytest.mark.parametrize(
    ("op", "d"),
    [
        ("message.send", {"channel": "CHANNEL", "text": "a\x00b"}),
        ("resource.add", {"community": "COMMUNITY", "title": "t", "tags": ["x\x00"]}),
        ("agenda.goto", {"channel": "\x00", "index": 0}),
    ],
    ids=["text", "tag", "id"],
)
def test_a_nul_character_in_a_string_is_bad_request_on_both_stores(
    fuzzed: Fuzzed, op: str, d: dict[str, Any]
) -> None:
    """Found by the fuzzer: PostgreSQL's text cannot hold U+0000 (``internal`` and a
    traceback in the scaled deployment, stored as sent on SQLite)."""
    community, channel = fuzzed.known.ids[:2]
    names = {"CHANNEL": channel, "COMMUNITY": community}
    d = {k: names.get(v, v) if isinstance(v, str) else v for k, v in d.items()}
    with _session(fuzzed, Encoding.MSGPACK, identified=True) as ws:
        ws.send(msgpack.packb({"op": op, "id": 7, "d": d}))
        answer = _answer(ws, Encoding.MSGPACK)
    assert (answer["op"], answer["id"], answer["d"]["code"]) == ("error", 7, "bad_request")
    assert "U+0000" in answer["d"]["message"]
    fuzzed.log.assert_no_traceback()


def test_the_fuzzed_server_logged_no_traceback(fuzzed: Fuzzed) -> None:
    """Last: whatever the sessions above left running (timers, workshops) ran clean too."""
    with _session(fuzzed, Encoding.MSGPACK, identified=True) as ws:
        _command(ws, Encoding.MSGPACK, "ping", {})
    fuzzed.log.assert_no_traceback()
