"""``agora chat``, driven in a pseudo-terminal against real servers.

Each test spawns the real ``agora chat`` process in a pty of a fixed size
(pexpect) and renders what it draws with a terminal emulator (pyte), so the
assertions read the screen a person would see. Other sessions are the Python
``Client``. Every wait polls the rendered screen until it holds, with a
timeout scaled by ``AGORA_TEST_TIMEOUT_FACTOR``.

Like every test, these run against both deployments. ``agora chat`` talks to
the first node; accounts and the other sessions use the last, which in the
Redis deployment is the other node, so what the terminal shows has crossed
between nodes.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pyte
import pytest

from clients import Client, Event
from clients.terminal.state import ChatState
from tests.agora_cli import ok, storage
from tests.conftest import ROOT, AgoraProcess, PlugTo, http_json, new_user, timeout

COLUMNS, ROWS = 100, 30
PASSWORD = "correct horse"  # what tests.conftest.new_user registers with
PAGE_UP = "\x1b[5~"

MakeServer = Callable[..., AgoraProcess]


class Terminal:
    """``agora chat`` in a pty, rendered by pyte."""

    def __init__(self, args: list[str], config: Path) -> None:
        # The pty's size is the terminal's: COLUMNS and LINES (pytest-xdist's workers have
        # them) would override it for the app but not for the pyte screen.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AGORA_") and k not in ("COLUMNS", "LINES")
        }
        env |= {"TERM": "xterm-256color", "XDG_CONFIG_HOME": str(config)}
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "server", "chat", *args],
            dimensions=(ROWS, COLUMNS),
            env=env,
            cwd=str(ROOT),
        )
        self.eof = False

    def pump(self) -> None:
        while not self.eof:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0))
            except pexpect.TIMEOUT:
                return
            except pexpect.EOF:
                self.eof = True

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)

    async def wait(self, condition: Callable[[str], bool], what: str, wait: float = 15) -> str:
        deadline = time.monotonic() + timeout(wait)
        while True:
            self.pump()
            if condition(self.text):
                return self.text
            if time.monotonic() > deadline or self.eof:
                raise AssertionError(f"never saw {what}; the screen:\n{self.text}")
            await asyncio.sleep(0.05)

    def frame(self) -> tuple[tuple[tuple[str, str, str, bool], ...], ...]:
        """The panes' cells with their colours (a scrollbar that moves changes no text),
        without the message box, whose cursor blinks, and the status line."""
        return tuple(
            tuple((c.data, c.fg, c.bg, c.reverse) for c in map(row.__getitem__, range(COLUMNS)))
            for row in map(self.screen.buffer.__getitem__, range(ROWS - 4))
        )

    async def changed(self, since: Any, what: str, wait: float = 15) -> str:
        """Wait until the screen differs from the ``frame()`` ``since``; the new screen."""
        deadline = time.monotonic() + timeout(wait)
        while True:
            self.pump()
            if self.frame() != since:
                return self.text
            if time.monotonic() > deadline or self.eof:
                raise AssertionError(f"never saw {what}; the screen:\n{self.text}")
            await asyncio.sleep(0.05)

    async def see(self, *texts: str, wait: float = 15) -> str:
        return await self.wait(lambda s: all(t in s for t in texts), repr(texts), wait)

    def type(self, text: str) -> None:
        self.child.send(text + "\r")

    def paste(self, text: str) -> None:
        """A bracketed paste, the way a terminal delivers one."""
        self.child.send(f"\x1b[200~{text}\x1b[201~\r")

    async def exit_status(self, wait: float = 15) -> int:
        deadline = time.monotonic() + timeout(wait)
        while not self.eof:
            self.pump()
            if time.monotonic() > deadline:
                raise AssertionError(f"agora chat did not exit; the screen:\n{self.text}")
            await asyncio.sleep(0.05)
        self.child.wait()
        assert self.child.exitstatus is not None, f"killed by signal {self.child.signalstatus}"
        return self.child.exitstatus


def nodes(server: AgoraProcess) -> tuple[AgoraProcess, AgoraProcess]:
    """The node ``agora chat`` talks to (one stable URL), and the one everything else uses."""
    return server.nodes[0], server.nodes[-1]


async def logged_in(
    chat: Callable[..., Terminal], server: AgoraProcess, *args: str, via: str | None = None
) -> tuple[Terminal, Any]:
    """A fresh account's ``agora chat`` (with more ``args``), subscribed to #general.

    It talks to the first node, or to the address ``via`` (a proxy to it). The account's
    own join shows only from the history read once the subscribe is answered; "#general"
    in the channel list shows before that, and a test that unplugged then would drop
    the first subscribe half-way.
    """
    tui, other = nodes(server)
    account = await new_user(other, "tui")
    terminal = chat("--server", via or tui.http, "--token", account["token"], *args)
    await terminal.see("● connected", "#general", f"{account['user']['name']} joined Agora")
    return terminal, account


def add_channel(server: AgoraProcess, name: str) -> None:
    """A channel in the community, made with the admin CLI beside the running server.

    A session sees it when it next identifies, so this comes before ``agora chat`` starts.
    """
    ok("channel", "create", "Agora", name, *storage(server))


async def test_login_with_password_shows_history(server: AgoraProcess, chat: Any) -> None:
    tui, elsewhere = nodes(server)
    account = await new_user(elsewhere, "pw")
    async with Client(elsewhere.ws, account["token"]) as other:
        general = other.channel_named("general")
        for n in range(3):
            await other.send_message(general, f"earlier message {n}")
    username = account["user"]["username"]
    terminal = chat("--server", tui.ws, "--username", username)
    await terminal.see("Password:")
    terminal.type(PASSWORD)
    screen = await terminal.see("● connected", f"as {username}", "earlier message 2")
    assert screen.index("earlier message 0") < screen.index("earlier message 2")
    assert f"{account['user']['name']}: earlier message 1" in screen


async def test_bad_password_shows_an_error_and_exits_nonzero(
    server: AgoraProcess, chat: Any
) -> None:
    tui, other = nodes(server)
    account = await new_user(other, "bad")
    terminal = chat("--server", tui.http, "--username", account["user"]["username"])
    await terminal.see("Password:")
    terminal.type("not the password")
    await terminal.see("wrong username or password")
    assert await terminal.exit_status() == 1


async def test_token_login_remembered_with_0600_and_forgotten_on_logout(
    server: AgoraProcess, chat: Any, tmp_path: Path
) -> None:
    tui, other = nodes(server)  # tokens are remembered by server URL: one URL throughout
    account = await new_user(other, "tok")
    username = account["user"]["username"]
    first = chat("--server", tui.http, "--token", account["token"], "--remember")
    await first.see("● connected", f"as {username}")
    first.type("/quit")
    assert await first.exit_status() == 0
    kept = tmp_path / "config" / "agora" / "tokens.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert account["token"] in kept.read_text()

    again = chat("--server", tui.http)  # no token, no username: the remembered token
    await again.see("● connected", f"as {username}")
    again.type("/quit")
    assert await again.exit_status() == 0

    logout = chat("--server", tui.http, "--logout")
    await logout.see(f"forgot the token for {tui.http}, and the server revoked it")
    assert await logout.exit_status() == 0
    assert account["token"] not in kept.read_text()
    assert http_json("GET", other.http + "/api/v1/auth/sessions", token=account["token"])[0] == 401


async def test_slash_logout_revokes_the_token_forgets_it_and_quits(
    server: AgoraProcess, chat: Any, tmp_path: Path
) -> None:
    tui, other = nodes(server)
    account = await new_user(other, "out")
    first = chat("--server", tui.http, "--token", account["token"], "--remember")
    await first.see("● connected", f"as {account['user']['username']}")
    kept = tmp_path / "config" / "agora" / "tokens.json"
    assert account["token"] in kept.read_text()
    first.type("/logout")
    assert await first.exit_status() == 0
    assert account["token"] not in kept.read_text()
    assert http_json("GET", other.http + "/api/v1/auth/sessions", token=account["token"])[0] == 401


async def test_refused_token_exits_nonzero(server: AgoraProcess, chat: Any) -> None:
    terminal = chat("--server", nodes(server)[0].http, "--token", "1.not-a-real-token")
    await terminal.see("the server refused the token")
    assert await terminal.exit_status() == 1


async def test_live_message_and_join_from_another_session_appear(
    server: AgoraProcess, chat: Any
) -> None:
    terminal, _ = await logged_in(chat, server)
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        await bob.send_message(bob.channel_named("general"), "hello from a Python client")
    name = other["user"]["name"]
    screen = await terminal.see(f"{name}: hello from a Python client")
    assert f"— {name} joined Agora" in screen  # member.joined, as a line of its own


async def test_typed_message_reaches_another_session(server: AgoraProcess, chat: Any) -> None:
    terminal, account = await logged_in(chat, server)
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        general = bob.channel_named("general")
        await bob.subscribe(general)
        terminal.type("typed in the terminal")
        while True:
            event = await bob.next_event(timeout(10))
            if event.t == "message.created":
                break
        message = event.d["message"]
        assert message["text"] == "typed in the terminal"
        assert message["author"]["id"] == account["user"]["id"]
        assert "nonce" in message  # the echo is reconciled by it
    screen = await terminal.see(f"{account['user']['name']}: typed in the terminal")
    assert screen.count("typed in the terminal") == 1


async def test_join_picks_a_channel_and_shows_its_history(
    make_server: MakeServer, chat: Any
) -> None:
    server = make_server(rate_limit=0)  # channels of its own
    add_channel(server, "random")
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        await bob.send_message(bob.channel_named("random"), "said in random")
    terminal, _ = await logged_in(chat, server)
    assert "said in random" not in terminal.text
    terminal.type("/join #random")
    await terminal.see("#random · Agora", "said in random")
    terminal.type("/join Agora/general")
    screen = await terminal.see("#general · Agora")
    assert "said in random" not in screen
    terminal.type("/join nowhere")
    await terminal.see("no channel named 'nowhere'")


async def test_channels_lists_channels_with_unread_counts(
    make_server: MakeServer, chat: Any
) -> None:
    server = make_server(rate_limit=0)  # channels of its own
    add_channel(server, "random")
    terminal, _ = await logged_in(chat, server)
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        for n in range(2):
            await bob.send_message(bob.channel_named("random"), f"unread {n}")
    await terminal.see("#random 2")  # the channel list
    terminal.type("/channels")
    await terminal.see("Agora (", "#general  (here)", "#random  2 unread")


async def test_lines_typed_ahead_while_the_app_is_busy_stay_separate_messages(
    server: AgoraProcess, chat: Any
) -> None:
    terminal, account = await logged_in(chat, server)
    # Stopped, the app reads nothing: the three lines reach it at once when it goes on.
    os.kill(terminal.child.pid, signal.SIGSTOP)
    try:
        for n in range(3):
            terminal.type(f"ahead {n}")
    finally:
        os.kill(terminal.child.pid, signal.SIGCONT)
    name = account["user"]["name"]
    screen = await terminal.see(*(f"{name}: ahead {n}" for n in range(3)))
    assert "ahead 0ahead" not in screen


async def test_who_lists_the_members_of_the_community(make_server: MakeServer, chat: Any) -> None:
    # its own deployment: the shared one's members would scroll the list off the screen
    terminal, account = await logged_in(chat, make_server(rate_limit=0))
    terminal.type("/who")
    user = account["user"]
    await terminal.see("members of Agora", f"{user['name']} @{user['username']}")


async def test_help_and_a_hint_for_unknown_commands(server: AgoraProcess, chat: Any) -> None:
    terminal, _ = await logged_in(chat, server)
    terminal.type("/help")
    await terminal.see("/join NAME", "/who", "/quit", "PageUp")
    terminal.type("/frobnicate now")
    await terminal.see("unknown command /frobnicate: /help lists the commands")


async def test_server_errors_are_shown_and_the_app_goes_on(server: AgoraProcess, chat: Any) -> None:
    terminal, account = await logged_in(chat, server)
    terminal.paste("x" * 4001)
    await terminal.see("not sent: too_large")
    terminal.type("still here")
    await terminal.see(f"{account['user']['name']}: still here")


async def test_rate_limits_are_shown_and_waited_out(make_server: MakeServer, chat: Any) -> None:
    server = make_server(rate_limit=60, rate_burst=3)  # identify, subscribe, history
    add_channel(server, "first")
    add_channel(server, "last")
    terminal, account = await logged_in(chat, server)
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"], wait_on_rate_limit=True) as bob:
        last = bob.channel_named("last")
        deadline = time.monotonic() + timeout(20)
        # the terminal subscribes to #last once its rate limit allows; from then on it counts
        while not re.search(r"#last \d+", terminal.text):
            assert time.monotonic() < deadline, f"#last never counted:\n{terminal.text}"
            await bob.send_message(last, "for later")
            await asyncio.sleep(0.5)
            terminal.pump()
    for n in range(3):
        terminal.type(f"burst {n}")
    name = account["user"]["name"]
    screen = await terminal.see(
        "rate limited: trying again", *(f"{name}: burst {n}" for n in range(3))
    )
    assert "not sent" not in screen and "cannot follow" not in screen


async def test_quit_exits_with_status_zero(server: AgoraProcess, chat: Any) -> None:
    terminal, _ = await logged_in(chat, server)
    terminal.type("/quit")
    assert await terminal.exit_status() == 0


async def test_older_history_pages_in_on_page_up(make_server: MakeServer, chat: Any) -> None:
    server = make_server(rate_limit=0)  # its own: #general holds only what this test wrote
    elsewhere = nodes(server)[1]
    account = await new_user(elsewhere, "pages")
    async with Client(elsewhere.ws, account["token"]) as other:
        general = other.channel_named("general")
        for n in range(60):  # more than one page of 50
            await other.send_message(general, f"numbered {n:02d}")
    terminal, _ = await logged_in(chat, server)
    screen = await terminal.see("numbered 59")
    assert "numbered 00" not in screen
    # PageUp scrolls a page at a time; at the top it loads the page before. One press,
    # then wait until the screen shows its effect, so that presses never pile up.
    for _ in range(10):
        before = terminal.frame()
        terminal.child.send(PAGE_UP)
        screen = await terminal.changed(before, "PageUp's effect")
        if "numbered 00" in screen:
            break
    else:
        raise AssertionError(f"ten presses of PageUp never reached the oldest:\n{screen}")
    assert screen.index("numbered 00") < screen.index("numbered 01")


@pytest.mark.parametrize("replay_cap", [1000, 1], ids=["replayed", "over-the-replay-cap"])
async def test_reconnects_after_a_restart_and_shows_what_was_missed_once(
    make_server: MakeServer, chat: Any, plug_to: PlugTo, replay_cap: int, tmp_path: Path
) -> None:
    server = make_server(rate_limit=0)
    tui, elsewhere = nodes(server)
    # agora chat reaches its node through a plug, so that it stays away until plugged in
    plug = await plug_to(tui)
    log = tmp_path / "chat.log"
    terminal, account = await logged_in(chat, server, "--log-file", str(log), via=plug.http)
    name = account["user"]["name"]
    await plug.unplug()
    await terminal.see("reconnecting")
    terminal.type("typed while away")
    # a restart on the same ports and storage; with a cap of 1, what was missed comes
    # from history
    server.stop()
    for node in server.nodes:
        node.settings["replay_cap"] = replay_cap
    server.start()
    other = await new_user(elsewhere, "bob")  # its member.joined is missed too
    async with Client(elsewhere.ws, other["token"]) as bob:
        general = bob.channel_named("general")
        await bob.send_message(general, "missed one")
        await bob.send_message(general, "missed two")
        await plug.plug()  # only now can agora chat come back
        await terminal.see(
            "● connected", "missed one", "missed two", f"{name}: typed while away", wait=30
        )

        async def stored() -> list[str]:
            events = await bob.history(general)
            return [e.d["message"]["text"] for e in events if e.t == "message.created"]

        # Once what it typed is stored, one more message is the last to reach it: a
        # duplicate of anything before would come before it.
        deadline = time.monotonic() + timeout(15)
        while "typed while away" not in await stored():
            assert time.monotonic() < deadline, "what agora chat typed was never stored"
            await asyncio.sleep(0.05)
        await bob.send_message(general, "and after that")
    screen = await terminal.see("and after that")
    for text in ("missed one", "missed two", "typed while away"):
        assert screen.count(text) == 1, screen
    # over the cap, the missed events were read from history, not replayed
    repaired = [line for line in log.read_text().splitlines() if "after a reconnect" in line]
    assert bool(repaired) is (replay_cap == 1), repaired or "it read no history after reconnecting"


def test_echo_and_event_in_either_order_make_one_line() -> None:
    me = {"id": "1", "username": "ann", "name": "Ann", "bot": False}
    identity = {
        "user": me,
        "communities": [
            {
                "id": "c",
                "name": "Agora",
                "role": "owner",
                "channels": [{"id": "g", "name": "general", "kind": "text"}],
            }
        ],
    }
    message = {
        "id": "m",
        "channel": "g",
        "author": {"id": "1", "name": "Ann"},
        "text": "hi",
        "ts": 1,
        "nonce": "n",
    }
    for reply_first in (False, True):
        state = ChatState(identity)
        general = state.channels["g"]
        state.enter(general)
        state.add_pending(general, "hi", "n")
        if reply_first:
            state.confirm(general, message)
        state.add_event("message.created", "g", {"message": message}, 1)
        state.confirm(general, message)
        assert [(line.kind, line.o, line.text) for line in general.lines] == [("message", 1, "hi")]


# communities


async def test_create_channel_makes_it_and_goes_there_and_invite_shows_a_working_code(
    make_server: MakeServer, chat: Any
) -> None:
    server = make_server(rate_limit=0)
    terminal, _ = await logged_in(chat, server)  # the first account: the owner
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        terminal.type("/create-channel Reading Room")
        await terminal.see("created #reading-room", "#reading-room · Agora")
        while True:  # the other member hears of the new channel
            event = await bob.next_event(timeout(10))
            if isinstance(event, Event) and event.t == "channel.created":
                break
        assert event.d["channel"]["name"] == "reading-room"
        assert bob.channel_named("reading-room") == event.d["channel"]["id"]
        terminal.type("/invite 2")
        screen = await terminal.see("invite to Agora, for 2 people: code ")
        code = re.search(r"code (\S+)", screen)
        assert code is not None
        await terminal.see(f"{nodes(server)[0].http}/invite/{code[1]}")
        joined = await bob.accept_invite(code[1])  # a member already: it changes nothing
        assert joined["id"] == bob.community(0)["id"]


async def test_channels_made_elsewhere_appear_in_the_list_live(
    make_server: MakeServer, chat: Any
) -> None:
    server = make_server(rate_limit=0)
    elsewhere = nodes(server)[1]
    owner = await new_user(elsewhere, "owner")  # the first account
    terminal, _ = await logged_in(chat, server)
    async with Client(elsewhere.ws, owner["token"]) as ann:
        room = await ann.create_channel(ann.community(0)["id"], "made-live")
        await terminal.see("#made-live")
        await ann.send_message(room["id"], "news in the new channel")
        await terminal.see("#made-live 1")  # followed at once: its messages count
        await ann.update_channel(room["id"], name="renamed-live")
        await terminal.see("#renamed-live 1")


async def test_who_shows_who_is_online_idle_or_away(make_server: MakeServer, chat: Any) -> None:
    server = make_server(rate_limit=0)
    terminal, account = await logged_in(chat, server)
    elsewhere = nodes(server)[1]
    away = (await new_user(elsewhere, "away"))["user"]
    other = await new_user(elsewhere, "idler")
    async with Client(elsewhere.ws, other["token"]) as idler:
        await idler.set_presence("idle")
        terminal.type("/who")
        me, them = account["user"], other["user"]
        await terminal.see(
            "3 members of Agora, 2 here",
            f"● {me['name']} @{me['username']} (owner)",
            f"◐ {them['name']} @{them['username']} idle",
            f"○ {away['name']} @{away['username']}",
        )


# discussions


async def next_event_of(client: Client, t: str, wait: float = 10) -> Event:
    """The next event of type ``t`` the client hears."""
    async with asyncio.timeout(timeout(wait)):
        while True:
            event = await client.next_event(timeout(wait))
            if isinstance(event, Event) and event.t == t:
                return event


async def test_thread_starts_from_the_last_message_and_a_reply_goes_there(
    server: AgoraProcess, chat: Any
) -> None:
    terminal, account = await logged_in(chat, server)
    name = account["user"]["name"]
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        general = bob.channel_named("general")
        await bob.subscribe(general)
        terminal.type("which chapter first?")
        asked = (await next_event_of(bob, "message.created")).d["message"]
        await terminal.see(f"{name}: which chapter first?")
        terminal.type("/thread Chapter order")
        await terminal.see("thread Chapter order in #general · Agora")
        created = await next_event_of(bob, "thread.created")
        thread = created.d["thread"]
        assert thread["message"] == asked["id"] and thread["title"] == "Chapter order"
        terminal.type("start with chapter two")
        await terminal.see(f"{name}: start with chapter two")
        await bob.subscribe(thread["id"], since=0)
        reply = (await next_event_of(bob, "message.created")).d["message"]
        assert reply["channel"] == thread["id"] and reply["text"] == "start with chapter two"
        await bob.send_message(thread["id"], "agreed")
        await terminal.see("↳ Chapter order", f"{other['user']['name']}: agreed")  # listed
        terminal.type("/join #general")
        await terminal.see("#general · Agora", "↳ thread: Chapter order")


async def test_threads_lists_the_channels_threads_and_open_switches_to_one(
    make_server: MakeServer, chat: Any
) -> None:
    server = make_server(rate_limit=0)  # its own: #general holds only this test's threads
    terminal, _ = await logged_in(chat, server)
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        general = bob.channel_named("general")
        await bob.thread_create(general, "Older question", text="what about chapter one?")
        await bob.thread_create(general, "Newer question", text="and the ending?")
    terminal.type("/threads")
    screen = await terminal.see(
        "threads in #general", "1. Newer question (0 replies)", "2. Older question (0 replies)"
    )
    assert screen.index("1. Newer") < screen.index("2. Older")
    terminal.type("/open 2")
    await terminal.see("thread Older question in #general", "what about chapter one?")
    terminal.type("/open 9")
    await terminal.see("no thread '9': /threads lists them")


async def test_edit_changes_your_last_message_and_deletes_show(
    server: AgoraProcess, chat: Any
) -> None:
    terminal, account = await logged_in(chat, server)
    name = account["user"]["name"]
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        general = bob.channel_named("general")
        await bob.subscribe(general)
        terminal.type("a mesage with a typo")
        await terminal.see(f"{name}: a mesage with a typo")
        said = (await next_event_of(bob, "message.created")).d["message"]
        theirs = await bob.send_message(general, "bob says something")
        await terminal.see("bob says something")
        terminal.type("/edit a message without a typo")  # ours, not the last one
        updated = (await next_event_of(bob, "message.updated")).d["message"]
        assert updated["id"] == said["id"] and updated["text"] == "a message without a typo"
        await terminal.see(f"{name}: a message without a typo (edited)")
        await bob.delete(general, theirs["id"])
        screen = await terminal.see(f"{other['user']['name']}: (message deleted)")
        assert "bob says something" not in screen


async def test_react_reacts_to_the_last_message(server: AgoraProcess, chat: Any) -> None:
    terminal, account = await logged_in(chat, server)
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        general = bob.channel_named("general")
        await bob.subscribe(general)
        message = await bob.send_message(general, "react to me")
        await terminal.see("react to me")
        terminal.type("/react +1")
        reaction = await next_event_of(bob, "reaction.updated")
        assert reaction.d == {
            "message": message["id"],
            "emoji": "+1",
            "count": 1,
            "user": account["user"]["id"],
            "added": True,
        }
        await terminal.see("react to me  [+1 1]")
        await bob.react(general, message["id"], "+1")
        await terminal.see("react to me  [+1 2]")


async def test_typing_shows_on_the_status_line_and_tells_the_channel(
    server: AgoraProcess, chat: Any
) -> None:
    terminal, account = await logged_in(chat, server)
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        general = bob.channel_named("general")
        await bob.subscribe(general)
        # Typing is not replayed: it reaches agora chat once #general is subscribed, and
        # Bob's join shows only after that (live, or in the history read after it).
        await terminal.see(f"{other['user']['name']} joined Agora")
        await bob.typing(general)
        await terminal.see(f"{other['user']['name']} is typing…")
        await bob.send_message(general, "done typing")  # their message ends the line
        typing_line = f"{other['user']['name']} is typing…"
        await terminal.wait(lambda s: "done typing" in s and typing_line not in s, "no typing")
        terminal.child.send("half a thought")  # typed, not sent
        typing = await next_event_of(bob, "typing.started")
        assert typing.d["user"] == account["user"]["id"]


async def test_pins_and_resources_list_what_the_server_keeps(
    make_server: MakeServer, chat: Any
) -> None:
    server = make_server(rate_limit=0)  # its own: the first account owns the community
    owner = await new_user(server.nodes[0], "owner")
    terminal, _ = await logged_in(chat, server)
    async with Client(server.nodes[-1].ws, owner["token"]) as ann:
        general = ann.channel_named("general")
        terminal.type("/pins")
        await terminal.see("nothing is pinned in #general")
        kept = await ann.send_message(general, "read https://example.org/syllabus first")
        await ann.pin(general, kept["id"])
        community = ann.identity["communities"][0]["id"]
        await ann.resource_add(community, "House rules", note="be kind")
    terminal.type("/pins")
    await terminal.see("pinned in #general:", "read https://example.org/syllabus first")
    terminal.type("/resources")
    await terminal.see("House rules", "https://example.org/syllabus")
    terminal.type("/resources kind")
    screen = await terminal.see("resources of Agora with 'kind', newest first:")
    found = screen.split("with 'kind', newest first:")[1]
    assert "House rules" in found and "syllabus" not in found


async def test_search_shows_the_messages_with_the_words(server: AgoraProcess, chat: Any) -> None:
    terminal, _ = await logged_in(chat, server)
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    word = f"zebra{os.getpid()}x{time.monotonic_ns() % 100000}"
    async with Client(elsewhere.ws, other["token"]) as bob:
        await bob.send_message(bob.channel_named("general"), f"the {word} chapter")
    terminal.type(f"/search {word}")
    await terminal.see(
        f"1 found in Agora for '{word}':", f"#general {other['user']['name']}: the {word} chapter"
    )
    terminal.type("/search nothingmatchesthisword")
    await terminal.see("nothing in Agora has every word of 'nothingmatchesthisword'")


async def test_dm_opens_a_direct_message_with_a_member(server: AgoraProcess, chat: Any) -> None:
    terminal, account = await logged_in(chat, server)
    name = account["user"]["name"]
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        terminal.type(f"/dm {other['user']['username']}")
        await terminal.see(f"@{other['user']['name']} · direct message")
        created = await next_event_of(bob, "dm.created")
        dm = created.d["channel"]
        assert dm["kind"] == "dm" and account["user"]["id"] in dm["members"]
        await bob.subscribe(dm["id"], since=0)
        terminal.type("just between us")
        said = (await next_event_of(bob, "message.created")).d["message"]
        assert said["channel"] == dm["id"] and said["text"] == "just between us"
        await bob.send_message(dm["id"], "agreed, privately")
        await terminal.see(f"{name}: just between us", "agreed, privately")
        terminal.type("/dm nobody-of-that-name")
        await terminal.see("no member 'nobody-of-that-name'")


async def test_unread_counts_come_from_the_server_and_survive_a_restart(
    make_server: MakeServer, chat: Any
) -> None:
    server = make_server(rate_limit=0)  # channels of its own
    add_channel(server, "random")
    elsewhere = nodes(server)[1]
    other = await new_user(elsewhere, "bob")
    async with Client(elsewhere.ws, other["token"]) as bob:
        random = bob.channel_named("random")
        await bob.send_message(random, "before the first start")
        terminal, account = await logged_in(chat, server)
        await terminal.see("#random 1")  # from identify's reads
        terminal.type("/join #random")  # seen: the server's marker moves
        await terminal.see("#random · Agora", "before the first start")
        terminal.type("/join #general")
        await terminal.see("#general · Agora")
        await bob.send_message(random, "while in general")
        await terminal.see("#random 1")
        terminal.type("/quit")
        assert await terminal.exit_status() == 0
        await bob.send_message(random, "while away")
        await bob.send_message(random, f"@{account['user']['username']} while away, to you")
        again = chat("--server", nodes(server)[0].http, "--token", account["token"])
        # three after the marker, one of them a mention; the first was read before
        await again.see("● connected", "#random 3 @1")


def test_history_shows_messages_as_they_are_now_and_live_changes_apply() -> None:
    me = {"id": "1", "username": "ann", "name": "Ann", "bot": False}
    identity = {
        "user": me,
        "communities": [
            {
                "id": "c",
                "name": "Agora",
                "role": "owner",
                "channels": [{"id": "g", "name": "general", "kind": "text"}],
            }
        ],
        "reads": [{"channel": "g", "o": 0, "unread": 3, "mentions": 1}],
    }
    state = ChatState(identity)
    general = state.channels["g"]
    assert (general.unread, general.mentions) == (3, 1)  # from identify's reads
    now = {
        "id": "m",
        "channel": "g",
        "author": {"id": "2", "name": "Bob"},
        "text": "edited text",
        "ts": 1,
        "edited_ts": 2,
        "reactions": [{"emoji": "+1", "count": 2, "users": ["1", "3"]}],
    }
    # an older page: the stored frame is current, the reaction events are the past
    state.add_history(
        general,
        [
            {"t": "message.created", "d": {"message": now}, "o": 1},
            {"t": "reaction.updated", "d": {"message": "m", "emoji": "+1", "count": 1}, "o": 2},
        ],
    )
    (line,) = general.lines
    assert (line.text, line.edited, line.reactions) == ("edited text", True, [("+1", 2)])
    state.add_event(
        "reaction.updated",
        "g",
        {"message": "m", "emoji": "+1", "count": 1, "user": "3", "added": False},
        3,
    )
    assert line.reactions == [("+1", 1)]
    state.add_event("message.deleted", "g", {"id": "m"}, 4)
    assert (line.deleted, line.text, line.reactions) == (True, "", [])
