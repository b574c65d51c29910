"""`decode` reads a plain body with pydantic's JSON parser and anything else the careful
way: for every message of every saga, and the variants a tolerant reader meets, what
the fast path reads it reads as the careful path does, and `decode` answers as the
careful path does."""

from __future__ import annotations

import json
import types
import typing
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from contracts import InvalidMessage, decode
from contracts.codec import _decode_carefully, _plainly_readable
from contracts.recorded import SagaMessage
from contracts.sagas import MESSAGES_BY_TYPE
from contracts.samples import sample_fare, sample_order


def example(annotation: Any) -> Any:
    """A valid JSON-able value of `annotation` (the first choice of each union)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return example(args[0])
    if origin in (typing.Union, types.UnionType):
        return example(next(arg for arg in args if arg is not type(None)))
    if origin is typing.Literal:
        return args[0]
    if origin is list:
        return [example(args[0])]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {
            name: example(info.annotation)
            for name, info in annotation.model_fields.items()
            if name != "type"
        }
    return {
        str: "s-1",
        int: 1,
        float: 2,
        Decimal: "12.50",
        uuid.UUID: str(uuid.UUID(int=7)),
        datetime: datetime(2026, 12, 1, 6, 0, 0, 123456, tzinfo=UTC).isoformat(),
    }[annotation]


def bodies(model: type[BaseModel]) -> list[bytes]:
    """A body of `model` and the variants a tolerant reader meets."""
    base = example(model)
    if "type" in model.model_fields:
        base = {"type": model.model_fields["type"].default, **base}
    decimal = next((k for k, v in base.items() if v == "12.50"), None)
    text = next((k for k, v in base.items() if v == "s-1" and k != "type"), None)
    other = "FareRegistered" if base.get("type") == "OrderCreated" else "OrderCreated"
    variants: list[dict[str, Any]] = [
        base,
        {**base, "added_by_a_newer_producer": "x"},
        {**base, "type": other},
        {k: v for k, v in base.items() if k != next(iter(base))},
    ]
    if decimal:
        variants += [{**base, decimal: 12}, {**base, decimal: 12.5}, {**base, decimal: 0.1}]
    if text:
        variants += [{**base, text: "é"}, {**base, text: 12}, {**base, text: "a\x00b"}]
    out = [json.dumps(v).encode() for v in variants]
    if decimal:
        # A number that a binary float rounds into a valid amount: read exactly, it is not.
        out.append(out[0].replace(b'"12.50"', b"12.499999999999999999", 1))
    if text:
        out.append(json.dumps({**base, text: "é"}, ensure_ascii=False).encode())
    return out


def outcome(read: Any) -> Any:
    try:
        return ("read", read().model_dump())
    except (InvalidMessage, ValidationError):
        return ("refused",)


MODELS = [*MESSAGES_BY_TYPE.values()]
CASES = [(m, body) for m in MODELS for body in bodies(m)] + [
    (model, json.dumps(body).encode())
    for model, body in (
        (MESSAGES_BY_TYPE["PlaceOrder"], sample_order("ok")),
        (MESSAGES_BY_TYPE["PlaceOrder"], {**sample_order("ok"), "type": "OrderCreated"}),
        (MESSAGES_BY_TYPE["SubmitFare"], sample_fare("ok")),
    )
]


@pytest.mark.parametrize(("model", "body"), CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_both_ways_read_the_same(model: type[BaseModel], body: bytes) -> None:
    for reader in (model, SagaMessage):
        fast = (
            outcome(lambda reader=reader: reader.model_validate_json(body))
            if _plainly_readable(reader, body)
            else None
        )
        careful = outcome(lambda reader=reader: _decode_carefully(reader, body))
        # What the fast path refuses goes the careful way; what it reads, it reads alike.
        assert fast in (None, ("refused",), careful), (reader.__name__, body)
        assert outcome(lambda reader=reader: decode(reader, body)) == careful


def test_most_events_of_a_saga_take_the_fast_path() -> None:
    plain = [m for m in MODELS if _plainly_readable(m, bodies(m)[0])]
    # A body whose own text has a colon before a fraction (none here) would not.
    assert len(plain) == len(MODELS)


def test_a_float_anywhere_sends_a_body_the_careful_way() -> None:
    assert not _plainly_readable(SagaMessage, b'{"items": [1, 2.5]}')
    assert not _plainly_readable(SagaMessage, b'{"a": 1e3}')
    assert _plainly_readable(SagaMessage, b'{"at": "06:00:00.5Z", "n": [1, 2]}')


def test_nesting_past_the_limit_is_refused_whichever_way() -> None:
    body = json.loads(bodies(MESSAGES_BY_TYPE["PaymentDebited"])[0])
    body["deep"] = json.loads("[" * 40 + "]" * 40)
    with pytest.raises(InvalidMessage, match="nested deeper"):
        decode(SagaMessage, json.dumps(body).encode())
