from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from contracts import (
    CONSUMERS,
    SAGAS,
    InvalidMessage,
    OrderCreated,
    PaymentDebited,
    PlaceOrder,
    decode,
    encode,
    transaction_id,
)
from contracts.samples import SCENARIOS, fresh_order_id, sample_order


def place_order(scenario: str = "ok") -> PlaceOrder:
    return decode(PlaceOrder, json.dumps(sample_order(scenario)).encode())


def test_sample_order_json_decodes_with_exact_decimals() -> None:
    order = place_order("2")
    assert order.items[0].qty == Decimal("10.0")
    assert order.items[0].unit_price == Decimal("34.99")
    assert order.items[0].qty * order.items[0].unit_price == Decimal("349.90")


def test_hand_typed_order_with_extra_fields_and_numeric_item_id_is_accepted() -> None:
    body = sample_order("ok")
    body["items"][0]["item_id"] = 988
    body["note"] = "typed in the management UI"
    order = decode(PlaceOrder, json.dumps(body).encode())
    assert order.items[0].item_id == "988"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({"order_id": "x", "items": []}).encode(), "order_date: Field required"),
        (
            json.dumps({**sample_order("ok"), "items": []}).encode(),
            "items: List should have at least 1 item",
        ),
        (
            json.dumps(
                {**sample_order("ok"), "items": [{**sample_order("ok")["items"][0], "qty": -1}]}
            ).encode(),
            "items.0.qty: Input should be greater than 0",
        ),
    ],
)
def test_invalid_order_names_what_is_wrong(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as error:
        decode(PlaceOrder, body)
    assert reason in error.value.reason


def test_event_envelope_is_derived_from_its_cause() -> None:
    order = place_order()
    fields = dict(
        producer="order",
        order_id=order.order_id,
        order_date=order.order_date,
        customer_id=order.customer_id,
        items=order.items,
    )
    first = OrderCreated.caused_by("cause-1", **fields)
    again = OrderCreated.caused_by("cause-1", **fields)
    other = OrderCreated.caused_by("cause-2", **fields)
    assert first.message_id == again.message_id != other.message_id
    assert first.correlation_id == order.order_id
    assert first.causation_id == "cause-1"
    assert first.type == "OrderCreated"
    assert first.schema_version == 1


def test_event_survives_the_wire_with_money_exact() -> None:
    event = PaymentDebited.caused_by(
        "c",
        producer="payment",
        order_id="o-1",
        transaction_id=transaction_id("o-1", "Debit"),
        amount=Decimal("349.90"),
        items=place_order().items,
    )
    body = encode(event)
    assert json.loads(body)["amount"] == "349.90"
    assert decode(PaymentDebited, body) == event


def test_published_events_forbid_unknown_fields_but_consumers_ignore_them() -> None:
    with pytest.raises(ValueError):
        OrderCreated.caused_by("c", producer="order", order_id="o", surprise=1)
    event = PaymentDebited.caused_by(
        "c",
        producer="payment",
        order_id="o-1",
        transaction_id=uuid.uuid4(),
        amount=Decimal("1.00"),
        items=[],
    )
    newer = {**json.loads(encode(event)), "added_in_v2": True}
    assert decode(PaymentDebited, json.dumps(newer).encode()) == event


def test_transaction_ids_are_the_samples_uuid5() -> None:
    assert transaction_id("o-1", "Debit") == uuid.uuid5(
        uuid.UUID("8b03bc51-6db8-4d24-9e5b-0f8245f5f42e"), "o-1|Debit"
    )


def test_routing_keys_and_queue_names_are_unique() -> None:
    keys = [message.routing_key for saga in SAGAS for message in saga.messages()]
    assert len(keys) == len(set(keys))
    queues = [consumer.queue for consumer in CONSUMERS]
    assert len(queues) == len(set(queues))
    assert all(queue.count(".") == 1 for queue in queues)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fresh_order_ids_select_exactly_their_scenario(scenario: str) -> None:
    order_id = fresh_order_id(scenario)
    prefix = "4" if scenario == "ok" else scenario
    assert order_id.startswith(prefix)
    assert not order_id.startswith(prefix + prefix[-1])
    assert len(order_id) == 36
