"""The payment service's rules for fares: ChargeFare (authorise the card, then capture the
fare; void the authorisation if the capture fails) and its compensation RefundFare. Pure:
no I/O. The payment provider is simulated: its ids (`tok_`, `ch_`, `re_` and 25
characters, as the lab's) are derived from the fare, so a retried step overwrites itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from decimal import Decimal

from contracts import (
    FareCharged,
    FareChargeFailed,
    FareRefunded,
    FareRefundFailed,
    FareRegistered,
    Faults,
    derived_id,
)
from services.payment.domain import SERVICE

CHARGE_FARE = "ChargeFare"
REFUND_FARE = "RefundFare"
AUTH_ERROR = "PaymentAuthException"

DECLINED = "declined"
VOIDED = "voided"
CAPTURED = "captured"
REFUNDED = "refunded"


@dataclass(frozen=True)
class Card:
    """A card as the charge sees it, opened from its sealed fields (never stored, and
    never in a repr)."""

    number: str = field(repr=False)
    expiry: str = field(repr=False)
    cvv: str = field(repr=False)

    def problem(self) -> str | None:
        """Why the provider would decline this card, or None."""
        digits = self.number.replace(" ", "").replace("-", "")
        if not re.fullmatch(r"\d{12,19}", digits):
            return "card number must have 12 to 19 digits"
        if not re.fullmatch(r"(0[1-9]|1[0-2])/\d{2}", self.expiry.strip()):
            return "expiry must be MM/YY"
        if not re.fullmatch(r"\d{3,4}", self.cvv.strip()):
            return "CVV must have 3 or 4 digits"
        return None


@dataclass(frozen=True)
class FareCharge:
    """A row of `fare_charges`: what the provider did with a fare's card."""

    fare_id: str
    customer_id: str
    amount: Decimal
    charge_token: str | None
    charge_id: str | None
    refund_id: str | None
    status: str


def provider_id(prefix: str, fare_id: str, kind: str) -> str:
    """The provider's id of `kind` for a fare: `prefix` and 25 characters from the fare."""
    return prefix + derived_id(fare_id, kind).hex[:25]


def charge(
    fare: FareRegistered, card: Card | None, *, causation_id: str, faults: Faults
) -> tuple[FareCharge, FareCharged | FareChargeFailed]:
    """ChargeFare: authorise, then capture. A declined card or an authorisation fault
    writes a declined charge; a capture fault voids the authorisation."""
    error = faults.error(CHARGE_FARE, fare.customerId)
    row = FareCharge(
        fare_id=fare.fareId,
        customer_id=fare.customerId,
        amount=fare.fareAmount,
        charge_token=None,
        charge_id=None,
        refund_id=None,
        status=DECLINED,
    )
    declined = "no card" if card is None else card.problem()
    if declined is not None or error == AUTH_ERROR:
        return row, _failed(fare, AUTH_ERROR, None, causation_id, reason=declined)
    token = provider_id("tok_", fare.fareId, "authorisation")
    if error is not None:
        return replace(row, charge_token=token, status=VOIDED), _failed(
            fare, error, token, causation_id
        )
    captured = replace(
        row,
        charge_token=token,
        charge_id=provider_id("ch_", fare.fareId, "charge"),
        status=CAPTURED,
    )
    return captured, FareCharged.caused_by(
        causation_id,
        producer=SERVICE,
        fareId=fare.fareId,
        customerId=fare.customerId,
        fareAmount=fare.fareAmount,
        chargeToken=token,
        chargeId=captured.charge_id,
    )


def _failed(
    fare: FareRegistered,
    error: str,
    token: str | None,
    causation_id: str,
    *,
    reason: str | None = None,
) -> FareChargeFailed:
    return FareChargeFailed.caused_by(
        causation_id,
        producer=SERVICE,
        fareId=fare.fareId,
        customerId=fare.customerId,
        error=error,
        reason=reason,
        chargeToken=token,
    )


def refund(
    stored: FareCharge | None,
    *,
    fare_id: str,
    customer_id: str | None,
    cause: str,
    causation_id: str,
    faults: Faults,
) -> tuple[FareCharge | None, FareRefunded | FareRefundFailed]:
    """RefundFare: refund the captured charge its own database shows, once. Returns the
    charge as refunded now (None if nothing was refunded now) and the outcome."""
    if stored is None or stored.status != CAPTURED:
        # Nothing captured (declined, voided), or refunded already: nothing to undo now.
        refund_id = stored.refund_id if stored is not None else None
        charge_id = stored.charge_id if stored is not None else None
        return None, _refunded(fare_id, charge_id, refund_id, cause, causation_id)
    error = faults.error(REFUND_FARE, customer_id) if customer_id else None
    if error is not None:
        return None, FareRefundFailed.caused_by(
            causation_id,
            producer=SERVICE,
            fareId=fare_id,
            step=REFUND_FARE,
            error=error,
            cause=cause,
            transaction_id=stored.charge_id,
        )
    refunded = replace(stored, refund_id=provider_id("re_", fare_id, "refund"), status=REFUNDED)
    return refunded, _refunded(fare_id, stored.charge_id, refunded.refund_id, cause, causation_id)


def _refunded(
    fare_id: str, charge_id: str | None, refund_id: str | None, cause: str, causation_id: str
) -> FareRefunded:
    return FareRefunded.caused_by(
        causation_id,
        producer=SERVICE,
        fareId=fare_id,
        chargeId=charge_id,
        refundId=refund_id,
        cause=cause,
    )
