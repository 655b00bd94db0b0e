"""How discussions match words and tags (docs/protocol.md §5.9, §13 af): a tag filter
finds every tag as it is kept, and search matches whole words the same way in both
stores. Both deployments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.discussion_helpers import Club, close_all, send, session_for, uid, until, username


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    await close_all()


@pytest.mark.parametrize("tag", ["good_first", "100%", 'say"hi', "ünï", "日本"])
async def test_a_tag_filter_finds_every_tag_as_it_is_kept(server, tag: str) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    made = await owner.ok(
        "thread.create", {"channel": club.general, "title": "t", "text": "x", "tags": [tag]}
    )
    assert made["thread"]["tags"] == [tag]
    await owner.ok("resource.add", {"community": club.id, "title": "r", "tags": [tag]})
    threads = await owner.ok("thread.list", {"channel": club.general, "tag": tag})
    resources = await owner.ok("resource.list", {"community": club.id, "tag": tag})
    assert (len(threads["threads"]), len(resources["resources"])) == (1, 1)


async def test_a_tag_filter_matches_tags_as_they_are_kept_trimmed_and_lowercased(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    await owner.ok(
        "thread.create", {"channel": club.general, "title": "t", "text": "x", "tags": ["Bug"]}
    )
    await owner.ok("resource.add", {"community": club.id, "title": "r", "tags": ["Bug"]})
    for tag in ("bug", "BUG", " Bug "):
        threads = await owner.ok("thread.list", {"channel": club.general, "tag": tag})
        resources = await owner.ok("resource.list", {"community": club.id, "tag": tag})
        assert (len(threads["threads"]), len(resources["resources"])) == (1, 1), tag


async def test_search_words_ignore_case_in_any_script(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    said = await send(owner, club.general, "ΣΊΣΥΦΟΣ and ÉCOLE")
    for query in ("σίσυφος", "école", "ΣΊΣΥΦΟΣ"):
        found = await owner.ok("message.search", {"community": club.id, "query": query})
        assert [m["id"] for m in found["messages"]] == [said["id"]], query


async def test_search_matches_whole_words_with_their_accents(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    said = await send(owner, club.general, "a naïve café")
    for query, found in (("café", True), ("naïve", True), ("cafe", False), ("naive", False)):
        answer = await owner.ok("message.search", {"community": club.id, "query": query})
        assert [m["id"] for m in answer["messages"]] == ([said["id"]] if found else []), query


async def test_an_edit_adds_no_mention_and_no_shared_link(server) -> None:
    """§13 ag: mentions and shared URLs are read from a message when it is posted."""
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    member = await club.join(1)
    said = await send(owner, club.general, "plain words")
    text = f"now @{username(member)} see https://example.org/edited"
    await owner.ok("message.edit", {"channel": club.general, "message": said["id"], "text": text})
    sentinel = await send(owner, club.general, f"@{username(member)} sentinel")
    heard = await until(member, "mention")
    assert [f["d"]["message"]["id"] for f in heard if f.get("t") == "mention"] == [sentinel["id"]]
    assert (await owner.ok("resource.list", {"community": club.id}))["resources"] == []
    # and a link in a DM is not collected either
    dm = (await owner.ok("dm.open", {"user": uid(member)}))["channel"]
    await send(owner, dm["id"], "private https://example.org/dm")
    assert (await owner.ok("resource.list", {"community": club.id}))["resources"] == []


async def test_resource_words_ignore_case_in_any_script(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Club.create(server, owner)
    added = await owner.ok(
        "resource.add", {"community": club.id, "title": "ÉCOLE d'été", "note": "ΣΊΣΥΦΟΣ"}
    )
    for query in ("école", "σίσυφος", "D'ÉTÉ"):
        found = await owner.ok("resource.list", {"community": club.id, "query": query})
        assert [r["id"] for r in found["resources"]] == [added["resource"]["id"]], query
    missing = await owner.ok("resource.list", {"community": club.id, "query": "ecole"})
    assert missing["resources"] == []  # accents stay, as in message search
