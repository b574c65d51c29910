"""The payment service's rules for orders: ProcessPayment (a Debit) and its compensation
ProcessRefund (a Credit copying the Debit, amount negated). Pure: no I/O. (Fares:
services.payment.fares.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from contracts import (
    Event,
    Faults,
    OrderCreated,
    OrderItem,
    PaymentDebited,
    PaymentDebitFailed,
    PaymentRefunded,
    PaymentRefundFailed,
    transaction_id,
)

#: A cancellation's compensation never fails on purpose: it is not one of the sample's steps.
NO_FAULTS = Faults()

SERVICE = "payment"
PROCESS_PAYMENT = "ProcessPayment"
PROCESS_REFUND = "ProcessRefund"
MERCHANT_ID = "merch1"
DEBIT = "Debit"
CREDIT = "Credit"
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Payment:
    """A row of the sample's `payments` table."""

    transaction_id: uuid.UUID
    order_id: str
    merchant_id: str
    payment_amount: Decimal
    payment_type: str
    transaction_date: datetime


def order_total(items: Iterable[OrderItem]) -> Decimal:
    """Sum of qty x unit_price in exact decimals, to the cent (10 x 34.99 is 349.90)."""
    total = sum((item.qty * item.unit_price for item in items), Decimal(0))
    return total.quantize(CENT, rounding=ROUND_HALF_EVEN)


def debit(
    order: OrderCreated, *, causation_id: str, now: datetime, faults: Faults
) -> tuple[Payment, PaymentDebited | PaymentDebitFailed]:
    """ProcessPayment: write the Debit; fail afterwards if a fault says so."""
    payment = Payment(
        transaction_id=transaction_id(order.order_id, DEBIT),
        order_id=order.order_id,
        merchant_id=MERCHANT_ID,
        payment_amount=order_total(order.items),
        payment_type=DEBIT,
        transaction_date=now,
    )
    event: PaymentDebited | PaymentDebitFailed
    error = faults.error(PROCESS_PAYMENT, order.order_id)
    if error is not None:
        event = PaymentDebitFailed.caused_by(
            causation_id,
            producer=SERVICE,
            order_id=order.order_id,
            transaction_id=payment.transaction_id,
            amount=payment.payment_amount,
            error=error,
        )
    else:
        event = PaymentDebited.caused_by(
            causation_id,
            producer=SERVICE,
            order_id=order.order_id,
            transaction_id=payment.transaction_id,
            amount=payment.payment_amount,
            items=order.items,
        )
    return payment, event


def refund(
    stored_debit: Payment | None,
    *,
    order_id: str,
    cause: str,
    causation_id: str,
    now: datetime,
    faults: Faults,
) -> tuple[Payment | None, Event]:
    """ProcessRefund: write a Credit that copies the stored Debit with the amount negated;
    fail afterwards if a fault says so. With no Debit there is nothing to refund."""
    if stored_debit is None:
        return None, PaymentRefunded.caused_by(
            causation_id,
            producer=SERVICE,
            order_id=order_id,
            transaction_id=None,
            amount=Decimal("0.00"),
            cause=cause,
        )
    credit = replace(
        stored_debit,
        transaction_id=transaction_id(order_id, CREDIT),
        payment_amount=-stored_debit.payment_amount,
        payment_type=CREDIT,
        transaction_date=now,
    )
    error = faults.error(PROCESS_REFUND, order_id)
    if error is not None:
        return credit, PaymentRefundFailed.caused_by(
            causation_id,
            producer=SERVICE,
            order_id=order_id,
            step=PROCESS_REFUND,
            error=error,
            cause=cause,
            transaction_id=str(credit.transaction_id),
        )
    return credit, PaymentRefunded.caused_by(
        causation_id,
        producer=SERVICE,
        order_id=order_id,
        transaction_id=credit.transaction_id,
        amount=stored_debit.payment_amount,
        cause=cause,
    )
