"""Sans-I/O unit tests of the ``protocol`` package: codecs, validation, frames, codes.

No event loop, no sockets: every test calls the package's functions directly.
The wire contract these tests hold the code to is ``PROTOCOL.md`` (protocol v1);
the code tables of ``docs/protocol.md`` are read and held to the enums.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    COMMANDS,
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    RECONNECTABLE,
    AuthCloseReason,
    CloseCode,
    Command,
    Encoding,
    ErrorCode,
    FrameError,
    ProtocolError,
    RequestError,
    decode,
    echo,
    encode,
    error,
    error_from,
    event,
    hello,
    parse_command,
    reply,
    transcode,
)
from protocol.commands import (
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    MAX_ID_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_NONCE_CHARS,
)
from protocol.schema import MAX_SAFE_INT, Field
from tests.conftest import doc_table

ENCODINGS = [Encoding.MSGPACK, Encoding.JSON]

# When a property fails, Hypothesis imports libcst to suggest a patch, which triggers a
# DeprecationWarning from mypy_extensions; with ``filterwarnings = ["error"]`` that turns
# the failure report into a pytest INTERNALERROR. Ignore just that warning here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

# --------------------------------------------------------------------------- strategies

#: Scalars every client can carry in both encodings.
portable_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
portable_values = st.recursive(
    portable_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
#: Frames as the server builds them: maps with str keys, portable values.
portable_frames = st.dictionaries(st.text(max_size=10), portable_values, max_size=6) | (
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["hello", "reply", "error", "event", *COMMANDS]),
            "d": st.dictionaries(st.text(max_size=10), portable_values, max_size=5),
        },
        optional={
            "id": st.integers(min_value=0, max_value=MAX_SAFE_INT),
            "t": st.text(max_size=20),
            "ch": st.text(max_size=20),
            "o": st.integers(min_value=1, max_value=MAX_SAFE_INT),
        },
    )
)

#: Anything a decoder can hand back, including values only msgpack carries.
wire_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    # strings around the message-text and id limits, cheaply
    | st.builds(lambda c, n: c * n, st.sampled_from("x é\n"), st.integers(0, MAX_MESSAGE_CHARS + 5))
)
wire_values = st.recursive(
    wire_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
field_names = sorted({f.name for s in COMMANDS.values() for f in s.fields})
command_ids = (
    st.integers(min_value=-5, max_value=MAX_SAFE_INT + 5)
    | st.sampled_from([0, 1, MAX_SAFE_INT, MAX_SAFE_INT + 1, -1, True, False, 1.0, "1", None])
    | wire_values
)
payload_values = st.integers(min_value=-3, max_value=MAX_HISTORY_LIMIT + 3) | wire_values
command_like_frames = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from(sorted(COMMANDS)) | wire_values,
        "id": command_ids,
        "d": st.dictionaries(
            st.sampled_from(field_names) | st.text(max_size=8), payload_values, max_size=5
        )
        | wire_values,
    },
)
#: Any decoded map: arbitrary keys and values, or shaped like a command.
decoded_maps = (
    st.dictionaries(
        st.text(max_size=8) | st.binary(max_size=4) | st.sampled_from(["op", "id", "d"]),
        wire_values,
        max_size=6,
    )
    | command_like_frames
)

#: msgpack-ish bytes: packed values of any shape, truncated and with trailing junk.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=5) | st.integers(-5, 5) | st.binary(max_size=3), children, max_size=4
        )
    ),
    max_leaves=15,
)
msgpack_ish = st.builds(
    lambda value, cut, junk: msgpack.packb(value, use_bin_type=True)[:cut] + junk,
    msgpack_values,
    st.integers(min_value=0, max_value=200),
    st.binary(max_size=3),
)
#: JSON-ish text: dumped values (NaN and Infinity included), truncated and with junk.
json_ish = st.builds(
    lambda value, cut, junk: json.dumps(value, allow_nan=True)[:cut] + junk,
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=5), children, max_size=4)
        ),
        max_leaves=15,
    ),
    st.integers(min_value=0, max_value=200),
    st.text(max_size=3),
)


def same(a: Any, b: Any) -> bool:
    """Equality that also requires equal types (so True != 1 != 1.0) and float signs."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


def valid_value(f: Field) -> Any:
    """One value that satisfies field ``f``."""
    if f.choices is not None:
        return f.choices[0]
    if f.kind is str:
        return "c" * min(3, f.max_len or 3)
    if f.kind is int:
        return f.minimum if f.minimum is not None else 0
    if f.kind is bool:
        return True
    if f.kind is list:
        return []
    if f.kind is dict:
        return {}
    raise AssertionError(f"no sample value for {f.kind}")


def field_strategy(f: Field) -> st.SearchStrategy[Any]:
    """Every value that satisfies field ``f``."""
    if f.choices is not None:
        return st.sampled_from(f.choices)
    if f.kind is str:
        no_nul = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
        text = st.text(no_nul, min_size=1, max_size=f.max_len or 100)
        return text.filter(str.strip) if f.nonempty else text
    if f.kind is int:
        low = 0 if f.minimum is None else f.minimum
        high = MAX_SAFE_INT if f.maximum is None else f.maximum
        return st.integers(min_value=low, max_value=high)
    return st.just(valid_value(f))


@pytest.mark.parametrize(
    ("op", "d", "name"),
    [
        ("message.send", {"channel": "c", "text": "a\x00b"}, "text"),
        ("subscribe", {"channel": "\x00"}, "channel"),
        ("resource.add", {"community": "c", "title": "t", "tags": ["x", "\x00"]}, "tags"),
        (
            "workshop.start",
            {"channel": "c", "title": "t", "agenda": [{"ti\x00tle": "x"}]},
            "agenda",
        ),
    ],
)
def test_a_nul_character_anywhere_in_a_field_is_bad_request(
    op: str, d: dict[str, Any], name: str
) -> None:
    """PostgreSQL's text cannot hold U+0000; both stores refuse it alike (found by
    tests/test_fuzz.py)."""
    assert "U+0000" in field_error(op, d, ErrorCode.BAD_REQUEST, name)


def request_error(frame: dict[str, Any]) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_command(frame)
    return info.value


def field_error(op: str, d: dict[str, Any], code: ErrorCode, name: str) -> str:
    """Parse a command that must fail with ``code`` naming field ``name``; its message."""
    exc = request_error({"op": op, "id": 11, "d": d})
    assert exc.code is code
    assert exc.command_id == 11
    assert f"field '{name}'" in exc.message
    return exc.message


# --------------------------------------------------------------------------- encode/decode


def test_encoding_message_kinds() -> None:
    assert Encoding.MSGPACK.binary
    assert not Encoding.JSON.binary
    assert isinstance(encode({"op": "ping"}, Encoding.MSGPACK), bytes)
    assert isinstance(encode({"op": "ping"}, Encoding.JSON), str)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_round_trip_of_a_command(encoding: Encoding) -> None:
    frame = {"op": "message.send", "id": 7, "d": {"channel": "general", "text": "héllo 👋"}}
    assert same(decode(encode(frame, encoding), encoding), frame)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_round_trip_of_server_frames(encoding: Encoding) -> None:
    frames = [
        hello(heartbeat_ms=30_000, server="agora/test", max_frame=DEFAULT_MAX_FRAME, ts=1),
        reply(3, {"offset": 12, "epoch": "e1", "recovered": True}),
        error(ErrorCode.RATE_LIMITED, "slow down", command_id=4, retry_after_ms=250),
        event("message.created", "general", {"message": {"id": "m1", "text": "hi"}}, o=5),
        event("typing.started", "general", {"user": "u1"}),
    ]
    for frame in frames:
        assert same(decode(encode(frame, encoding), encoding), frame)


@pytest.mark.parametrize("encoding", ENCODINGS)
@given(frame=portable_frames)
def test_round_trip_property(encoding: Encoding, frame: dict[str, Any]) -> None:
    wire = encode(frame, encoding)
    assert isinstance(wire, bytes if encoding.binary else str)
    assert same(decode(wire, encoding, max_size=len(wire)), frame)


def test_msgpack_decode_accepts_bytearray_and_memoryview() -> None:
    wire = encode({"op": "ping", "id": 1}, Encoding.MSGPACK)
    assert decode(bytearray(wire), Encoding.MSGPACK) == {"op": "ping", "id": 1}
    assert decode(memoryview(wire), Encoding.MSGPACK) == {"op": "ping", "id": 1}


# --------------------------------------------------------------------------- decode: never crashes


def assert_frame_or_frame_error(data: Any, encoding: Encoding, **kwargs: Any) -> None:
    try:
        result = decode(data, encoding, **kwargs)
    except FrameError as exc:
        assert exc.code is ErrorCode.BAD_FRAME
    else:
        assert isinstance(result, dict)


@pytest.mark.parametrize("encoding", ENCODINGS)
@given(data=st.binary())
def test_decode_any_bytes_gives_a_map_or_frame_error(encoding: Encoding, data: bytes) -> None:
    assert_frame_or_frame_error(data, encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
@given(data=st.text())
def test_decode_any_text_gives_a_map_or_frame_error(encoding: Encoding, data: str) -> None:
    assert_frame_or_frame_error(data, encoding)


@given(data=msgpack_ish, max_size=st.integers(min_value=0, max_value=300) | st.none())
def test_decode_msgpack_ish_bytes_gives_a_map_or_frame_error(
    data: bytes, max_size: int | None
) -> None:
    kwargs = {} if max_size is None else {"max_size": max_size}
    assert_frame_or_frame_error(data, Encoding.MSGPACK, **kwargs)


@given(data=json_ish, max_size=st.integers(min_value=0, max_value=300) | st.none())
def test_decode_json_ish_text_gives_a_map_or_frame_error(data: str, max_size: int | None) -> None:
    kwargs = {} if max_size is None else {"max_size": max_size}
    assert_frame_or_frame_error(data, Encoding.JSON, **kwargs)


@given(data=st.text())
def test_text_message_on_msgpack_session_is_bad_frame(data: str) -> None:
    with pytest.raises(FrameError) as info:
        decode(data, Encoding.MSGPACK)
    assert info.value.code is ErrorCode.BAD_FRAME


@given(data=st.binary())
def test_binary_message_on_json_session_is_bad_frame(data: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode(data, Encoding.JSON)
    assert info.value.code is ErrorCode.BAD_FRAME


def test_wrong_message_kind_is_bad_frame_even_when_its_content_is_valid() -> None:
    with pytest.raises(FrameError) as info:
        decode(encode({"op": "ping"}, Encoding.JSON), Encoding.MSGPACK)
    assert info.value.code is ErrorCode.BAD_FRAME
    with pytest.raises(FrameError) as info:
        decode(b'{"op": "ping"}', Encoding.JSON)
    assert info.value.code is ErrorCode.BAD_FRAME


# --------------------------------------------------------------------------- decode: rejections


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("value", [[], [1, 2], 1, -3, 1.5, "op", None, True, False])
def test_decode_rejects_non_map_top_level(encoding: Encoding, value: Any) -> None:
    with pytest.raises(FrameError, match="map") as info:
        decode(encode(value, encoding), encoding)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decode_rejects_frames_over_max_size(encoding: Encoding) -> None:
    wire = encode({"op": "message.send", "d": {"text": "x" * 500}}, encoding)
    assert decode(wire, encoding, max_size=len(wire))["d"]["text"] == "x" * 500
    with pytest.raises(FrameError, match="over the limit") as info:
        decode(wire, encoding, max_size=len(wire) - 1)
    assert info.value.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decode_default_limit_is_64_kib(encoding: Encoding) -> None:
    assert DEFAULT_MAX_FRAME == 64 * 1024
    overhead = len(encode({"a": "x" * 1000}, encoding)) - 1000
    padding = DEFAULT_MAX_FRAME - overhead
    at_limit = encode({"a": "x" * padding}, encoding)
    assert len(at_limit) == DEFAULT_MAX_FRAME
    assert decode(at_limit, encoding) == {"a": "x" * padding}
    over = encode({"a": "x" * (padding + 1)}, encoding)
    with pytest.raises(FrameError, match="over the limit"):
        decode(over, encoding)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_json_decode_rejects_non_finite_numbers(constant: str) -> None:
    with pytest.raises(FrameError) as info:
        decode(f'{{"op": "ping", "x": {constant}}}', Encoding.JSON)
    assert info.value.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "data",
    [
        "",
        "{",
        '{"op": "ping",}',
        "{'op': 'ping'}",
        '{"op": "ping"} {}',
        "\ufeff{}",
        '{"id": ' + "1" * 5000 + "}",
    ],
)
def test_json_decode_rejects_malformed_text(data: str) -> None:
    with pytest.raises(FrameError):
        decode(data, Encoding.JSON, max_size=10_000)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x81",  # map of one entry, truncated
        b"\x80\x80",  # a map followed by extra data
        b"\xc1",  # never-used type byte
        b"\x81\xa1a\xa1\xff",  # invalid UTF-8 in a str
        b"\x81\x01\x02",  # integer map key
        b"\xdd\xff\xff\xff\xff",  # array claiming 4 billion items
        msgpack.packb({"t": msgpack.Timestamp(1)}),  # ext types are not on the wire
    ],
)
def test_msgpack_decode_rejects_malformed_bytes(data: bytes) -> None:
    with pytest.raises(FrameError):
        decode(data, Encoding.MSGPACK)


#: Every msgpack extension form, as (type byte(s) up to the type code, data length).
#: fixext N carries no length; ext 8/16/32 carry one, and may carry zero.
EXT_FORMS = {
    "fixext1": (b"\xd4", 1),
    "fixext2": (b"\xd5", 2),
    "fixext4": (b"\xd6", 4),
    "fixext8": (b"\xd7", 8),
    "fixext16": (b"\xd8", 16),
    "ext8-empty": (b"\xc7\x00", 0),
    "ext8": (b"\xc7\x03", 3),
    "ext16-empty": (b"\xc8\x00\x00", 0),
    "ext16": (b"\xc8\x00\x03", 3),
    "ext32-empty": (b"\xc9\x00\x00\x00\x00", 0),
    "ext32": (b"\xc9\x00\x00\x00\x03", 3),
}


def ext_value(form: str, code: int) -> bytes:
    """One msgpack extension value of ``form`` with type ``code``."""
    head, length = EXT_FORMS[form]
    return head + code.to_bytes(1, "big", signed=True) + b"x" * length


@pytest.mark.parametrize("code", [5, 0, -1, 127, -128], ids=lambda c: f"type{c}")
@pytest.mark.parametrize("form", list(EXT_FORMS))
def test_msgpack_decode_rejects_every_extension_form(form: str, code: int) -> None:
    value = ext_value(form, code)
    frames = [
        b"\x83\xa2op\xa4ping\xa2id\x07\xa1x" + value,  # under a key the server ignores
        b"\x83\xa2op\xa4ping\xa2id\x07\xa1d" + value,  # as the payload
        b"\x82\xa2op\xa4ping\xa2id\x91" + value,  # inside an array
        value,  # as the whole frame
    ]
    for data in frames:
        with pytest.raises(FrameError) as info:
            decode(data, Encoding.MSGPACK)
        assert info.value.code is ErrorCode.BAD_FRAME


@given(code=st.integers(min_value=0, max_value=127), data=st.binary(max_size=300))
def test_msgpack_decode_rejects_any_extension_value(code: int, data: bytes) -> None:
    # ExtType takes application types only; the test above covers the negative ones.
    packed = msgpack.packb({"op": "ping", "id": 1, "x": msgpack.ExtType(code, data)})
    with pytest.raises(FrameError):
        decode(packed, Encoding.MSGPACK)


@pytest.mark.parametrize(
    "data",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        '{"a":' + "[" * 30_000 + "]" * 30_000 + "}",  # under the default limit
    ],
    ids=["arrays", "maps", "arrays-in-a-map"],
)
def test_json_decode_deep_nesting_is_a_frame_error(data: str) -> None:
    with pytest.raises(FrameError) as info:  # a RecursionError would fail this test
        decode(data, Encoding.JSON, max_size=len(data))
    assert info.value.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "data",
    [
        b"\x91" * 100_000 + b"\xc0",
        b"\x81\xa1a" * 100_000 + b"\xc0",
        b"\x81\xa1a" + b"\x91" * 60_000 + b"\xc0",  # under the default limit
    ],
    ids=["arrays", "maps", "arrays-in-a-map"],
)
def test_msgpack_decode_deep_nesting_is_a_frame_error(data: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode(data, Encoding.MSGPACK, max_size=len(data))
    assert info.value.code is ErrorCode.BAD_FRAME


# --------------------------------------------------------------------------- parse_command: valid


def full_payload(op: str) -> dict[str, Any]:
    return {f.name: valid_value(f) for f in COMMANDS[op].fields}


@pytest.mark.parametrize("op", sorted(COMMANDS))
def test_parse_command_accepts_every_op_with_all_fields(op: str) -> None:
    d = full_payload(op)
    command = parse_command({"op": op, "id": 9, "d": dict(d)})
    assert command == Command(op, 9, d)


@pytest.mark.parametrize("op", sorted(COMMANDS))
def test_parse_command_fills_defaults_of_omitted_optional_fields(op: str) -> None:
    fields = COMMANDS[op].fields
    d = {f.name: valid_value(f) for f in fields if f.required}
    command = parse_command({"op": op, "id": 1, "d": d})
    assert set(command.d) == {f.name for f in fields}
    for f in fields:
        assert command.d[f.name] == (valid_value(f) if f.required else f.default)


@pytest.mark.parametrize("op", sorted(COMMANDS))
def test_parse_command_drops_unknown_keys(op: str) -> None:
    d = full_payload(op) | {"zz_future_field": [1, 2], "flags": {"x": True}}
    frame = {"op": op, "id": 2, "d": d, "v": 2, "trace": "abc"}
    command = parse_command(frame)
    assert command.d == full_payload(op)
    assert set(command.d) == {f.name for f in COMMANDS[op].fields}


@pytest.mark.parametrize("op", sorted(COMMANDS))
@given(data=st.data())
def test_parse_command_accepts_any_valid_payload(op: str, data: st.DataObject) -> None:
    fields = COMMANDS[op].fields
    payload = data.draw(
        st.fixed_dictionaries(
            {f.name: field_strategy(f) for f in fields if f.required},
            optional={f.name: field_strategy(f) for f in fields if not f.required},
        )
    )
    command_id = data.draw(st.integers(min_value=0, max_value=MAX_SAFE_INT))
    command = parse_command({"op": op, "id": command_id, "d": payload})
    assert command.op == op
    assert command.id == command_id
    assert command.d == {f.name: payload.get(f.name, f.default) for f in fields}


def test_parse_command_core_examples() -> None:
    assert parse_command({"op": "ping", "id": 0}) == Command("ping", 0, {})
    assert parse_command({"op": "identify", "id": 1, "d": {"token": "t0k"}}) == Command(
        "identify", 1, {"token": "t0k"}
    )
    assert parse_command({"op": "subscribe", "id": 2, "d": {"channel": "c1"}}) == Command(
        "subscribe", 2, {"channel": "c1", "since": None, "epoch": None}
    )
    assert parse_command(
        {"op": "subscribe", "id": 3, "d": {"channel": "c1", "since": 0, "epoch": "e"}}
    ) == Command("subscribe", 3, {"channel": "c1", "since": 0, "epoch": "e"})
    assert parse_command({"op": "history", "id": 4, "d": {"channel": "c1"}}) == Command(
        "history", 4, {"channel": "c1", "before": None, "limit": DEFAULT_HISTORY_LIMIT}
    )
    assert parse_command(
        {"op": "message.send", "id": MAX_SAFE_INT, "d": {"channel": "c1", "text": "hi"}}
    ) == Command(
        "message.send",
        MAX_SAFE_INT,
        {"channel": "c1", "text": "hi", "nonce": None, "reply_to": None},
    )


def test_parse_command_treats_null_optional_field_as_omitted() -> None:
    command = parse_command(
        {"op": "history", "id": 1, "d": {"channel": "c", "limit": None, "before": None}}
    )
    assert command.d == {"channel": "c", "before": None, "limit": DEFAULT_HISTORY_LIMIT}


@pytest.mark.parametrize("limit", [1, MAX_HISTORY_LIMIT])
def test_history_limit_bounds_are_inclusive(limit: int) -> None:
    command = parse_command({"op": "history", "id": 1, "d": {"channel": "c", "limit": limit}})
    assert command.d["limit"] == limit


def test_message_text_at_the_limit_is_accepted() -> None:
    text = "é" * MAX_MESSAGE_CHARS
    command = parse_command({"op": "message.send", "id": 1, "d": {"channel": "c", "text": text}})
    assert command.d["text"] == text


# --------------------------------------------------------------------------- parse_command: errors


@pytest.mark.parametrize(
    "frame",
    [
        {"op": "ping", "d": {}},
        {"op": "ping", "id": None},
        {"op": "ping", "id": "1"},
        {"op": "ping", "id": 1.0},
        {"op": "ping", "id": [1]},
        {"op": "ping", "id": True},
        {"op": "ping", "id": False},
        {"op": "ping", "id": -1},
        {"op": "ping", "id": MAX_SAFE_INT + 1},
    ],
    ids=["missing", "null", "str", "float", "list", "true", "false", "negative", "unsafe"],
)
def test_bad_id_is_a_request_error_without_command_id(frame: dict[str, Any]) -> None:
    exc = request_error(frame)
    assert exc.code is ErrorCode.BAD_REQUEST
    assert exc.command_id is None
    assert "field 'id'" in exc.message
    assert "id" not in error_from(exc)


def test_unknown_op_is_bad_request_with_command_id() -> None:
    exc = request_error({"op": "teleport", "id": 5, "d": {}})
    assert exc.code is ErrorCode.BAD_REQUEST
    assert exc.command_id == 5
    assert "teleport" in exc.message


@pytest.mark.parametrize("frame", [{"id": 5}, {"id": 5, "op": 3}, {"id": 5, "op": None}])
def test_missing_or_mistyped_op_is_bad_request_with_command_id(frame: dict[str, Any]) -> None:
    exc = request_error(frame)
    assert exc.code is ErrorCode.BAD_REQUEST
    assert exc.command_id == 5
    assert "field 'op'" in exc.message


@pytest.mark.parametrize("d", [[], "x", 3, None])
def test_non_map_payload_is_bad_request(d: Any) -> None:
    exc = request_error({"op": "ping", "id": 6, "d": d})
    assert exc.code is ErrorCode.BAD_REQUEST
    assert exc.command_id == 6
    assert "field 'd'" in exc.message


@pytest.mark.parametrize(
    ("op", "d", "name"),
    [
        ("identify", {}, "token"),
        ("subscribe", {"since": 3}, "channel"),
        ("unsubscribe", {}, "channel"),
        ("history", {"limit": 10}, "channel"),
        ("message.send", {"channel": "c"}, "text"),
        ("message.send", {"text": "hi"}, "channel"),
        ("message.send", {"channel": "c", "text": None}, "text"),
    ],
)
def test_missing_required_field_is_bad_request_naming_it(
    op: str, d: dict[str, Any], name: str
) -> None:
    assert "required" in field_error(op, d, ErrorCode.BAD_REQUEST, name)


@pytest.mark.parametrize(
    ("op", "d", "name"),
    [
        ("identify", {"token": 12345}, "token"),
        ("subscribe", {"channel": 5}, "channel"),
        ("subscribe", {"channel": "c", "since": "x"}, "since"),
        ("subscribe", {"channel": "c", "since": True}, "since"),
        ("subscribe", {"channel": "c", "since": 1.0}, "since"),
        ("subscribe", {"channel": "c", "epoch": 7}, "epoch"),
        ("unsubscribe", {"channel": ["c"]}, "channel"),
        ("history", {"channel": "c", "limit": "10"}, "limit"),
        ("history", {"channel": "c", "limit": 1.5}, "limit"),
        ("history", {"channel": "c", "before": False}, "before"),
        ("message.send", {"channel": "c", "text": ["hi"]}, "text"),
        ("message.send", {"channel": "c", "text": b"hi"}, "text"),
        ("message.send", {"channel": "c", "text": "hi", "nonce": 1}, "nonce"),
    ],
)
def test_mistyped_field_is_bad_request_naming_it(op: str, d: dict[str, Any], name: str) -> None:
    assert "must be" in field_error(op, d, ErrorCode.BAD_REQUEST, name)


@pytest.mark.parametrize(
    ("op", "d", "name"),
    [
        ("history", {"channel": "c", "limit": 0}, "limit"),
        ("history", {"channel": "c", "limit": MAX_HISTORY_LIMIT + 1}, "limit"),
        ("history", {"channel": "c", "before": 0}, "before"),
        ("subscribe", {"channel": "c", "since": -1}, "since"),
        ("subscribe", {"channel": "c", "since": MAX_SAFE_INT + 1}, "since"),
    ],
)
def test_out_of_range_integer_is_bad_request_naming_it(
    op: str, d: dict[str, Any], name: str
) -> None:
    assert "between" in field_error(op, d, ErrorCode.BAD_REQUEST, name)


@pytest.mark.parametrize(
    ("op", "d", "name"),
    [
        ("message.send", {"channel": "c", "text": "x" * (MAX_MESSAGE_CHARS + 1)}, "text"),
        ("message.send", {"channel": "c", "text": "é" * (MAX_MESSAGE_CHARS + 1)}, "text"),
        (
            "message.send",
            {"channel": "c", "text": "hi", "nonce": "n" * (MAX_NONCE_CHARS + 1)},
            "nonce",
        ),
        ("subscribe", {"channel": "c" * (MAX_ID_CHARS + 1)}, "channel"),
        ("identify", {"token": "t" * 513}, "token"),
    ],
)
def test_over_long_string_is_too_large_naming_it(op: str, d: dict[str, Any], name: str) -> None:
    field_error(op, d, ErrorCode.TOO_LARGE, name)
    frame = error_from(request_error({"op": op, "id": 14, "d": d}))
    assert frame["id"] == 14
    assert frame["d"]["code"] == "too_large"


@pytest.mark.parametrize("text", ["", " ", "\n\t  \r\n", "\u3000"])
def test_empty_or_whitespace_text_is_bad_request(text: str) -> None:
    d = {"channel": "c", "text": text}
    assert "empty" in field_error("message.send", d, ErrorCode.BAD_REQUEST, "text")


@pytest.mark.parametrize(
    ("op", "d", "name"),
    [
        ("identify", {"token": ""}, "token"),
        ("subscribe", {"channel": "  "}, "channel"),
        ("message.send", {"channel": "c", "text": "hi", "nonce": ""}, "nonce"),
    ],
)
def test_empty_nonempty_fields_are_bad_request(op: str, d: dict[str, Any], name: str) -> None:
    exc = request_error({"op": op, "id": 16, "d": d})
    assert exc.code is ErrorCode.BAD_REQUEST
    assert f"field '{name}'" in exc.message


@given(frame=decoded_maps)
def test_parse_command_any_map_gives_command_or_protocol_error(frame: dict[Any, Any]) -> None:
    try:
        command = parse_command(frame)
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.BAD_REQUEST, ErrorCode.TOO_LARGE)
    else:
        assert isinstance(command, Command)
        assert command.op in COMMANDS
        assert set(command.d) == {f.name for f in COMMANDS[command.op].fields}


@given(frame=command_like_frames)
def test_parse_command_error_echoes_id_exactly_when_usable(frame: dict[str, Any]) -> None:
    raw_id = frame.get("id")
    usable = type(raw_id) is int and 0 <= raw_id <= MAX_SAFE_INT
    try:
        command = parse_command(frame)
    except RequestError as exc:
        assert exc.command_id == (raw_id if usable else None)
    else:
        assert usable
        assert command.id == raw_id


# --------------------------------------------------------------------------- server frames


def test_hello_shape() -> None:
    frame = hello(heartbeat_ms=25_000, server="agora/0.1", max_frame=65_536, ts=1_764_340_000_000)
    assert frame == {
        "op": "hello",
        "d": {
            "heartbeat_ms": 25_000,
            "protocol": 1,
            "server": "agora/0.1",
            "max_frame": 65_536,
            "ts": 1_764_340_000_000,
        },
    }
    assert PROTOCOL_VERSION == 1


def test_reply_shape() -> None:
    assert reply(4) == {"op": "reply", "id": 4, "d": {}}
    assert reply(0, {"offset": 3}) == {"op": "reply", "id": 0, "d": {"offset": 3}}


def test_event_shape_without_offset() -> None:
    frame = event("typing.started", "c1", {"user": "u1"})
    assert frame == {"op": "event", "t": "typing.started", "ch": "c1", "d": {"user": "u1"}}
    assert "o" not in frame


def test_event_shape_with_offset() -> None:
    frame = event("message.created", "c1", {"message": {"id": "m"}}, o=17)
    assert frame == {
        "op": "event",
        "t": "message.created",
        "ch": "c1",
        "d": {"message": {"id": "m"}},
        "o": 17,
    }


def test_error_shape_with_and_without_id() -> None:
    assert error(ErrorCode.NOT_FOUND, "no such channel", command_id=3) == {
        "op": "error",
        "id": 3,
        "d": {"code": "not_found", "message": "no such channel"},
    }
    assert error(ErrorCode.BAD_FRAME, "not a map") == {
        "op": "error",
        "d": {"code": "bad_frame", "message": "not a map"},
    }


def test_error_from_carries_id_and_retry_after_ms() -> None:
    exc = ProtocolError(
        "slow down", code=ErrorCode.RATE_LIMITED, command_id=21, retry_after_ms=1_500
    )
    frame = error_from(exc)
    assert frame == {
        "op": "error",
        "id": 21,
        "d": {"code": "rate_limited", "message": "slow down", "retry_after_ms": 1_500},
    }
    assert type(frame["d"]["code"]) is str


def test_error_from_keeps_zero_id_and_zero_retry_after() -> None:
    exc = ProtocolError("again", code=ErrorCode.RATE_LIMITED, command_id=0, retry_after_ms=0)
    frame = error_from(exc)
    assert frame["id"] == 0
    assert frame["d"]["retry_after_ms"] == 0


def test_error_from_omits_absent_id_and_retry_after_ms() -> None:
    frame = error_from(FrameError("a frame is a map, got an array"))
    assert frame == {
        "op": "error",
        "d": {"code": "bad_frame", "message": "a frame is a map, got an array"},
    }


def test_error_from_a_parse_failure_echoes_the_command_id() -> None:
    exc = request_error({"op": "history", "id": 77, "d": {"channel": "c", "limit": 0}})
    frame = error_from(exc)
    assert frame["op"] == "error"
    assert frame["id"] == 77
    assert frame["d"]["code"] == "bad_request"
    assert "field 'limit'" in frame["d"]["message"]
    assert "retry_after_ms" not in frame["d"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_error_frames_encode_in_both_encodings(encoding: Encoding) -> None:
    frame = error_from(RequestError("unknown op 'x'", command_id=2))
    assert decode(encode(frame, encoding), encoding) == {
        "op": "error",
        "id": 2,
        "d": {"code": "bad_request", "message": "unknown op 'x'"},
    }


#: Characters that UTF-8 cannot carry (lone surrogates) mixed with ones it can.
unencodable_text = st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(), min_size=1
)


def test_echo_escapes_lone_surrogates_and_keeps_other_text() -> None:
    assert echo("\ud800") == "\\ud800"
    assert echo("a\udfffb") == "a\\udfffb"
    assert echo("\ud83d\ude00") == "\\ud83d\\ude00"  # two lone halves, not a pair
    assert echo("héllo 👋 \u3000") == "héllo 👋 \u3000"
    assert echo("no.such.op") == "no.such.op"


def test_echo_shows_at_most_64_characters_unless_told() -> None:
    assert echo("x" * 100) == "x" * 64
    assert echo("\ud800" * 100) == "\\ud800" * 64
    assert echo("x" * 100, limit=None) == "x" * 100


@given(value=unencodable_text)
def test_echo_always_encodes_as_utf8(value: str) -> None:
    echo(value, limit=None).encode("utf-8")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unknown_op_with_a_lone_surrogate_gives_an_error_that_encodes(encoding: Encoding) -> None:
    exc = request_error({"op": "\ud800", "id": 3})
    wire = encode(error_from(exc), encoding)
    if isinstance(wire, str):
        wire.encode("utf-8")  # what a text message carries
    assert decode(wire, encoding) == {
        "op": "error",
        "id": 3,
        "d": {"code": "bad_request", "message": "unknown op '\\ud800'"},
    }


@pytest.mark.parametrize("encoding", ENCODINGS)
@given(message=unencodable_text)
def test_error_frames_encode_whatever_their_message(encoding: Encoding, message: str) -> None:
    for frame in (
        error(ErrorCode.NOT_FOUND, message, command_id=1),
        error_from(RequestError(message)),
        error_from(FrameError(message)),
    ):
        wire = encode(frame, encoding)
        if isinstance(wire, str):
            wire.encode("utf-8")
        assert decode(wire, encoding)["d"]["message"] == echo(message, limit=None)


def test_exception_classes_default_codes() -> None:
    assert FrameError("x").code is ErrorCode.BAD_FRAME
    assert RequestError("x").code is ErrorCode.BAD_REQUEST
    assert RequestError("x", code=ErrorCode.TOO_LARGE).code is ErrorCode.TOO_LARGE
    assert issubclass(FrameError, ProtocolError)
    assert issubclass(RequestError, ProtocolError)


# --------------------------------------------------------------------------- codes

# The tables of docs/protocol.md (§8 error codes, §9 close codes), against the enums.


def documented_error_codes() -> list[str]:
    return [code.strip("`") for code, *_ in doc_table("8. Error codes")]


def documented_close_codes() -> dict[str, set[int]]:
    """§9's close codes by the group they are listed under, and the WebSocket layer's
    (those whose reason the WebSocket layer sets) under "layer"."""
    groups: dict[str, set[int]] = {"layer": set()}
    group = ""
    for cell, reason, *_ in doc_table("9. Close codes"):
        if cell.startswith("**"):
            group = cell.strip("*").split(" (")[0]
            groups[group] = set()
            continue
        codes = {int(code) for code in cell.split(" / ")}
        groups[group] |= codes
        if "WebSocket layer" in reason:
            groups["layer"] |= codes
    return groups


def test_the_documented_error_codes_are_the_error_code_enum() -> None:
    documented = documented_error_codes()
    assert len(documented) == len(set(documented))
    assert sorted(documented) == sorted(code.value for code in ErrorCode)


def test_the_documented_close_codes_are_the_close_code_enum_and_the_websocket_layers() -> None:
    groups = documented_close_codes()
    layer = groups.pop("layer")
    documented = set().union(*groups.values())
    assert {int(code) for code in CloseCode} <= documented  # every named code is documented
    assert documented - layer <= {int(code) for code in CloseCode}  # every code Agora picks


def test_the_documented_4001_reasons_are_the_auth_close_reason_enum() -> None:
    documented = [
        reason.split("`")[1]
        for code, reason, *_ in doc_table("9. Close codes")
        if code == str(int(CloseCode.NOT_AUTHENTICATED))
    ]
    assert len(documented) == len(set(documented))
    assert sorted(documented) == sorted(reason.value for reason in AuthCloseReason)


def test_reconnectable_close_codes_are_the_documented_reconnect_groups() -> None:
    groups = documented_close_codes()
    assert groups["Reconnect and resume"] | groups["Back off, then reconnect"] == RECONNECTABLE


def test_close_codes_by_meaning() -> None:
    assert CloseCode.NORMAL == 1000
    assert CloseCode.GOING_AWAY == 1001
    assert CloseCode.POLICY_VIOLATION == 1008
    assert CloseCode.FRAME_TOO_LARGE == 1009
    assert CloseCode.NOT_AUTHENTICATED == 4001
    assert CloseCode.UNSUPPORTED == 4002
    assert CloseCode.FLOODING == 4008
    assert CloseCode.HEARTBEAT_TIMEOUT == 4009
    assert CloseCode.TOO_SLOW == 4010


# --------------------------------------------------------------------------- transcode


def test_transcode_to_msgpack_is_identity() -> None:
    wire = encode(event("message.created", "c", {"message": {"text": "hi"}}, o=1), Encoding.MSGPACK)
    assert transcode(wire, Encoding.MSGPACK) == wire


def test_transcode_of_an_event_equals_json_encoding() -> None:
    frame = event("message.created", "c", {"message": {"id": "m", "text": "héllo"}}, o=3)
    wire = encode(frame, Encoding.MSGPACK)
    assert isinstance(wire, bytes)
    assert transcode(wire, Encoding.JSON) == encode(frame, Encoding.JSON)


@given(frame=portable_frames)
def test_transcode_property(frame: dict[str, Any]) -> None:
    wire = encode(frame, Encoding.MSGPACK)
    assert isinstance(wire, bytes)
    assert transcode(wire, Encoding.JSON) == encode(frame, Encoding.JSON)
