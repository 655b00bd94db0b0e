"""A welcome bot: greets every new member in the channel where their join is announced.

    python -m clients.examples.welcome --server ws://127.0.0.1:8000 --token TOKEN \\
        --message "Welcome, {name}! Tell us what you are reading."

The server announces a join with a ``member.joined`` event in the community's
first text channel; the bot answers there. New bot accounts are not greeted.
"""

from __future__ import annotations

from clients.bot import Bot, Context
from clients.examples import _cli

DEFAULT_MESSAGE = "Welcome, {name}! Introduce yourself, and say !help to see what bots here do."


def build(message: str = DEFAULT_MESSAGE) -> Bot:
    bot = Bot()

    @bot.on("member.joined")
    async def welcome(ctx: Context) -> None:
        member = ctx.event.d["member"]
        if not member.get("bot"):
            await ctx.send(message.format(name=member["name"], username=member["username"]))

    return bot


def main() -> None:
    cli = _cli.parser("Greet new members.")
    cli.add_argument(
        "--message",
        default=DEFAULT_MESSAGE,
        help="the greeting; {name} and {username} are the new member's",
    )
    args = cli.parse_args()
    try:
        args.message.format(name="", username="")
    except (KeyError, IndexError, ValueError) as exc:
        cli.error(f"--message may use only {{name}} and {{username}}: {exc}")
    _cli.run(build(args.message), cli, args)


if __name__ == "__main__":
    main()
