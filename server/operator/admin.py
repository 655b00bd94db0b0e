"""The operator's commands: users, communities, channels, members, bots.

They run on the server machine against the storage ``agora serve`` uses (the
same ``--db`` / ``--database`` / ``AGORA_*`` settings) and talk to the store
directly, not to a running server. Output is one tab-separated line per
object, for scripts; errors go to stderr with exit code 1.

An account that joins a community here gets its ``member.joined`` appended
to the store, not published: a running embedded server's live subscribers
get it with the next event of that channel (the hub repairs the gap from the
store); history and replay have it at once.

A disabled account (``agora user disable``) can neither log in nor identify at
once. Running servers close its open sessions (4001 ``account disabled``) at
once when the command is given their Redis (``--redis``), else within their
``revocation_check_ms``, when they next check their sessions' tokens. A password
set with ``agora user password`` revokes every token of the account, and its
sessions close the same way (4001 ``password changed`` through Redis, ``token
revoked`` when a server finds the tokens gone).

Role changes and channel changes made here go into the community's audit log
with the actor ``operator``, like the app's own.

No command creates an SQLite database file that does not exist unless given
``--create``: run in the wrong folder, it says so instead of working on a new,
empty ``agora.db``. (``agora serve`` creates its database as before.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

from protocol import AuthCloseReason
from server.backends import store_from
from server.domain import audit, communities, tokens
from server.domain.accounts import Invalid, check_account, hash_password, issue_token
from server.domain.channels import channel_name
from server.errors import Unavailable
from server.ids import now_ms
from server.operator import transfer
from server.settings import Settings
from server.store import Channel, Community, Conflict, Store, User
from server.store.migrate import HEAD

T = TypeVar("T")

#: Longest community name, in characters.
MAX_COMMUNITY_NAME = 64


class AdminError(Exception):
    """What went wrong, for the operator; the command exits with 1."""


Command = Callable[[Store, argparse.Namespace, TextIO], Awaitable[None]]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add every admin command to the ``agora`` parser's subcommands."""

    def group(name: str, help: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = commands.add_parser(name, help=help, description=help)
        return parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        run: Command,
        help: str,
    ) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, help=help, description=help)
        parser.set_defaults(run=run)
        storage = parser.add_argument_group("storage (as for agora serve)")
        storage.add_argument("--db", help="SQLite database file (default agora.db, env AGORA_DB)")
        storage.add_argument(
            "--database",
            dest="database_url",
            help="postgresql:// or sqlite:/// URL; wins over --db (env AGORA_DATABASE_URL)",
        )
        storage.add_argument(
            "--redis",
            dest="redis_url",
            help="the servers' Redis URL: 'user disable' and 'user password' close the"
            " account's sessions at once (env AGORA_REDIS_URL)",
        )
        storage.add_argument(
            "--create",
            action="store_true",
            help="create the SQLite database file if it does not exist (else: an error)",
        )
        return parser

    user = group("user", "manage accounts")
    p = command(user, "create", user_create, "create an account (asks for its password)")
    p.add_argument("username")
    p.add_argument("--name", help="display name (default: the username)")
    _password_stdin(p)
    command(user, "list", user_list, "list accounts: id, username, name, user|bot")
    p = command(user, "password", user_password, "set an account's password")
    p.add_argument("username")
    _password_stdin(p)
    p = command(
        user, "disable", user_disable, "disable an account: no login, no identify, sessions closed"
    )
    p.add_argument("username")
    p = command(user, "enable", user_enable, "enable a disabled account again")
    p.add_argument("username")

    community = group("community", "manage communities")
    p = command(community, "create", community_create, "create a community with a general channel")
    p.add_argument("name")
    p.add_argument("--owner", required=True, metavar="USERNAME", help="its owner")
    command(community, "list", community_list, "list communities: id, name, members")
    p = command(community, "rename", community_rename, "rename a community")
    p.add_argument("community", help="community id or name")
    p.add_argument("name", help="the new name")

    channel = group("channel", "manage channels")
    p = command(channel, "create", channel_create, "create a text channel in a community")
    p.add_argument("community", help="community id or name")
    p.add_argument("name")
    p = command(channel, "list", channel_list, "list channels: community id, id, name, kind")
    p.add_argument("community", nargs="?", help="community id or name (default: all)")
    p = command(channel, "rename", channel_rename, "rename a channel")
    p.add_argument("community", help="community id or name")
    p.add_argument("channel", help="channel id or name")
    p.add_argument("name", help="the new name")
    p = command(channel, "archive", channel_archive, "archive a channel: readable, closed to posts")
    p.add_argument("community", help="community id or name")
    p.add_argument("channel", help="channel id or name")
    p.add_argument("--undo", action="store_true", help="open an archived channel again")

    member = group("member", "manage community members")
    p = command(member, "add", member_add, "make an account a member, or change its role")
    p.add_argument("community", help="community id or name")
    p.add_argument("username")
    p.add_argument(
        "--role",
        choices=communities.ROLES,
        default="member",
        help="one of %(choices)s (default: %(default)s)",
    )
    p = command(member, "list", member_list, "list members: id, username, name, role, user|bot")
    p.add_argument("community", help="community id or name")

    bot = group("bot", "manage bot accounts")
    p = command(bot, "create", bot_create, "create a bot and print its token (shown only once)")
    p.add_argument("username")
    p.add_argument("--owner", required=True, metavar="USERNAME", help="the person responsible")
    p.add_argument("--name", help="display name (default: the username)")
    command(bot, "list", bot_list, "list bots: id, username, name, owner's username")
    p = command(bot, "token", bot_token, "print a fresh token for a bot")
    p.add_argument("username")

    p = command(commands, "export", export, "write a community, its members and logs to a file")
    p.add_argument("community", help="community id or name")
    p.add_argument("file", help="the JSON file to write")
    p = command(commands, "import", import_, "load a file made by agora export")
    p.add_argument("file", help="the JSON file to read")
    command(commands, "migrate", migrate, "bring the database's schema up to date, then exit")
    command(
        commands,
        "renew-epochs",
        renew_epochs,
        "give every channel a new epoch, so that clients refetch: run it, with the server"
        " stopped, after restoring the database from a backup",
    )


def run(args: argparse.Namespace) -> int:
    """Run the admin command ``args`` names; the process's exit code."""
    try:
        settings = Settings.from_env().with_arguments(args)
        settings.check()
    except ValueError as exc:
        print(f"agora: error: {exc}", file=sys.stderr)
        return 1
    try:
        _check_exists(settings, args.create)
        asyncio.run(_with_store(settings, args))
    except AdminError as exc:
        print(f"agora: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_exists(settings: Settings, create: bool) -> None:
    """Refuse an SQLite file that does not exist, unless asked to create one."""
    if settings.postgres or create:
        return
    path = Path(settings.sqlite_path)
    if not path.exists():
        raise AdminError(
            f"there is no database file {path.resolve()}; run this where the server's"
            " database is, or name it with --db FILE (or AGORA_DB); add --create to make"
            " a new one"
        )


async def _with_store(settings: Settings, args: argparse.Namespace) -> None:
    args.settings = settings  # for the few commands that reach beyond the store
    store = store_from(settings)
    await store.open()
    try:
        await args.run(store, args, sys.stdout)
    finally:
        await store.close()


async def renew_epochs(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    # A restored backup rolled every log back: offsets clients saw may name other events
    # once new ones are appended, unless the epochs change (docs/protocol.md §5.3).
    _row(out, "channels", str(await store.renew_epochs()))


async def migrate(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    # Opening the store migrated it.
    _row(out, "schema", HEAD)


# users


async def user_create(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    name = _checked(args.username, args.name)
    password_hash = hash_password(_read_password(args.password_stdin))
    user = await _created(store.create_user(args.username, name, password_hash))
    await announce_new_account(store, user)
    _row(out, user.id, user.username, user.display_name, _kind(user))


async def user_list(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    for user in await store.users():
        _row(out, user.id, user.username, user.display_name, _kind(user))


async def user_password(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    user = await find_user(store, args.username)
    if user.bot:
        raise AdminError(f"'{user.username}' is a bot; bots use tokens (agora bot token)")
    await store.set_password(user.id, hash_password(_read_password(args.password_stdin)))
    # As a password change over HTTP does: a reset after a leak must also end the
    # sessions of whoever holds the account's tokens.
    await store.revoke_tokens(user.id)
    if args.settings.redis_url:
        await _tell_servers(args.settings.redis_url, user.id, AuthCloseReason.PASSWORD_CHANGED)
    _row(out, user.id, user.username)


async def user_disable(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    user = await find_user(store, args.username)
    if await store.disabled_ms(user.id) is None:
        await store.set_disabled(user.id, now_ms())
    if args.settings.redis_url:  # the servers hear it at once, not at their next check
        await _tell_servers(args.settings.redis_url, user.id, AuthCloseReason.ACCOUNT_DISABLED)
    _row(out, user.id, user.username, "disabled")


async def _tell_servers(redis_url: str, user_id: str, reason: AuthCloseReason) -> None:
    """Publish that the account's sessions must close, on the servers' broker (best
    effort: each server also finds it in the store within its ``revocation_check_ms``)."""
    from server.broker.redis import RedisBroker  # only for this command

    broker = RedisBroker(redis_url)
    try:
        await broker.start(lambda channel, frame: None, lambda: None)
        try:
            frame = tokens.revocation_frame(user_id, None, reason)
            await broker.publish(tokens.REVOCATIONS, frame)
        finally:
            await broker.stop()
    except Unavailable as exc:
        print(
            f"agora: warning: Redis not reached ({exc}); servers close the sessions"
            " at their next check",
            file=sys.stderr,
        )


async def user_enable(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    user = await find_user(store, args.username)
    await store.set_disabled(user.id, None)
    _row(out, user.id, user.username, "enabled")


# communities and channels


async def community_create(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    owner = await find_user(store, args.owner)
    name = _community_name(args.name)
    try:
        community = await store.create_community(name, owner.id)
    except Conflict:
        raise AdminError(await _name_taken(store, name)) from None
    await store.create_channel(community.id, "general")
    channel, d = await communities.join_event(store, community.id, owner)
    await store.append(channel, "member.joined", d)
    _row(out, community.id, community.name)


async def community_list(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    for community in await store.communities():
        _row(out, community.id, community.name, str(len(await store.members(community.id))))


async def community_rename(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    community = await find_community(store, args.community)
    name = _community_name(args.name)
    try:
        renamed = await store.rename_community(community.id, name)
    except Conflict:
        raise AdminError(await _name_taken(store, name)) from None
    _row(out, renamed.id, renamed.name)


async def channel_create(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    community = await find_community(store, args.community)
    name = _channel_name(args.name)
    channel = await _created(store.create_channel(community.id, name))
    await audit.write(
        store,
        community.id,
        audit.OPERATOR,
        "channel.create",
        channel.id,
        {"name": channel.name, "kind": channel.kind},
    )
    _row(out, channel.id, channel.name)


async def channel_rename(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    community = await find_community(store, args.community)
    channel = await find_channel(store, community, args.channel)
    await _update_channel(store, out, channel, {"name": _channel_name(args.name)})


async def channel_archive(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    community = await find_community(store, args.community)
    channel = await find_channel(store, community, args.channel)
    await _update_channel(store, out, channel, {"archived": not args.undo})


async def _update_channel(
    store: Store, out: TextIO, channel: Channel, changes: dict[str, Any]
) -> None:
    updated = await _created(store.update_channel(channel.id, changes))
    await audit.write(
        store, channel.community_id, audit.OPERATOR, "channel.update", channel.id, changes
    )
    _row(out, updated.id, updated.name, "archived" if updated.archived else "open")


async def channel_list(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    chosen = (
        [await find_community(store, args.community)]
        if args.community
        else await store.communities()
    )
    for community in chosen:
        for channel in await store.channels(community.id):
            _row(out, community.id, channel.id, channel.name, channel.kind)


# members


async def member_add(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    community = await find_community(store, args.community)
    user = await find_user(store, args.username)
    current = await store.role(community.id, user.id)
    joins = current is None
    if current == "owner" and args.role != "owner":
        owners = [u for u, r in await store.members(community.id) if r == "owner"]
        if len(owners) == 1:
            raise AdminError(
                f"'{user.username}' is the only owner of '{community.name}'; a community keeps"
                " an owner: make another member owner first"
            )
    await store.set_role(community.id, user.id, args.role)
    if current != args.role:
        await audit.write(
            store,
            community.id,
            audit.OPERATOR,
            "member.role",
            user.id,
            {"from": current, "to": args.role},
        )
    if joins:
        try:
            channel, d = await communities.join_event(store, community.id, user)
        except LookupError:
            pass  # a community without a text channel has nowhere to announce it
        else:
            await store.append(channel, "member.joined", d)
    _row(out, community.id, user.username, args.role)


async def member_list(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    community = await find_community(store, args.community)
    for user, role in await store.members(community.id):
        _row(out, user.id, user.username, user.display_name, role, _kind(user))


# bots


async def bot_create(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    owner = await find_user(store, args.owner)
    if owner.bot:
        raise AdminError(f"'{owner.username}' is a bot; a bot's owner must be a person")
    name = _checked(args.username, args.name)
    bot = await _created(store.create_user(args.username, name, "", bot=True, owner_id=owner.id))
    token = await issue_token(store, bot, "agora bot create")
    await announce_new_account(store, bot)
    print(f"created bot '{bot.username}' ({bot.id}); its token follows", file=sys.stderr)
    out.write(token + "\n")


async def bot_list(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    users = await store.users()
    names = {u.id: u.username for u in users}
    for bot in (u for u in users if u.bot):
        owner = names.get(bot.owner_id or "", "-")
        _row(out, bot.id, bot.username, bot.display_name, owner)


async def bot_token(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    bot = await find_user(store, args.username)
    if not bot.bot:
        raise AdminError(f"'{bot.username}' is not a bot; people log in with their password")
    out.write(await issue_token(store, bot, "agora bot token") + "\n")


# moving a community


async def export(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    community = await find_community(store, args.community)
    total = await transfer.count_events(store, community)
    try:
        with tqdm(total=total, unit="event", desc="export", file=sys.stderr) as bar:
            written = await transfer.export_community(store, community, Path(args.file), bar.update)
    except OSError as exc:
        raise AdminError(f"cannot write {args.file}: {exc.strerror}") from None
    _row(out, community.id, community.name, f"{written} events", args.file)


async def import_(store: Store, args: argparse.Namespace, out: TextIO) -> None:
    try:
        data = transfer.load(Path(args.file))
        await transfer.check_target(store, data)
        with tqdm(
            total=transfer.total_events(data), unit="event", desc="import", file=sys.stderr
        ) as bar:
            done = await transfer.import_data(store, data, bar.update)
    except transfer.TransferError as exc:
        raise AdminError(str(exc)) from None
    _row(out, done.community.id, done.community.name, f"{done.events} events")
    if done.new_accounts:
        print(
            f"{len(done.new_accounts)} new accounts have no password yet; give each one with"
            " 'agora user password USERNAME': " + ", ".join(done.new_accounts),
            file=sys.stderr,
        )


# shared by the commands


async def find_user(store: Store, username: str) -> User:
    found = await store.credentials(username)
    if found is None:
        raise AdminError(f"no account '{username}'")
    return found[0]


async def find_community(store: Store, id_or_name: str) -> Community:
    """The community with this id, or else the one with this name (case-insensitively)."""
    known = await store.communities()
    by_id = [c for c in known if c.id == id_or_name]
    named = by_id or [c for c in known if c.name.casefold() == id_or_name.casefold()]
    if not named:
        raise AdminError(f"no community '{id_or_name}' (agora community list shows them)")
    if len(named) > 1:
        raise AdminError(f"several communities are named '{id_or_name}'; give its id")
    return named[0]


async def find_channel(store: Store, community: Community, id_or_name: str) -> Channel:
    """The community's channel with this id, or else this name (as channel names are kept)."""
    known = await store.channels(community.id)
    found = next((c for c in known if c.id == id_or_name), None)
    if found is None:
        with contextlib.suppress(ValueError):
            name = channel_name(id_or_name)
            found = next((c for c in known if c.name.casefold() == name.casefold()), None)
    if found is None:
        raise AdminError(
            f"no channel '{id_or_name}' in '{community.name}' (agora channel list shows them)"
        )
    return found


async def announce_new_account(store: Store, user: User) -> None:
    """Append ``member.joined`` where the store made a new account a member."""
    for view in await store.communities_of(user.id):
        channel, d = await communities.join_event(store, view.id, user)
        await store.append(channel, "member.joined", d)


async def _created(creating: Awaitable[T]) -> T:
    try:
        return await creating
    except Conflict as exc:
        raise AdminError(str(exc)) from None


def _checked(username: str, name: str | None) -> str:
    try:
        return check_account(username, None, name)
    except Invalid as exc:
        raise AdminError(str(exc).replace("field 'display_name'", "--name")) from None


def _community_name(name: str) -> str:
    name = name.strip()
    if not 0 < len(name) <= MAX_COMMUNITY_NAME:
        raise AdminError(f"a community name must be 1 to {MAX_COMMUNITY_NAME} characters")
    return name


def _channel_name(name: str) -> str:
    """The app's one rule for channel names (``server.domain.channels.channel_name``)."""
    try:
        return channel_name(name)
    except ValueError as exc:
        raise AdminError(str(exc)) from None


async def _name_taken(store: Store, name: str) -> str:
    """Why a community name cannot be used: the community that has it."""
    same = [c for c in await store.communities() if c.name.casefold() == name.casefold()]
    holder = f"'{same[0].name}' ({same[0].id})" if same else f"'{name}'"
    return (
        f"a community named {holder} exists already; community names are unique without"
        " regard to case: choose another name"
    )


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise AdminError("the passwords differ")
    try:
        check_account("placeholder", password)
    except Invalid as exc:
        raise AdminError(str(exc).replace("field 'password'", "the password")) from None
    return password


def _password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of asking",
    )


def _kind(user: User) -> str:
    return "bot" if user.bot else "user"


def _row(out: TextIO, *cells: str) -> None:
    out.write("\t".join(cells) + "\n")
