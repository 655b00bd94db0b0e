import os

from clients import Bot, Context

bot = Bot(prefix="!")


@bot.command("hello")
async def hello(ctx: Context, args: str) -> None:
    """Say hello back."""
    await ctx.reply("Hello! Say !help to see what I can do.")


@bot.on("member.joined")
async def welcome(ctx: Context) -> None:
    await ctx.send(f"Welcome, {ctx.event.d['member']['name']}!")


bot.run(os.environ.get("AGORA_SERVER", "ws://127.0.0.1:8000"), os.environ["AGORA_BOT_TOKEN"])
