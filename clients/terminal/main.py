"""``agora chat``: find a token, connect, and run the terminal app.

The token comes from ``--token``/``AGORA_TOKEN``, else from logging in as
``--username`` (or ``--register``) with a password asked at the prompt, else
from the one remembered for this server, else from asking for a username.
Failures before the app starts are printed plainly and exit with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from urllib.parse import urlsplit, urlunsplit

import websockets

from clients.client import (
    AgoraClientError,
    Client,
    CommandError,
    ConnectionClosed,
    login,
    logout,
    register,
)
from clients.terminal.config import TokenStore
from protocol import CloseCode


class Refused(Exception):
    """Why ``agora chat`` could not start; printed as ``agora chat: <reason>``."""


def http_base(url: str) -> str:
    """``http(s)://host:port`` of a server named by an http(s):// or ws(s):// URL."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"http": "http", "https": "https", "ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise Refused(f"not an http(s):// or ws(s):// server address: {url!r}")
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def ws_base(http: str) -> str:
    return "ws" + http.removeprefix("http")


def run(args: argparse.Namespace) -> int:
    if args.log_file:
        logging.basicConfig(
            filename=args.log_file,
            level=logging.DEBUG,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    else:
        # Python's last-resort handler would print warnings over the screen
        logging.getLogger().addHandler(logging.NullHandler())
    try:
        return asyncio.run(_run(args))
    except Refused as exc:
        print(f"agora chat: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):  # ^C or ^D at a prompt
        print(file=sys.stderr)
        return 130


async def _run(args: argparse.Namespace) -> int:
    server = http_base(args.server)
    tokens = TokenStore()
    if args.logout:
        kept = tokens.get(server)
        if kept is None:
            print(f"no token kept for {server}")
            return 0
        tokens.forget(server)
        print(f"forgot the token for {server}{await _revoked(server, kept['token'])}")
        return 0
    token, remembered = await _token(args, server, tokens)
    client = Client(ws_base(server), token)
    try:
        await client.connect()
    except ConnectionClosed as exc:
        if exc.code != CloseCode.NOT_AUTHENTICATED:
            raise Refused(f"the server closed the connection: {exc}") from None
        hint = " (--logout forgets it)" if remembered else ""
        raise Refused(f"the server refused the token{hint}: {exc.reason}") from None
    except (OSError, TimeoutError, websockets.InvalidHandshake, AgoraClientError) as exc:
        raise Refused(f"cannot connect to {server}: {exc}") from None
    if args.remember:
        tokens.put(server, token, client.identity["user"]["username"])
    from clients.terminal.app import ChatApp  # loaded once there is something to show

    app = ChatApp(client, channel=args.channel)
    try:
        await app.run_async()
    finally:
        await client.close()
    return app.return_code or 0


async def _revoked(server: str, token: str) -> str:
    """Revoke ``token`` on the server; what to add to the line that says it is forgotten."""
    try:
        await logout(server, token)
    except CommandError as exc:
        if exc.code == "unauthorized":
            return " (the server no longer took it)"
        return f" (the server did not revoke it: {exc.message})"
    except OSError as exc:
        return f" (the server could not be reached to revoke it: {exc})"
    return ", and the server revoked it"


async def _token(args: argparse.Namespace, server: str, tokens: TokenStore) -> tuple[str, bool]:
    """The token to identify with, and whether it was the remembered one."""
    if args.token and not args.register:
        return args.token, False
    username = args.username
    if not username and not args.register and (kept := tokens.get(server)):
        return kept["token"], True
    if not username:
        username = input("Username: ").strip()
    password = getpass.getpass("Password: ")
    try:
        if args.register:
            if getpass.getpass("Repeat the password: ") != password:
                raise Refused("the passwords differ")
            account = await register(server, username, password, args.display_name)
        else:
            account = await login(server, username, password)
    except CommandError as exc:
        raise Refused(exc.message) from None
    except OSError as exc:
        raise Refused(f"cannot reach {server}: {exc}") from None
    return account["token"], False
