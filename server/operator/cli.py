"""The ``agora`` command line."""

from __future__ import annotations

import argparse
import logging
import socket
import sys

import uvicorn
from starlette.applications import Starlette

from server.app import create_app
from server.connections import ConnectionGuard, protocol_classes, raise_fd_limit
from server.operator import admin, demo, workers
from server.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn's server, closing sessions with 1001 before uvicorn closes sockets.

    uvicorn's own shutdown would close every WebSocket with 1012 at once; Agora
    first lets each session's in-flight command be answered.
    """

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[override]
        app = self.config.loaded_app
        while hasattr(app, "app") and not hasattr(app, "state"):
            app = app.app  # unwrap uvicorn's middleware
        await app.state.agora.drain()
        await super().shutdown(sockets=sockets)


def serve(settings: Settings, app: Starlette, *, listen_fd: int | None = None) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = uvicorn_config(settings, app)
    # A worker of `--workers` serves the socket its supervisor bound.
    sockets = None if listen_fd is None else [socket.socket(fileno=listen_fd)]
    metrics_listen = settings.metrics_listen
    if metrics_listen is not None:
        # One uvicorn serves both sockets; the app answers /metrics on this one only.
        sockets = sockets or [config.bind_socket()]
        sockets.append(bind_socket(*metrics_listen))
    _Server(config).run(sockets=sockets)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):  # each worker of `--workers` binds it too
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def uvicorn_config(settings: Settings, app: Starlette) -> uvicorn.Config:
    """How uvicorn serves Agora (``agora serve`` and ``agora demo``)."""
    http, ws = protocol_classes(ConnectionGuard(settings, raise_fd_limit()))
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http,
        ws=ws,
        ws_max_size=settings.max_frame,
        ws_per_message_deflate=False,
        ws_ping_interval=None,  # Agora's own heartbeat (4009) watches liveness
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=max(1, settings.shutdown_timeout_ms // 1000),
    )


def main(argv: list[str] | None = None) -> int | None:
    parser = argparse.ArgumentParser(prog="agora", description="Agora discussion server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the server")
    Settings.add_arguments(serve_parser)
    serve_parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    admin.add_commands(commands)
    from clients.terminal import options as chat_options  # argparse only: no TUI library

    chat_options.add_arguments(commands.add_parser("chat", help="the terminal client"))
    demo.add_arguments(
        commands.add_parser(
            "demo", help="a server with a live sample workshop and simulated participants"
        )
    )
    args = parser.parse_args(argv)
    if args.command == "chat":
        from clients.terminal.main import run as chat  # Textual loads for `chat` only

        return chat(args)
    if args.command == "demo":
        try:
            return demo.run(args)
        except ValueError as exc:
            parser.error(str(exc))
    if args.command != "serve":
        raise SystemExit(admin.run(args))
    try:
        settings = Settings.from_env().with_arguments(args)
        settings.check()
        if settings.workers > 1 and args.listen_fd is None:
            return workers.supervise(settings)
        app = create_app(settings)
    except ValueError as exc:
        parser.error(str(exc))
    serve(settings, app, listen_fd=args.listen_fd)
    return None


if __name__ == "__main__":
    sys.exit(main())
