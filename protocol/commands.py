"""The payload schema of every command, by ``op``.

Domain modules of later protocol versions add their commands here, so that
server and clients validate against the same shapes.
"""

from __future__ import annotations

from protocol import workshop as w
from protocol.schema import Field, Schema, schema

#: Most events one ``history`` page returns, and the default page size.
MAX_HISTORY_LIMIT = 100
DEFAULT_HISTORY_LIMIT = 50
#: Longest message text, in characters.
MAX_MESSAGE_CHARS = 4000
#: Longest idempotency nonce, in characters.
MAX_NONCE_CHARS = 64
#: Longest id a client may name (channels, communities, messages).
MAX_ID_CHARS = 64


#: Roles a member may have, lowest first.
ROLES = ("guest", "member", "facilitator", "admin", "owner")
#: Kinds of channel a community's members create; threads, DMs and breakouts come otherwise.
CHANNEL_KINDS = ("text", "forum", "workshop")
#: Longest community name, channel name and channel topic, in characters.
MAX_COMMUNITY_NAME = 64
MAX_CHANNEL_NAME = 64
MAX_TOPIC_CHARS = 512
#: Longest time-out and slow-mode interval, in seconds.
MAX_TIMEOUT_S = 28 * 24 * 3600
MAX_SLOWMODE_S = 6 * 3600
#: Longest invite life, in seconds, and most uses of one invite.
MAX_INVITE_S = 365 * 24 * 3600
MAX_INVITE_USES = 10_000
#: Most audit entries one ``audit.list`` page returns, and the default page size.
MAX_AUDIT_LIMIT = 100
DEFAULT_AUDIT_LIMIT = 50
#: Longest invite code a client may send.
MAX_CODE_CHARS = 64
#: Discussions: longest thread title, tag, emoji, search query, resource note and URL.
MAX_TITLE_CHARS = 200
MAX_TAG_CHARS = 32
MAX_TAGS = 10
MAX_EMOJI_CHARS = 32
MAX_QUERY_CHARS = 200
MAX_NOTE_CHARS = 4000
MAX_URL_CHARS = 2000
#: Most distinct emoji on one message (the next answers ``too_large``).
MAX_REACTIONS = 20
#: Page sizes of ``thread.list``, ``message.search`` and ``resource.list``.
MAX_PAGE_LIMIT = 100
DEFAULT_PAGE_LIMIT = 25


def _channel() -> Field:
    return Field("channel", str, nonempty=True, max_len=MAX_ID_CHARS)


def _community() -> Field:
    return Field("community", str, nonempty=True, max_len=MAX_ID_CHARS)


def _user() -> Field:
    return Field("user", str, nonempty=True, max_len=MAX_ID_CHARS)


def _id(name: str, *, required: bool = True) -> Field:
    return Field(name, str, required=required, nonempty=True, max_len=MAX_ID_CHARS)


def _page() -> tuple[Field, Field]:
    """``before`` (an opaque cursor from ``next``) and ``limit``."""
    return (
        Field("before", str, required=False, max_len=MAX_ID_CHARS * 2),
        Field(
            "limit",
            int,
            required=False,
            default=DEFAULT_PAGE_LIMIT,
            minimum=1,
            maximum=MAX_PAGE_LIMIT,
        ),
    )


def _tags() -> Field:
    return Field("tags", list, required=False, max_len=MAX_TAGS)


def tag_filter(raw: str | None) -> str | None:
    """The tag a list filter names, as tags are kept."""
    return None if raw is None else raw.strip().lower()


def tags_of(raw: list[object] | None) -> list[str] | None:
    """Tags as Agora keeps them (trimmed, lowercased, no repeats); raises ``ValueError``."""
    if raw is None:
        return None
    out: list[str] = []
    for tag in raw:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_CHARS:
            raise ValueError(f"a tag is a string of 1 to {MAX_TAG_CHARS} characters")
        tag = tag.strip().lower()
        if tag not in out:
            out.append(tag)
    return out


COMMANDS: dict[str, Schema] = {
    "identify": schema(Field("token", str, nonempty=True, max_len=512)),
    "ping": schema(),
    "subscribe": schema(
        _channel(),
        Field("since", int, required=False),
        Field("epoch", str, required=False, max_len=MAX_ID_CHARS),
    ),
    "unsubscribe": schema(_channel()),
    "history": schema(
        _channel(),
        Field("before", int, required=False, minimum=1),
        Field(
            "limit",
            int,
            required=False,
            default=DEFAULT_HISTORY_LIMIT,
            minimum=1,
            maximum=MAX_HISTORY_LIMIT,
        ),
    ),
    "message.send": schema(
        _channel(),
        Field("text", str, nonempty=True, max_len=MAX_MESSAGE_CHARS),
        Field("nonce", str, required=False, nonempty=True, max_len=MAX_NONCE_CHARS),
        _id("reply_to", required=False),
    ),
    "community.members": schema(_community()),
    # community structure
    "community.create": schema(
        Field("name", str, nonempty=True, max_len=MAX_COMMUNITY_NAME),
    ),
    "invite.create": schema(
        _community(),
        Field("max_uses", int, required=False, minimum=1, maximum=MAX_INVITE_USES),
        Field("expires_s", int, required=False, minimum=1, maximum=MAX_INVITE_S),
        Field("role", str, required=False, default="member", choices=("member", "guest")),
    ),
    "invite.accept": schema(Field("code", str, nonempty=True, max_len=MAX_CODE_CHARS)),
    "channel.create": schema(
        _community(),
        Field("name", str, nonempty=True, max_len=MAX_CHANNEL_NAME),
        Field("kind", str, required=False, default="text", choices=CHANNEL_KINDS),
        Field("topic", str, required=False, max_len=MAX_TOPIC_CHARS),
    ),
    "channel.update": schema(
        _channel(),
        Field("name", str, required=False, nonempty=True, max_len=MAX_CHANNEL_NAME),
        Field("topic", str, required=False, max_len=MAX_TOPIC_CHARS),
        Field("position", int, required=False, maximum=10_000),
        Field("archived", bool, required=False),
        Field("slowmode_s", int, required=False, maximum=MAX_SLOWMODE_S),
    ),
    "member.role": schema(_community(), _user(), Field("role", str, choices=ROLES)),
    "member.timeout": schema(_community(), _user(), Field("seconds", int, maximum=MAX_TIMEOUT_S)),
    "member.kick": schema(_community(), _user()),
    "member.ban": schema(_community(), _user()),
    "audit.list": schema(
        _community(),
        Field("before", str, required=False, max_len=MAX_ID_CHARS),
        Field(
            "limit",
            int,
            required=False,
            default=DEFAULT_AUDIT_LIMIT,
            minimum=1,
            maximum=MAX_AUDIT_LIMIT,
        ),
    ),
    "community.presence": schema(_community()),
    "presence.set": schema(Field("status", str, choices=("online", "idle"))),
    # discussions
    "thread.create": schema(
        _channel(),
        Field("title", str, nonempty=True, max_len=MAX_TITLE_CHARS),
        Field("text", str, required=False, nonempty=True, max_len=MAX_MESSAGE_CHARS),
        _id("message", required=False),
        _tags(),
    ),
    "thread.list": schema(
        _channel(), *_page(), Field("tag", str, required=False, max_len=MAX_TAG_CHARS)
    ),
    "thread.update": schema(
        _id("thread"),
        Field("title", str, required=False, nonempty=True, max_len=MAX_TITLE_CHARS),
        _tags(),
        Field("resolved", bool, required=False),
    ),
    "thread.follow": schema(_id("thread")),
    "thread.unfollow": schema(_id("thread")),
    "message.edit": schema(
        _channel(), _id("message"), Field("text", str, nonempty=True, max_len=MAX_MESSAGE_CHARS)
    ),
    "message.delete": schema(_channel(), _id("message")),
    "reaction.add": schema(
        _channel(), _id("message"), Field("emoji", str, nonempty=True, max_len=MAX_EMOJI_CHARS)
    ),
    "reaction.remove": schema(
        _channel(), _id("message"), Field("emoji", str, nonempty=True, max_len=MAX_EMOJI_CHARS)
    ),
    "message.pin": schema(_channel(), _id("message")),
    "message.unpin": schema(_channel(), _id("message")),
    "channel.pins": schema(_channel()),
    "dm.open": schema(_user()),
    "typing.start": schema(_channel()),
    "read.mark": schema(_channel(), Field("o", int)),
    "message.search": schema(
        _community(),
        Field("query", str, nonempty=True, max_len=MAX_QUERY_CHARS),
        _id("channel", required=False),
        _id("author", required=False),
        *_page(),
    ),
    "resource.add": schema(
        _community(),
        Field("title", str, nonempty=True, max_len=MAX_TITLE_CHARS),
        Field("url", str, required=False, nonempty=True, max_len=MAX_URL_CHARS),
        Field("note", str, required=False, max_len=MAX_NOTE_CHARS),
        _tags(),
    ),
    "resource.list": schema(
        _community(),
        Field("tag", str, required=False, max_len=MAX_TAG_CHARS),
        Field("query", str, required=False, max_len=MAX_QUERY_CHARS),
        *_page(),
    ),
    # workshops (see protocol.workshop for the limits and the fold)
    "workshop.start": schema(
        _channel(),
        Field("title", str, nonempty=True, max_len=w.MAX_WORKSHOP_TITLE),
        Field("agenda", list, required=False, default=[], max_len=w.MAX_AGENDA_ITEMS),
    ),
    "workshop.state": schema(_channel()),
    "workshop.end": schema(_channel(), _id("recap_channel", required=False)),
    "agenda.next": schema(_channel()),
    "agenda.goto": schema(_channel(), Field("index", int, maximum=w.MAX_AGENDA_ITEMS)),
    "hand.raise": schema(_channel()),
    "hand.lower": schema(
        _channel(), _id("user", required=False), Field("all", bool, required=False, default=False)
    ),
    "hand.call": schema(_channel(), _id("user", required=False)),
    "hand.order": schema(_channel(), Field("order", str, choices=w.HAND_ORDERS)),
    "poll.create": schema(
        _channel(),
        Field("question", str, nonempty=True, max_len=w.MAX_QUESTION_CHARS),
        Field("options", list, max_len=w.MAX_POLL_OPTIONS),
        Field("multi", bool, required=False, default=False),
        Field("anonymous", bool, required=False, default=False),
    ),
    "poll.vote": schema(
        _channel(), _id("poll"), Field("choices", list, max_len=w.MAX_POLL_OPTIONS)
    ),
    "poll.close": schema(_channel(), _id("poll")),
    "question.ask": schema(
        _channel(), Field("text", str, nonempty=True, max_len=w.MAX_QUESTION_CHARS)
    ),
    "question.upvote": schema(_channel(), _id("question")),
    "question.unvote": schema(_channel(), _id("question")),
    "question.answer": schema(
        _channel(), _id("question"), Field("text", str, required=False, max_len=w.MAX_ANSWER_CHARS)
    ),
    "question.hide": schema(_channel(), _id("question")),
    "timer.start": schema(
        _channel(),
        Field("seconds", int, minimum=1, maximum=w.MAX_TIMER_S),
        Field("label", str, required=False, max_len=w.MAX_WORKSHOP_TITLE),
    ),
    "timer.extend": schema(_channel(), Field("seconds", int, minimum=1, maximum=w.MAX_TIMER_S)),
    "timer.cancel": schema(_channel()),
    "breakout.open": schema(
        _channel(),
        Field("groups", int, minimum=1, maximum=w.MAX_GROUPS),
        Field("minutes", int, required=False, minimum=1, maximum=w.MAX_BREAKOUT_MINUTES),
        Field("assignment", list, required=False, max_len=w.MAX_GROUPS),
    ),
    "breakout.broadcast": schema(
        _channel(), Field("text", str, nonempty=True, max_len=MAX_MESSAGE_CHARS)
    ),
    "breakout.report": schema(
        _channel(), Field("text", str, nonempty=True, max_len=w.MAX_REPORT_CHARS)
    ),
    "breakout.close": schema(_channel()),
    "pulse.send": schema(_channel(), Field("kind", str, choices=w.PULSE_KINDS)),
    "community.participation": schema(
        _community(),
        Field(
            "sessions",
            int,
            required=False,
            default=w.DEFAULT_SESSIONS,
            minimum=1,
            maximum=w.MAX_SESSIONS,
        ),
    ),
}
