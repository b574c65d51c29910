"""The accounting service's rules: CreditCustomerAccount, and reversing a credit whose fare
was cancelled. Pure: no I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from contracts import (
    CustomerAccountCredited,
    CustomerAccountCreditFailed,
    CustomerAccountCreditReversed,
    FareCharged,
    Faults,
    derived_id,
)

SERVICE = "accounting"
CREDIT_CUSTOMER_ACCOUNT = "CreditCustomerAccount"


@dataclass(frozen=True)
class Credit:
    """A row of `account_credits`."""

    credit_id: uuid.UUID
    fare_id: str
    customer_id: str
    charge_id: str
    amount: Decimal


def credit_account(
    charge: FareCharged, *, causation_id: str, faults: Faults
) -> tuple[Credit | None, CustomerAccountCredited | CustomerAccountCreditFailed]:
    """CreditCustomerAccount: credit the customer's account with the charge, unless the
    step fails (AccountCreditException: nothing is credited, the charge gets refunded)."""
    error = faults.error(CREDIT_CUSTOMER_ACCOUNT, charge.customerId)
    if error is not None:
        return None, CustomerAccountCreditFailed.caused_by(
            causation_id,
            producer=SERVICE,
            fareId=charge.fareId,
            customerId=charge.customerId,
            chargeId=charge.chargeId,
            error=error,
        )
    credit = Credit(
        credit_id=derived_id(charge.fareId, "AccountCredit"),
        fare_id=charge.fareId,
        customer_id=charge.customerId,
        charge_id=charge.chargeId,
        amount=charge.fareAmount,
    )
    return credit, CustomerAccountCredited.caused_by(
        causation_id,
        producer=SERVICE,
        fareId=charge.fareId,
        customerId=charge.customerId,
        chargeToken=charge.chargeToken,
        chargeId=charge.chargeId,
        amount=charge.fareAmount,
    )


def credit_reversed(
    credit: Credit, *, cause: str, causation_id: str
) -> CustomerAccountCreditReversed:
    """The fare was cancelled after its credit: the credit is reversed."""
    return CustomerAccountCreditReversed.caused_by(
        causation_id,
        producer=SERVICE,
        fareId=credit.fare_id,
        customerId=credit.customer_id,
        amount=credit.amount,
        cause=cause,
    )
