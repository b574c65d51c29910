"""What a hostile client can send, refused before any database sees it: bodies no parser
should chew on, values no column holds, and senders that are not the declared producer."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from contracts import (
    SAGAS,
    InvalidMessage,
    OrderCreated,
    PlaceOrder,
    SagaMessage,
    decode,
    encode,
)
from contracts.samples import sample_order
from saga_log.runtime import ORIGIN_HEADER, Trust, Untrusted


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "not JSON we read"),
        (b'{"order_id": ' + b"9" * 5000 + b"}", "not JSON we read"),
        (
            json.dumps({**sample_order("ok"), "customer_id": "a\x00b"}).encode(),
            "NUL character in customer_id",
        ),
        (
            json.dumps(
                {**sample_order("ok"), "items": [{**sample_order("ok")["items"][0], "qty": 1e12}]}
            ).encode(),
            "items.0.qty",
        ),
    ],
)
def test_a_body_no_parser_or_column_should_take_is_invalid(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        decode(PlaceOrder, body)


def test_an_order_total_beyond_the_money_column_names_the_items() -> None:
    order = sample_order("ok")
    order["items"] = [{**order["items"][0], "qty": 99999999, "unit_price": 99999999}]
    with pytest.raises(InvalidMessage) as error:
        decode(PlaceOrder, json.dumps(order).encode())
    assert error.value.fields == ["items"] and "exceeds" in error.value.reason


def _unbounded(model: type[BaseModel], path: str = "") -> list[str]:
    """The string fields of `model` (nested models included) with no max_length."""
    found = []
    for name, info in model.model_fields.items():
        where = f"{path}{model.__name__}.{name}"
        for kind, bounded in _leaves(info.annotation, _limited(info.metadata)):
            if kind is str and not bounded:
                found.append(where)
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                found += _unbounded(kind, f"{where}>")
    return found


def _limited(metadata: Any) -> bool:
    return any(
        getattr(m, "max_length", None) or _limited(getattr(m, "metadata", ())) for m in metadata
    )


def _leaves(annotation: Any, bounded: bool) -> list[tuple[Any, bool]]:
    """Each leaf type of `annotation`, and whether a max_length applies to it."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        return _leaves(inner, bounded or _limited(metadata))
    if origin in (typing.Union, types.UnionType):
        return [leaf for arg in typing.get_args(annotation) for leaf in _leaves(arg, bounded)]
    if origin is list:
        return [leaf for arg in typing.get_args(annotation) for leaf in _leaves(arg, False)]
    return [(annotation, bounded)]


def test_every_text_field_of_every_message_has_a_length_limit() -> None:
    models = [m for saga in SAGAS for m in saga.messages()] + [SagaMessage]
    assert [field for model in models for field in _unbounded(model)] == []

    class Careless(BaseModel):
        note: str | None = None
        tags: list[typing.Annotated[str, "no limit"]] = []

    assert _unbounded(Careless) == ["Careless.note", "Careless.tags"]


class Raw:
    def __init__(self, user_id: str | None = None, headers: dict[str, Any] | None = None):
        self.user_id = user_id
        self.headers = headers or {}


def created(producer: str = "order") -> OrderCreated:
    order = sample_order("ok")
    return OrderCreated.caused_by(
        "c",
        producer=producer,
        order_id=order["order_id"],
        order_date=order["order_date"],
        customer_id=order["customer_id"],
        items=order["items"],
    )


PAYMENT = Trust(own="t-payment", prefix="t-")


@pytest.mark.parametrize(
    ("user_id", "headers", "accepted"),
    [
        ("t-order", {}, True),  # its declared producer
        ("t-operator", {}, True),  # redriven or replayed
        ("t-payment", {ORIGIN_HEADER: "t-order"}, True),  # our own retry of order's event
        ("t-inventory", {}, False),  # another service
        ("t-client", {}, False),  # a client
        (None, {}, False),  # nobody says who
        ("t-payment", {}, False),  # ourselves, but no retry of ours
        ("t-payment", {ORIGIN_HEADER: "t-client"}, False),  # a retry of a client's forgery
        ("t-inventory", {ORIGIN_HEADER: "t-order"}, False),  # a header that is not ours
        # The operator sends back what a runtime held: its first sender still counts.
        ("t-operator", {ORIGIN_HEADER: "t-order"}, True),
        ("t-operator", {ORIGIN_HEADER: "t-client"}, False),  # a forgery, replayed
        ("t-operator", {ORIGIN_HEADER: ""}, False),  # nobody said who, replayed
        ("t-payment", {ORIGIN_HEADER: "t-operator"}, True),  # our retry of an operator's
    ],
)
def test_only_the_declared_producer_moves_a_saga(
    user_id: str | None, headers: dict[str, Any], accepted: bool
) -> None:
    raw = Raw(user_id, headers)
    if accepted:
        PAYMENT.check(raw, created())  # type: ignore[arg-type]
    else:
        with pytest.raises(Untrusted, match=r"unexpected producer .* for OrderCreated"):
            PAYMENT.check(raw, created())  # type: ignore[arg-type]


def test_an_event_whose_envelope_names_another_producer_is_refused() -> None:
    with pytest.raises(Untrusted):
        PAYMENT.check(Raw("t-order"), created(producer="inventory"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user_id", "accepted"), [(None, True), ("t-client", True), ("t-order", False)]
)
def test_a_saga_starts_from_a_client_or_the_management_form(
    user_id: str | None, accepted: bool
) -> None:
    order = Trust(own="t-order", prefix="t-")
    command = decode(PlaceOrder, json.dumps(sample_order("ok")).encode())
    if accepted:
        order.check(Raw(user_id), command)  # type: ignore[arg-type]
    else:
        with pytest.raises(Untrusted, match="unexpected producer t-order for PlaceOrder"):
            order.check(Raw(user_id), command)  # type: ignore[arg-type]


def test_the_history_checks_every_message_it_records() -> None:
    history = Trust(own="t-saga_log", prefix="t-")
    forged = decode(SagaMessage, encode(created()))
    history.check(Raw("t-order"), forged)  # type: ignore[arg-type]
    with pytest.raises(Untrusted, match="unexpected producer t-client for OrderCreated"):
        history.check(Raw("t-client"), forged)  # type: ignore[arg-type]


def test_an_event_forged_onto_a_starting_key_is_not_that_command_and_gets_no_answer() -> None:
    forged = {**sample_order("ok"), "type": "OrderCreated", "producer": "order"}
    body = json.dumps(forged).encode()
    with pytest.raises(InvalidMessage, match="a OrderCreated is not a PlaceOrder") as error:
        decode(PlaceOrder, body)
    (order,) = [saga for saga in SAGAS if saga.name == "order"]
    # A malformed start is answered; another message typed onto its key is not.
    assert order.reject(body, error.value) is None
    invalid = json.dumps({**sample_order("ok"), "items": []}).encode()
    answer = order.reject(invalid, InvalidMessage("items: too short", ["items"]))
    assert answer is not None and answer.type == "OrderRejected"


def parked(producer: str, queue: str, saga_type: str = "order") -> Any:
    from contracts import MessageParked

    return MessageParked.caused_by(
        "m",
        producer=producer,
        saga_id="4000",
        saga_type=saga_type,
        queue=queue,
        step=None,
        parked_type="OrderCreated",
        parked_message_id="m",
        error="e",
        attempts=3,
    )


@pytest.mark.parametrize(
    ("user_id", "message", "accepted"),
    [
        ("t-payment", parked("payment", "payment.debit_payment"), True),
        ("t-accounting", parked("accounting", "accounting.credit_account"), False),  # not a
        # participant of the order saga
        ("t-payment", parked("payment", "inventory.reserve_inventory"), False),  # not its queue
        ("t-inventory", parked("payment", "payment.debit_payment"), False),  # not its name
    ],
)
def test_only_a_participant_announces_what_it_parked_of_its_own_queues(
    user_id: str, message: Any, accepted: bool
) -> None:
    history = Trust(own="t-saga_log", prefix="t-")
    # As typed, and as the history reads it: any saga message, its queue in the payload
    # (the history once dead-lettered every MessageParked it was sent).
    for form in (message, decode(SagaMessage, encode(message))):
        if accepted:
            history.check(Raw(user_id), form)  # type: ignore[arg-type]
        else:
            with pytest.raises(Untrusted):
                history.check(Raw(user_id), form)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user_id", "redriven"),
    [
        ("t-operator", True),  # the operator's copy
        ("t-payment", True),  # our retry of it (the runtime keeps marks only from an operator)
        ("t-client", False),  # anyone else's marks count for nothing
    ],
)
def test_only_an_operators_redrive_runs_a_message_again(user_id: str, redriven: bool) -> None:
    from saga_log.runtime.delivery import claim_key

    headers = {"saga-redriven-from": "payment.refund_payment.parked", "saga-redriven-at": "t1"}
    key = claim_key("m1", Raw(user_id, headers), PAYMENT)  # type: ignore[arg-type]
    assert key == ("m1|redriven:t1" if redriven else "m1")


def test_the_history_trusts_no_envelope_a_client_wrote_on_a_command() -> None:
    order = sample_order("ok")
    forged = {**order, "message_id": "a-real-events-id", "producer": "payment"}
    for body in (forged, {**forged, "type": "PlaceOrder"}):
        recorded = decode(SagaMessage, json.dumps(body).encode())
        assert recorded.inbox_key() == f"PlaceOrder:{order['order_id']}"
        assert (recorded.message_id, recorded.producer) == (None, "client")


def test_the_history_keeps_only_headers_jsonb_can_hold() -> None:
    from saga_log.recorder.handlers import _jsonable_headers

    nested: dict[str, Any] = {}
    for _ in range(5000):
        nested = {"x": nested}
    kept = _jsonable_headers(
        {"nul": "a\x00b", "surrogate": "\ud800", "raw": b"\xff", "deep": nested, "n": 3}
    )
    assert kept == {
        "nul": "a\ufffdb",
        "surrogate": "\ufffd",
        "raw": "\ufffd",
        "deep": "<dict>",
        "n": 3,
    }
    json.dumps(kept).encode("utf-8")  # storable: no lone surrogate left
