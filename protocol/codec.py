"""The two wire encodings: msgpack (binary messages) and JSON (text messages).

``decode`` returns a ``dict`` or raises ``FrameError``; nothing else, for any input.
``encode`` takes a frame built by :mod:`protocol.frames` and returns what one
WebSocket message carries: ``bytes`` for msgpack, ``str`` for JSON.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Any, NoReturn

import msgpack

from protocol.errors import FrameError

#: Default limit of an inbound frame, in bytes.
DEFAULT_MAX_FRAME = 64 * 1024


class Encoding(StrEnum):
    MSGPACK = "msgpack"
    JSON = "json"

    @property
    def binary(self) -> bool:
        """Whether frames of this encoding travel as binary WebSocket messages."""
        return self is Encoding.MSGPACK


Wire = bytes | str

_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(frame: dict[str, Any], encoding: Encoding) -> Wire:
    """Encode one frame for the wire: ``bytes`` for msgpack, ``str`` for JSON."""
    if encoding is Encoding.MSGPACK:
        return msgpack.packb(frame, use_bin_type=True)
    return _json_encoder.encode(frame)


def decode(data: Wire, encoding: Encoding, *, max_size: int = DEFAULT_MAX_FRAME) -> dict[str, Any]:
    """Decode one inbound WebSocket message into a frame map.

    Raises ``FrameError`` when the message is of the other kind (text on a
    msgpack session, binary on a JSON session), is larger than ``max_size``,
    cannot be decoded, or is not a map.
    """
    if encoding is Encoding.MSGPACK:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise FrameError("msgpack sessions send binary messages, got a text message")
        if len(data) > max_size:
            raise FrameError(f"frame of {len(data)} bytes is over the limit of {max_size}")
        try:
            value = msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                max_str_len=max_size,
                max_bin_len=max_size,
                max_array_len=max_size,
                max_map_len=max_size,
                # No extension type is on the wire. max_ext_len=0 refuses every one
                # with data before it is read (timestamps, type -1, never reach
                # ext_hook); msgpack lets zero-length ones through to ext_hook.
                max_ext_len=0,
                ext_hook=_reject_extension,
            )
        except (ValueError, RecursionError) as exc:  # msgpack's errors are ValueErrors
            raise FrameError(f"not valid msgpack: {exc}") from None
    else:
        if not isinstance(data, str):
            raise FrameError("json sessions send text messages, got a binary message")
        if len(data) > max_size:
            raise FrameError(f"frame of {len(data)} characters is over the limit of {max_size}")
        try:
            value = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:
            raise FrameError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FrameError(f"a frame is a map, got {type_name(value)}")
    return value


def _reject_extension(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"extension type {code} is not allowed")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def transcode(data: bytes, encoding: Encoding) -> Wire:
    """Re-encode a msgpack frame produced by this package into ``encoding``."""
    if encoding is Encoding.MSGPACK:
        return data
    return _json_encoder.encode(msgpack.unpackb(data, raw=False))


def type_name(value: object) -> str:
    """The wire name of a decoded value's type, for error messages."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case bytes():
            return "binary data"
        case list() | tuple():
            return "an array"
        case dict():
            return "a map"
    return type(value).__name__
