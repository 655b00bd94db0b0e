"""The command line of ``agora chat``; argparse only, no TUI library."""

from __future__ import annotations

import argparse
import os

DEFAULT_SERVER = "http://127.0.0.1:8000"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("AGORA_SERVER", DEFAULT_SERVER),
        metavar="URL",
        help="http(s):// or ws(s):// address of the server (env AGORA_SERVER; "
        f"default {DEFAULT_SERVER})",
    )
    parser.add_argument("--username", help="log in as this user (asks for the password)")
    parser.add_argument(
        "--token",
        default=os.environ.get("AGORA_TOKEN"),
        help="log in with a token instead of a password (env AGORA_TOKEN)",
    )
    parser.add_argument(
        "--register", action="store_true", help="create the account --username first"
    )
    parser.add_argument("--display-name", help="display name of a new account (--register)")
    parser.add_argument("--channel", metavar="NAME", help="channel to open first")
    parser.add_argument(
        "--remember",
        action="store_true",
        help="remember the token for this server (in $XDG_CONFIG_HOME/agora, mode 0600)",
    )
    parser.add_argument(
        "--logout",
        action="store_true",
        help="revoke the remembered token for this server on the server, and forget it",
    )
    parser.add_argument("--log-file", metavar="PATH", help="write the client's debug log here")
