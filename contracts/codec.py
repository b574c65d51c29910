"""Reading and writing message bodies.

Consumers are tolerant readers: a body may come from a person typing JSON into the
RabbitMQ management UI (no content type, floats for money, extra fields), so unknown
fields are ignored and numbers are read as exact decimals. Anything that still does not
fit raises `InvalidMessage` with a reason a person can read.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from contracts.envelope import Event

M = TypeVar("M", bound=BaseModel)


class InvalidMessage(ValueError):
    """A body that no retry can fix: it goes to the dead-letter queue with `reason`."""

    def __init__(self, reason: str, fields: list[str] | None = None) -> None:
        # Bounded here, once: a hostile body can make a validator say a great deal.
        super().__init__(reason[:2000])
        self.reason = reason[:2000]
        #: The dotted paths of the fields at fault (empty when the body is not even JSON).
        self.fields = [field[:200] for field in (fields or [])[:50]]


def encode(event: Event) -> bytes:
    """The JSON body of an event on the wire (decimals as strings, so money stays exact)."""
    return event.model_dump_json().encode()


def decode(model: type[M], body: bytes) -> M:
    """Validate `body` as `model`, ignoring fields the model does not know."""
    if _plainly_readable(model, body):
        # pydantic's own JSON parser, about a fifth of the time the careful path takes
        # (docs/performance.md); a body it does not take goes the careful path, which
        # reads it tolerantly or says why not.
        try:
            return model.model_validate_json(body)
        except ValidationError:
            pass
    return _decode_carefully(model, body)


#: A JSON number with a fraction or an exponent, as a value (after `:`, `,` or `[`, before
#: `,`, `}` or `]`). Inside a string it may match too: that only costs the fast path.
_FLOAT = re.compile(rb"[:,\[]\s*-?\d+(?:\.\d+(?:[eE][+-]?\d+)?|[eE][+-]?\d+)(?=\s*[,}\]])")
#: Shorter than the longest integer Python parses (4,300 digits): no body this long
#: can hold a number the careful path refuses.
_PLAIN_BODY_BYTES = 4000


def _plainly_readable(model: type[BaseModel], body: bytes) -> bool:
    """Whether pydantic's JSON parser reads `body` exactly as the careful path would:

    - no escape sequence (so no NUL and no lone surrogate: raw, both parsers refuse them);
    - fewer brackets than MAX_DEPTH (so no nesting past it);
    - no JSON float, NaN or Infinity (pydantic reads a float through a binary one, where
      the careful path keeps every digit);
    - short enough that no integer is past Python's limit;
    - and, for a tolerant model that names its type, no `type` key (the careful path
      refuses a body that says it is another message; an event's `type` field does that
      itself, and its forbidden extra fields send a newer producer's body the careful way).
    """
    if len(body) > _PLAIN_BODY_BYTES or b"\\u" in body:
        return False
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        return False
    if _FLOAT.search(body) or b"NaN" in body or b"Infinity" in body:
        return False
    tolerant = model.model_config.get("extra") != "forbid"
    return not (tolerant and hasattr(model, "type_name") and b'"type"' in body)


def _decode_carefully(model: type[M], body: bytes) -> M:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"body is not UTF-8: {exc}") from None
    try:
        # parse_float=Decimal keeps 34.99 as 34.99: the sample's float sums drift.
        data: Any = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad JSON and integers past Python's digit limit; RecursionError
        # a body nested deeper than the parser goes: bad input either way, never a retry.
        raise InvalidMessage(f"body is not JSON we read: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"body must be a JSON object, got {type(data).__name__}")
    unreadable = _unreadable(data)
    if unreadable is not None:
        # Refused here, not retried against the database or a recursive reader.
        raise unreadable
    named = data.get("type")
    expected = getattr(model, "type_name", None)
    if isinstance(named, str) and expected is not None and named != expected():
        # A command reads tolerantly, but a body that says it is another message (an event
        # forged onto a saga-starting key) is not that command.
        raise InvalidMessage(f"a {named[:128]} is not a {expected()}", ["type"])
    if model.model_config.get("extra") == "forbid":
        # Published events forbid unknown fields; a consumer still reads a newer producer's.
        known = {name: value for name, value in data.items() if name in model.model_fields}
    else:
        known = data
    try:
        return model.model_validate(known)
    except ValidationError as exc:
        where = [_where(error) for error in exc.errors(include_url=False)]
        raise InvalidMessage(_describe(exc), list(dict.fromkeys(where))) from None


#: Deeper than any message of ours goes, and shallow enough for every recursive reader
#: after this one (validation, masking, the history's JSONB).
MAX_DEPTH = 32
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unreadable(data: Any) -> InvalidMessage | None:
    """Why `data` (parsed JSON) must be refused before anything reads it further: nested
    deeper than MAX_DEPTH, or a string (or key) PostgreSQL text cannot hold (a NUL, a lone
    surrogate). Iterative, so that no depth can make it recurse."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return InvalidMessage(f"nested deeper than {MAX_DEPTH} levels at {path}", [path])
        if isinstance(value, str):
            found = _UNSTORABLE.search(value)
            if found:
                what = "NUL character" if found.group() == "\x00" else "lone surrogate"
                return InvalidMessage(f"{what} in {path or 'a key'}", [path] if path else [])
        elif isinstance(value, dict):
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    return InvalidMessage(
                        f"NUL character or lone surrogate in a key of {path or 'the body'}",
                        [path] if path else [],
                    )
                stack.append((item, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((item, f"{path}.{index}" if path else str(index), depth + 1))
    return None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        parts.append(f"{_where(error)}: {error['msg']}")
    return "; ".join(parts)


def _where(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "body"
