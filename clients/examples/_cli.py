"""The command line every example bot shares: where to connect, and as whom."""

from __future__ import annotations

import argparse
import os

from clients.bot import Bot


def parser(description: str) -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument(
        "--server",
        default=os.environ.get("AGORA_SERVER", "ws://127.0.0.1:8000"),
        help="gateway base URL (env AGORA_SERVER; default ws://127.0.0.1:8000)",
    )
    cli.add_argument(
        "--token",
        default=os.environ.get("AGORA_BOT_TOKEN"),
        help="the bot account's token (env AGORA_BOT_TOKEN)",
    )
    cli.add_argument(
        "--channel",
        action="append",
        help="a channel name or id to serve; repeat for more (default: every text and "
        "workshop channel)",
    )
    return cli


def run(bot: Bot, cli: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.token:
        cli.error("give the bot's token with --token or AGORA_BOT_TOKEN")
    bot.run(args.server, args.token, channels=args.channel)
