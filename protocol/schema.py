"""Declarative validation of command payloads.

A ``Schema`` is a list of ``Field``s. ``Schema.validate(d)`` returns a new dict
holding exactly the declared fields (defaults filled in, unknown keys dropped
for forward compatibility) or raises ``RequestError`` naming the field and
what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.codec import type_name
from protocol.codes import ErrorCode
from protocol.errors import RequestError

#: The largest integer every client can represent exactly (JavaScript's safe range).
MAX_SAFE_INT = 2**53 - 1

_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    bool: "a boolean",
    dict: "a map",
    list: "an array",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One payload field.

    ``max_len`` is in characters for strings and items for arrays; a longer
    value is refused with ``too_large``. ``minimum``/``maximum`` bound integers;
    ``choices`` lists the only strings allowed.
    """

    name: str
    kind: type
    required: bool = True
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    max_len: int | None = None
    nonempty: bool = False
    choices: tuple[str, ...] | None = None

    def check(self, value: Any) -> Any:
        if not _is_kind(value, self.kind):
            raise RequestError(
                f"field '{self.name}' must be {_TYPE_NAMES[self.kind]}, got {type_name(value)}"
            )
        if self.kind in (list, dict) and _holds_nul(value):
            raise RequestError(f"field '{self.name}' {NUL}")
        if self.kind is int:
            low = 0 if self.minimum is None else self.minimum
            high = MAX_SAFE_INT if self.maximum is None else self.maximum
            if not low <= value <= high:
                raise RequestError(f"field '{self.name}' must be between {low} and {high}")
        if self.kind is str:
            problem = unstorable(value)
            if problem is not None:
                raise RequestError(f"field '{self.name}' {problem}")
            if self.nonempty and not value.strip():
                raise RequestError(f"field '{self.name}' must not be empty")
            if self.choices is not None and value not in self.choices:
                raise RequestError(f"field '{self.name}' must be one of {', '.join(self.choices)}")
        if self.max_len is not None and len(value) > self.max_len:
            raise RequestError(
                f"field '{self.name}' is {len(value)} long, over the limit of {self.max_len}",
                code=ErrorCode.TOO_LARGE,
            )
        return value


#: Why a string holding U+0000 is refused: PostgreSQL's text cannot hold it, so both
#: stores refuse it alike.
NUL = "must not contain U+0000 (NUL)"


def unstorable(value: str) -> str | None:
    """Why no store can keep this string, as the end of "field 'x' ...", or None.

    A NUL, or a lone surrogate (which a JSON escape such as ``"\\ud800"`` can carry).
    The gateway's fields and the HTTP bodies share it.
    """
    if "\x00" in value:
        return NUL
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "is not valid Unicode"
    return None


def _holds_nul(value: Any) -> bool:
    """Whether a string in ``value`` (a string, or strings and keys nested in it) holds NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return False


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:  # bool is an int in Python, never on the wire
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


@dataclass(frozen=True, slots=True)
class Schema:
    fields: tuple[Field, ...] = field(default_factory=tuple)

    def validate(self, d: Any) -> dict[str, Any]:
        if not isinstance(d, dict):
            raise RequestError(f"field 'd' must be a map, got {type_name(d)}")
        out: dict[str, Any] = {}
        for f in self.fields:
            if f.name in d and d[f.name] is not None:
                out[f.name] = f.check(d[f.name])
            elif f.required:
                raise RequestError(f"field '{f.name}' is required")
            else:
                out[f.name] = f.default
        return out


def schema(*fields: Field) -> Schema:
    return Schema(tuple(fields))
