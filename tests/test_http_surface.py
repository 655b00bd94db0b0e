"""The HTTP surface (issue 13, item 7): JSON bodies only, browser security headers, the
WebSocket's Host check against ``public_origin``, and who may read ``/metrics``."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from protocol import Encoding, decode
from tests.conftest import (
    AgoraProcess,
    closed_with,
    documented_close,
    free_port,
    http_request,
    timeout,
)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
NOT_JSON = {
    "error": {
        "code": "bad_request",
        "message": "the body must be JSON, sent with Content-Type: application/json",
    }
}
LOGIN = b'{"username": "nobody-here", "password": "not the password"}'


# JSON bodies only


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
)
def test_a_body_that_is_not_declared_json_is_refused_with_415(
    server: AgoraProcess, content_type: str
) -> None:
    answer = http_request(
        "POST", server.http + "/api/v1/auth/login", data=LOGIN, content_type=content_type
    )
    assert answer.status == 415
    assert answer.json() == NOT_JSON


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8"])
def test_a_json_body_reaches_the_route(server: AgoraProcess, content_type: str) -> None:
    answer = http_request(
        "POST", server.http + "/api/v1/auth/login", data=LOGIN, content_type=content_type
    )
    assert answer.status == 401  # the route ran: a wrong password
    assert answer.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/bots"),
        ("POST", "/api/v1/bots/1/tokens"),
        ("DELETE", "/api/v1/any/route/added/later"),
    ],
)
def test_every_api_route_refuses_a_body_not_declared_json(
    server: AgoraProcess, method: str, path: str
) -> None:
    answer = http_request(method, server.http + path, data=b"{}", content_type="text/plain")
    assert (answer.status, answer.json()) == (415, NOT_JSON)


def test_a_request_without_a_body_needs_no_content_type(server: AgoraProcess) -> None:
    answer = http_request("POST", server.http + "/api/v1/bots/1/tokens", content_type="")
    assert answer.status == 401  # the route ran: no bearer token


# headers for browsers


@pytest.mark.parametrize("path", ["/", "/index.html", "/app.js", "/app.css", "/invite/abc"])
def test_the_web_client_is_served_with_a_content_security_policy(
    server: AgoraProcess, path: str
) -> None:
    answer = http_request("GET", server.http + path)
    assert answer.status == 200
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_api_answers_and_errors_carry_nosniff(server: AgoraProcess) -> None:
    for answer in (
        http_request("GET", server.http + "/healthz"),
        http_request("POST", server.http + "/api/v1/auth/login", data=LOGIN),
        http_request("GET", server.http + "/no-such-file"),
    ):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-security-policy"] == CSP


# /metrics


def test_metrics_with_a_token_need_it_as_a_bearer_token(make_server) -> None:
    server = make_server(metrics_token="s3cret-metrics")
    for node in server.nodes:
        url = node.http + "/metrics"
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret-metrics"}):
            answer = http_request("GET", url, headers=headers)
            assert answer.status == 401
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.json()["error"]["code"] == "unauthorized"
        answer = http_request("GET", url, headers={"authorization": "Bearer s3cret-metrics"})
        assert answer.status == 200
        assert b"agora_connections" in answer.body


def test_metrics_on_their_own_address_are_served_there_only(make_server) -> None:
    port = free_port()
    server = make_server(metrics_address=f"127.0.0.1:{port}")
    metrics = f"http://127.0.0.1:{port}"
    answer = http_request("GET", metrics + "/metrics")
    assert answer.status == 200 and b"agora_sessions" in answer.body
    assert http_request("GET", metrics + "/").status == 404
    assert http_request("GET", metrics + "/healthz").status == 404
    for node in server.nodes:
        assert http_request("GET", node.http + "/metrics").status == 404
        assert http_request("GET", node.http + "/healthz").status == 200


async def test_the_metrics_socket_refuses_a_websocket_with_403(make_server) -> None:
    port = free_port()
    make_server(metrics_address=f"127.0.0.1:{port}")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(f"ws://127.0.0.1:{port}/gateway?v=1", proxy=None, open_timeout=timeout(10))
    assert refused.value.response.status_code == 403


# the WebSocket's Host check


async def ws_as(node: AgoraProcess, host: str, origin: str | None) -> ClientConnection:
    """A WebSocket to ``node`` that says ``Host: host`` (the name a browser used)."""
    sock = socket.create_connection(("127.0.0.1", node.port))
    return await connect(
        f"ws://{host}/gateway?v=1&encoding=json",
        sock=sock,
        origin=origin,  # type: ignore[arg-type]
        proxy=None,
        compression=None,
        ping_interval=None,
        open_timeout=timeout(10),
    )


async def hello_of(ws: ClientConnection) -> dict[str, Any]:
    frame = decode(await ws.recv(), Encoding.JSON, max_size=2**20)
    await ws.close()
    return frame


PUBLIC = "https://agora.example"


async def test_a_browser_at_the_public_origin_connects(make_server) -> None:
    server = make_server(public_origin=PUBLIC)
    for node in server.nodes:
        ws = await ws_as(node, "agora.example", PUBLIC)
        assert (await hello_of(ws))["op"] == "hello"


async def test_a_browser_naming_another_host_than_the_public_origin_is_closed_1008(
    make_server,
) -> None:
    server = make_server(public_origin=PUBLIC)
    node = server.nodes[0]
    # DNS rebinding: the attacker's name points at the server; Origin and Host agree
    rebound = f"rebound.example:{node.port}"
    ws = await ws_as(node, rebound, f"http://{rebound}")
    assert await closed_with(ws) == documented_close(1008, "origin not allowed")
    # the public origin's page, through a name that is not the public one
    ws = await ws_as(node, f"127.0.0.1:{node.port}", PUBLIC)
    assert await closed_with(ws) == documented_close(1008, "origin not allowed")


async def test_without_a_public_origin_host_is_not_checked(make_server) -> None:
    node = make_server().nodes[0]
    rebound = f"rebound.example:{node.port}"
    ws = await ws_as(node, rebound, f"http://{rebound}")
    assert (await hello_of(ws))["op"] == "hello"


async def test_a_client_without_origin_connects_whatever_its_host(make_server) -> None:
    node = make_server(public_origin=PUBLIC).nodes[0]
    ws = await ws_as(node, f"10.1.2.3:{node.port}", None)
    assert (await hello_of(ws))["op"] == "hello"
