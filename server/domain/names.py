"""Names that cannot impersonate: clean display names, confusable and reserved usernames.

A display name keeps what a person typed, less the characters that let it
pretend to be something else: control characters (newlines among them),
bidirectional overrides, embeddings and isolates (which reorder what follows
them), and zero-width characters (which make two names that look alike
differ).

Usernames are ASCII (``accounts.USERNAME``), so their skeleton follows a
documented rule rather than ICU: the confusable pairs that Unicode TR39's
``confusables.txt`` lists within the username alphabet (``1``/``I``/``l``,
``0``/``O``, ``rn``/``m``), plus ``vv``/``w`` and ``cl``/``d``, which look the
same in most fonts, compared case-insensitively (so ``i`` joins ``l`` too: ``I``
is ``i`` in a case-insensitive name). Two usernames with one skeleton are one
name to a reader; the store keeps each account's skeleton in an indexed column
and refuses a second. If usernames ever allow more than ASCII, this must become
the full TR39 skeleton (ICU's ``SpoofChecker``).
"""

from __future__ import annotations

import unicodedata

#: Usernames no one may register, nor any name confusable with them.
RESERVED = ("admin", "system", "agora", "everyone", "here")

# Bidi embeddings and overrides (U+202A-U+202E), isolates (U+2066-U+2069), marks
# (U+200E, U+200F, U+061C), zero-width characters and the BOM. Most are format
# characters (category Cf), removed below; listed for the reader and for the few
# that are not.
_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u061c\u180e"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u034f\u115f\u1160\u3164\uffa0"
)

# Each character to its prototype, after casefolding; multi-letter shapes expand, as
# TR39 maps ``m`` to ``rn``, so that ``vvv``, ``vw`` and ``wv`` all meet.
_PROTOTYPES = str.maketrans({"1": "l", "i": "l", "0": "o", "m": "rn", "w": "vv", "d": "cl"})


def clean_display_name(name: str) -> str:
    """``name`` without control, format (bidi, zero-width) and invisible characters, trimmed.

    Every whitespace run (a newline, a tab) becomes one space first, so words
    stay apart. The result may be empty: the caller's length rule refuses it.
    """
    kept = []
    for char in name:
        if char.isspace():
            if kept and kept[-1] != " ":
                kept.append(" ")
            continue
        if char in _INVISIBLE or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue
        kept.append(char)
    return "".join(kept).strip()


def skeleton(username: str) -> str:
    """What ``username`` looks like to a reader: equal skeletons are confusable names."""
    return username.casefold().translate(_PROTOTYPES)


_RESERVED_SKELETONS = {skeleton(name): name for name in RESERVED}


def reserved(username: str) -> str | None:
    """The reserved name ``username`` is or looks like, if any."""
    return _RESERVED_SKELETONS.get(skeleton(username))


def reserved_refusal(username: str) -> str | None:
    """Why ``username`` may not be registered over HTTP, if it is or looks like a reserved
    name (the operator's ``agora user create`` may still make one)."""
    name = reserved(username)
    if name is None:
        return None
    if name == username.casefold():
        return f"username '{username}' is reserved"
    return f"username '{username}' looks like the reserved name '{name}'"
