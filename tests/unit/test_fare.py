"""The fare saga's rules, pure: what each service writes and answers under the lab's demo
faults; the card's sealing and masking; how the history reads a message of any saga."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from contracts import (
    CipherError,
    FareCharged,
    FareChargeFailed,
    FareRefunded,
    FareRefundFailed,
    FieldCipher,
    InvalidMessage,
    SagaMessage,
    SubmitFare,
    decode,
    demo_faults,
    encode,
)
from contracts.samples import LAB_FARE, sample_fare, sample_order
from contracts.secrets import new_key_setting
from services.accounting import domain as accounting
from services.fare import domain as fare
from services.payment import fares as payment

SEED = demo_faults("seed")
CIPHER = FieldCipher.from_setting(new_key_setting())


def submitted(scenario: str = "ok", **changes: Any) -> SubmitFare:
    return decode(SubmitFare, json.dumps({**sample_fare(scenario), **changes}).encode())


def registered(scenario: str = "ok") -> Any:
    command = submitted(scenario)
    sealed = {
        name: CIPHER.seal(getattr(command, name), context=f"{command.fareId}|{name}")
        for name in fare.CARD_FIELDS
    }
    return fare.register_fare(command, sealed=sealed, card_number=command.cc, causation_id="c")


def card() -> payment.Card:
    return payment.Card(LAB_FARE["cc"], LAB_FARE["expiryDate"], LAB_FARE["cvv"])


def test_the_labs_fare_json_reads_with_an_exact_amount() -> None:
    command = submitted()
    assert command.fareAmount == Decimal("20.00")
    assert command.saga_id == "wr_563"
    assert command.inbox_key() == "SubmitFare:wr_563"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"fareAmount": "$twenty"}, "fareAmount"),
        ({"fareId": None}, "fareId"),
        ({"customerId": ""}, "customerId"),
    ],
)
def test_an_invalid_fare_names_its_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMessage) as error:
        submitted(**changes)
    assert error.value.fields == [field]


def test_register_keeps_the_last_four_digits_and_seals_the_card_for_the_charge() -> None:
    row, event = registered()
    assert row.card_last4 == "2424" and row.fare_status is None
    for name in fare.CARD_FIELDS:
        assert LAB_FARE[name] not in encode(event).decode()
        assert CIPHER.open(getattr(event, name), context=f"wr_563|{name}") == LAB_FARE[name]


def test_a_sealed_field_does_not_open_for_another_fare_or_field_or_key() -> None:
    sealed = CIPHER.seal("2424 2424 2424 2424", context="wr_1|cc")
    with pytest.raises(CipherError):
        CIPHER.open(sealed, context="wr_2|cc")
    with pytest.raises(CipherError):
        CIPHER.open(sealed, context="wr_1|cvv")
    with pytest.raises(CipherError):
        FieldCipher.from_setting(new_key_setting()).open(sealed, context="wr_1|cc")
    with pytest.raises(ValueError, match="SAGA_FIELD_KEYS is empty"):
        FieldCipher.from_setting("")


def test_a_rotated_key_still_opens_what_the_old_one_sealed() -> None:
    old = new_key_setting("k1")
    sealed = FieldCipher.from_setting(old).seal("111", context="wr_1|cvv")
    rotated = FieldCipher.from_setting(f"{new_key_setting('k2')},{old}")
    assert rotated.open(sealed, context="wr_1|cvv") == "111"
    assert rotated.seal("111", context="wr_1|cvv").startswith("sealed:v1:k2:")


def test_charge_authorises_then_captures_with_ids_derived_from_the_fare() -> None:
    _, event = registered()
    row, outcome = payment.charge(event, card(), causation_id="c", faults=SEED)
    assert isinstance(outcome, FareCharged)
    assert row.status == "captured" and row.amount == Decimal("20.00")
    assert row.charge_id == payment.provider_id("ch_", "wr_563", "charge")
    assert len(row.charge_id) == 28 and len(row.charge_token or "") == 29
    again, _ = payment.charge(event, card(), causation_id="c", faults=SEED)
    assert again == row


@pytest.mark.parametrize(
    ("scenario", "status", "error"),
    [
        ("fail_auth", "declined", "PaymentAuthException"),
        ("fail_charge", "voided", "PaymentChargeException"),
    ],
)
def test_charge_faults_decline_or_void(scenario: str, status: str, error: str) -> None:
    _, event = registered(scenario)
    row, outcome = payment.charge(event, card(), causation_id="c", faults=SEED)
    assert isinstance(outcome, FareChargeFailed)
    assert (row.status, outcome.error, row.charge_id) == (status, error, None)
    assert (row.charge_token is not None) == (status == "voided")


def test_a_card_the_provider_cannot_use_is_declined_saying_why() -> None:
    _, event = registered()
    _, outcome = payment.charge(
        event, payment.Card("1234", "13/99", "1"), causation_id="c", faults=SEED
    )
    assert isinstance(outcome, FareChargeFailed)
    assert (outcome.error, outcome.reason) == (
        "PaymentAuthException",
        "card number must have 12 to 19 digits",
    )


def test_refund_undoes_only_a_captured_charge_and_only_once() -> None:
    _, event = registered()
    captured, _ = payment.charge(event, card(), causation_id="c", faults=SEED)
    refunded, outcome = payment.refund(
        captured, fare_id="wr_563", customer_id="3", cause="x", causation_id="c", faults=SEED
    )
    assert refunded is not None and refunded.status == "refunded"
    assert isinstance(outcome, FareRefunded) and outcome.refundId == refunded.refund_id
    again, _ = payment.refund(
        refunded, fare_id="wr_563", customer_id="3", cause="x", causation_id="d", faults=SEED
    )
    assert again is None
    nothing, _ = payment.refund(
        None, fare_id="wr_563", customer_id="3", cause="x", causation_id="c", faults=SEED
    )
    assert nothing is None


def test_refund_with_fail_refund_refunds_nothing_and_reports_it() -> None:
    _, event = registered("fail_refund")
    captured, _ = payment.charge(event, card(), causation_id="c", faults=demo_faults("off"))
    refunded, outcome = payment.refund(
        captured,
        fare_id=event.fareId,
        customer_id=event.customerId,
        cause="AccountCreditException",
        causation_id="c",
        faults=SEED,
    )
    assert refunded is None
    assert isinstance(outcome, FareRefundFailed)
    assert (outcome.step, outcome.error) == ("RefundFare", "RefundException")


@pytest.mark.parametrize(
    ("scenario", "fails"), [("ok", False), ("fail_credit", True), ("fail_refund", True)]
)
def test_credit_fails_for_fail_credit_and_fail_refund(scenario: str, fails: bool) -> None:
    _, event = registered(scenario)
    _, charged = payment.charge(event, card(), causation_id="c", faults=demo_faults("off"))
    assert isinstance(charged, FareCharged)
    credit, outcome = accounting.credit_account(charged, causation_id="c", faults=SEED)
    assert (credit is None) == fails
    assert outcome.type == ("CustomerAccountCreditFailed" if fails else "CustomerAccountCredited")


def test_the_history_reads_a_fare_masked_and_an_order_as_json() -> None:
    read = decode(SagaMessage, json.dumps(LAB_FARE).encode())
    assert (read.type, read.saga_type, read.saga_id) == ("SubmitFare", "fare", "wr_563")
    assert read.payload["cc"] == read.payload["cvv"] == read.payload["expiryDate"] == "***"
    order = decode(SagaMessage, json.dumps(sample_order("2")).encode())
    assert (order.type, order.saga_type) == ("PlaceOrder", "order")
    assert json.loads(json.dumps(order.payload))["items"][0]["unit_price"] == "34.99"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"type": "Teleported", "correlation_id": "x"}, "unknown message type 'Teleported'"),
        ({"hello": "world"}, "not a message of any saga"),
        ({"type": "MessageParked", "correlation_id": "x", "saga_type": "?"}, "unknown saga type"),
    ],
)
def test_the_history_refuses_what_no_saga_declares(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        decode(SagaMessage, json.dumps(body).encode())


def test_no_repr_shows_the_card() -> None:
    shown = repr(submitted()) + repr(card()) + repr(registered()[1])
    for secret in (LAB_FARE["cc"], LAB_FARE["cvv"], LAB_FARE["expiryDate"]):
        assert secret not in shown


def test_a_body_that_is_not_json_still_has_its_card_masked() -> None:
    from contracts import SECRET_FIELDS
    from contracts.secrets import masked_body

    typed = b'{"fareId": "wr_1", "cc": "2424 2424 2424 2424", "cvv": 111, "expiryDate": "12/22",}'
    shown = masked_body(typed, SECRET_FIELDS)
    assert b"2424" not in shown and b"111" not in shown and b"12/22" not in shown
    assert b'"fareId": "wr_1"' in shown


def test_a_retry_copy_holds_the_card_sealed_and_the_fare_service_reads_it_back() -> None:
    from contracts import consumer
    from saga_log.runtime import Protection

    protect = Protection.of(consumer("fare", "register_fare"), CIPHER)
    copy = protect(json.dumps(sample_fare()).encode())
    for secret in (LAB_FARE["cc"], LAB_FARE["cvv"], LAB_FARE["expiryDate"]):
        assert secret.encode() not in copy
    again = decode(SubmitFare, copy)
    assert CIPHER.open_field(again.cc or "", saga_id=again.fareId, name="cc") == LAB_FARE["cc"]
    assert protect(copy) == copy  # sealed once, not twice
    history = Protection.of(consumer("saga_log", "record"), None)
    assert json.loads(history(json.dumps(sample_fare()).encode()))["cvv"] == "***"
