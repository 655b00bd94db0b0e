"""Hypothesis strategies for what a client can send the gateway, with what docs/protocol.md
says must come back.

Three families, each a ``Case`` (the WebSocket message and the answers allowed):

- ``not_frames``: messages that are not frames (undecodable, not a map, the other message
  kind, msgpack extensions, trailing bytes, NaN): ``bad_frame`` and never an ``id`` (§8).
- ``invalid_commands``: a frame with exactly one thing wrong (the ``id``, the ``op``, ``d``,
  or one field of a command's schema: missing, mistyped, out of range, empty, not one of
  its choices, invalid Unicode, over its size limit) and every other field valid:
  ``too_large`` for a field over its limit, ``bad_request`` otherwise, with the ``id`` when
  it was usable (§4, §8). They change nothing.
- ``commands``: schema-valid commands with values that may name real or made-up objects:
  a reply, or an error the docs allow for a valid command (never ``internal`` or
  ``unavailable`` on a healthy server).

``raw_bytes`` / ``raw_text`` add arbitrary messages, whose answer is any documented
error (``bad_frame`` without an ``id``) or a reply.

Used by ``tests/test_fuzz.py`` (a short run) and ``benchmarks/fuzz.py`` (a long one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import msgpack
from hypothesis import strategies as st

from protocol import Encoding
from protocol.commands import COMMANDS
from protocol.schema import MAX_SAFE_INT, Field

#: Error codes a valid command may get from a healthy server with no rate limit (§8).
COMMAND_ERRORS = frozenset({"bad_request", "forbidden", "not_found", "conflict", "too_large"})
#: Every code an arbitrary message may get (a map may turn out to be a command).
ANY_ERRORS = COMMAND_ERRORS | {"bad_frame"}
#: Integers msgpack can carry.
_INT_RANGE = (-(2**63), 2**64 - 1)


@dataclass(frozen=True)
class Case:
    """One WebSocket message and what may answer it."""

    message: bytes | str
    codes: frozenset[str]  # error codes allowed
    reply_ok: bool  # whether a reply is allowed instead
    id: int | None  # the id an error must carry (None: none), if ``id_known``
    id_known: bool
    what: str  # what is wrong with it, for failure messages

    def check(self, answer: dict[str, Any]) -> str | None:
        """What is wrong with ``answer`` (a ``reply`` or ``error`` frame), or None."""
        if answer["op"] == "reply":
            return None if self.reply_ok else f"{self.what}: a reply, expected an error"
        code = answer["d"]["code"]
        if code not in self.codes:
            return f"{self.what}: error {code!r}, expected one of {sorted(self.codes)}"
        if code == "bad_frame" and "id" in answer:
            return f"{self.what}: bad_frame with an id"
        if self.id_known and answer.get("id") != self.id:
            return f"{self.what}: id {answer.get('id')!r}, expected {self.id!r}"
        return None


@dataclass(frozen=True)
class Known:
    """Ids of real objects on the server under test, for values that reach the domain."""

    ids: tuple[str, ...]


def wire(frame: Any, encoding: Encoding) -> bytes | str:
    if encoding is Encoding.JSON:
        return json.dumps(frame, ensure_ascii=True)  # lone surrogates travel as \ud800
    return msgpack.packb(frame, use_bin_type=True)


# --- values --------------------------------------------------------------------------------

#: no lone surrogates (msgpack cannot carry them) and no NUL (refused: see ``invalid_value``)
_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
_SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


def _text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(_CHARS, min_size=min_size, max_size=max_size).filter(lambda s: s.strip())


def valid_value(field: Field, known: Known) -> st.SearchStrategy[Any]:
    """Values that pass ``field``'s checks."""
    if field.kind is bool:
        return st.booleans()
    if field.kind is int:
        low = 0 if field.minimum is None else field.minimum
        high = MAX_SAFE_INT if field.maximum is None else field.maximum
        return st.one_of(st.integers(low, min(high, low + 50)), st.integers(low, high))
    if field.kind is list:
        item = st.one_of(
            _text(1, 20), st.integers(-5, 60), st.dictionaries(_text(1, 8), _text(1, 8), max_size=3)
        )
        return st.lists(item, max_size=min(field.max_len or 5, 5))
    if field.kind is dict:
        return st.dictionaries(_text(1, 8), _text(1, 8), max_size=3)
    if field.choices is not None:
        return st.sampled_from(field.choices)
    longest = min(field.max_len or 40, 40)
    return st.one_of(st.sampled_from(known.ids), _text(1, longest))


def invalid_value(field: Field, encoding: Encoding) -> st.SearchStrategy[tuple[Any, str, str]]:
    """``(value, expected code, what)`` for values that fail ``field``'s checks."""
    others: list[st.SearchStrategy[Any]] = [
        st.booleans(),
        st.integers(*_INT_RANGE),
        st.floats(allow_nan=False, allow_infinity=False),
        _text(0, 10),
        st.lists(st.integers(0, 9), max_size=3),
        st.dictionaries(_text(1, 5), st.integers(0, 9), max_size=2),
    ]
    wrong_kind = st.one_of(*others).filter(lambda v: not _is_kind(v, field.kind))
    options = [wrong_kind.map(lambda v: (v, "bad_request", f"'{field.name}' of a wrong type"))]
    if field.kind is int:
        low = 0 if field.minimum is None else field.minimum
        high = MAX_SAFE_INT if field.maximum is None else field.maximum
        out = st.one_of(st.integers(_INT_RANGE[0], low - 1), st.integers(high + 1, _INT_RANGE[1]))
        options.append(out.map(lambda v: (v, "bad_request", f"'{field.name}' out of range")))
    if field.kind is str:
        if field.nonempty:
            blank = st.text(st.sampled_from(" \t\n\u3000"), max_size=5)
            options.append(blank.map(lambda v: (v, "bad_request", f"'{field.name}' empty")))
        if field.choices is not None:
            other = _text(1, 20).filter(lambda v: v not in field.choices)
            options.append(other.map(lambda v: (v, "bad_request", f"'{field.name}' no choice")))
        elif field.max_len is not None:
            long = st.integers(field.max_len + 1, field.max_len + 40).flatmap(
                lambda n: _text(1, 3).map(lambda s: (s * n)[:n])
            )
            options.append(long.map(lambda v: (v, "too_large", f"'{field.name}' too long")))
        nul = st.tuples(_text(0, 5), _text(0, 5)).map(lambda t: t[0] + "\x00" + t[1])
        options.append(nul.map(lambda v: (v, "bad_request", f"'{field.name}' with NUL")))
        if encoding is Encoding.JSON:
            lone = st.tuples(_text(0, 5), _SURROGATE).map(lambda t: t[0] + t[1])
            options.append(lone.map(lambda v: (v, "bad_request", f"'{field.name}' surrogate")))
    if field.kind is list:
        nul_item = _text(0, 5).map(lambda t: [t + "\x00"])
        options.append(nul_item.map(lambda v: (v, "bad_request", f"'{field.name}' with NUL")))
    if field.kind is list and field.max_len is not None:
        long_list = st.integers(field.max_len + 1, field.max_len + 5).map(lambda n: ["x"] * n)
        options.append(long_list.map(lambda v: (v, "too_large", f"'{field.name}' too many")))
    return st.one_of(*options)


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


# --- commands ------------------------------------------------------------------------------

_IDS = st.integers(0, MAX_SAFE_INT)
OPS = sorted(COMMANDS)


@st.composite
def valid_payload(draw: st.DrawFn, op: str, known: Known) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for field in COMMANDS[op].fields:
        if field.required or draw(st.booleans()):
            d[field.name] = draw(valid_value(field, known))
    return d


@st.composite
def commands(draw: st.DrawFn, encoding: Encoding, known: Known) -> Case:
    """A schema-valid command (not ``identify``: the session stays who it is)."""
    op = draw(st.sampled_from([op for op in OPS if op != "identify"]))
    command_id = draw(_IDS)
    d = draw(valid_payload(op, known))
    return Case(
        wire({"op": op, "id": command_id, "d": d}, encoding),
        COMMAND_ERRORS,
        True,
        command_id,
        True,
        f"{op} {d!r}",
    )


@st.composite
def invalid_commands(draw: st.DrawFn, encoding: Encoding, known: Known) -> Case:
    """A frame with exactly one thing wrong; every invalid command is ``bad_request`` or,
    for a field over its size limit, ``too_large``."""
    op = draw(st.sampled_from(OPS))
    command_id = draw(_IDS)
    d = draw(valid_payload(op, known))
    frame: dict[str, Any] = {"op": op, "id": command_id, "d": d}
    fields = COMMANDS[op].fields
    kinds = ["id", "op", "d"] + (["field"] if fields else [])
    kind = draw(st.sampled_from(kinds))
    code, what, answered_id = "bad_request", "", command_id
    if kind == "id":
        answered_id = None
        bad_id = st.one_of(
            st.integers(_INT_RANGE[0], -1),
            st.integers(MAX_SAFE_INT + 1, _INT_RANGE[1]),
            st.booleans(),
            st.floats(allow_nan=False, allow_infinity=False),
            _text(0, 5),
            st.none(),
        )
        value = draw(bad_id)
        if value is None:
            del frame["id"]
        else:
            frame["id"] = value
        what = f"{op} with id {value!r}"
    elif kind == "op":
        value = draw(
            st.one_of(
                _text(0, 30).filter(lambda s: s not in COMMANDS),
                st.integers(0, 9),
                st.none(),
                st.lists(st.integers(0, 9), max_size=2),
            )
        )
        if value is None:
            del frame["op"]
        else:
            frame["op"] = value
        what = f"op {value!r}"
    elif kind == "d":
        frame["d"] = draw(
            st.one_of(st.none(), st.integers(0, 9), _text(0, 5), st.lists(st.integers(0, 9)))
        )
        what = f"{op} with d {frame['d']!r}"
    else:
        field = draw(st.sampled_from(fields))
        if field.required and draw(st.booleans()):
            d.pop(field.name, None)
            if draw(st.booleans()):
                d[field.name] = None  # a required field sent as null counts as missing
            what = f"{op} without '{field.name}'"
        else:
            value, code, what = draw(invalid_value(field, encoding))
            d[field.name] = value
            what = f"{op}: {what}: {value!r}"[:300]
    return Case(wire(frame, encoding), frozenset({code}), False, answered_id, True, what)


# --- not frames ----------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(*_INT_RANGE), st.floats(allow_nan=False), _text(0, 10)
)
_NOT_MAPS = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=4))


@st.composite
def not_frames(draw: st.DrawFn, encoding: Encoding) -> Case:
    """A message that is not a frame: ``bad_frame``, never with an ``id``."""
    frame = {"op": "ping", "id": draw(_IDS)}
    kind = draw(st.sampled_from(["not a map", "other kind", "broken", "extension"]))
    message: bytes | str
    if kind == "not a map":
        message = wire(draw(_NOT_MAPS), encoding)
    elif kind == "other kind":  # a text message on msgpack, a binary one on json
        message = json.dumps(frame) if encoding is Encoding.MSGPACK else json.dumps(frame).encode()
    elif encoding is Encoding.JSON:
        if kind == "broken":
            whole = json.dumps(frame)
            cut = draw(st.integers(0, len(whole) - 1))
            message = whole[:cut] + draw(st.sampled_from(["", "}", ",", "]]", "x"]))
            if _json_any(message):
                message += ","  # the cut happened to leave a whole document
        else:
            constant = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
            message = '{"op": "ping", "id": 1, "d": {"x": ' + constant + "}}"
        kind = "broken JSON" if kind == "broken" else "NaN or Infinity"
    elif kind == "broken":
        whole = msgpack.packb(frame)
        if draw(st.booleans()):
            message = whole[: draw(st.integers(0, len(whole) - 1))]  # cut short
        else:
            message = whole + draw(st.binary(min_size=1, max_size=8))  # trailing bytes
    else:
        ext = _ext(draw(st.integers(-128, 127)), draw(st.binary(max_size=20)))
        message = msgpack.packb({"op": "ping", "id": 1, "d": {"x": 0}})[:-1] + ext
    return Case(message, frozenset({"bad_frame"}), False, None, True, f"{kind}: {message!r}"[:300])


_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}


def _ext(code: int, data: bytes) -> bytes:
    """A msgpack extension value of any type code (negative ones are reserved: msgpack-python
    will not write them) and length (fixext when one fits, else ext 8)."""
    header = bytes([_FIXEXT[len(data)]]) if len(data) in _FIXEXT else bytes([0xC7, len(data)])
    return header + (code & 0xFF).to_bytes(1, "big") + data


def raw_bytes(encoding: Encoding) -> st.SearchStrategy[Case]:
    """Arbitrary binary messages: for a json session all of them are the wrong kind."""
    codes = frozenset({"bad_frame"}) if encoding is Encoding.JSON else ANY_ERRORS
    return st.binary(max_size=300).map(
        lambda b: Case(b, codes, encoding is Encoding.MSGPACK, None, False, f"bytes {b!r}"[:300])
    )


def raw_text(encoding: Encoding) -> st.SearchStrategy[Case]:
    """Arbitrary text messages: JSON that is not a map is ``bad_frame``."""

    def case(text: str) -> Case:
        if encoding is Encoding.MSGPACK:
            return Case(text, frozenset({"bad_frame"}), False, None, True, f"text {text!r}"[:300])
        if _json_map(text):
            return Case(text, ANY_ERRORS, True, None, False, f"text {text!r}"[:300])
        return Case(text, frozenset({"bad_frame"}), False, None, True, f"text {text!r}"[:300])

    return st.text(_CHARS, max_size=300).map(case)


def _json_map(text: str) -> bool:
    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        value = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and not _has_nonfinite(value)


def _json_any(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nonfinite(v) for v in value)
    return False


def everything(encoding: Encoding, known: Known) -> st.SearchStrategy[Case]:
    return st.one_of(
        not_frames(encoding),
        invalid_commands(encoding, known),
        commands(encoding, known),
        raw_bytes(encoding),
        raw_text(encoding),
    )
