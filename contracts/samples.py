"""The samples' inputs and what each scenario ends in (SAGA_FAULTS=seed): the order
sample's seven orders, keyed by the order_id prefix that selects the scenario ("ok" has no
fault), and the fare lab's fare, whose customerId suffix selects the scenario."""

from __future__ import annotations

import uuid
from typing import Any

_SAMPLES: dict[str, tuple[str, str, str, float, float]] = {
    # scenario: (order_id, customer_id, item_id, qty, unit_price)
    "1": ("1ae4501d-ed92-4b27-bf0e-fd978ed45127", "0d52eeef-52a1-4e6e-a5b1-d0515121306c", "929", 3.0, 9.99),
    "11": ("11328abd-368d-43fd-bd4f-db15b5b63951", "8d04ea6f-c6b2-4422-8550-839a16f01feb", "567", 1.0, 199.99),
    "2": ("20b0b599-441b-45c3-910e-ad63fe992c43", "151ae48f-79b0-47b6-a8a6-bd8dbcf9af9a", "423", 10.0, 34.99),
    "22": ("222f741b-0292-4f93-a2f7-503f92486955", "227dd3c9-58ab-4f0d-958a-5ead5858fba8", "655", 2.0, 99.99),
    "3": ("3a7dc768-6f32-495d-a140-3d330c246f50", "aa226136-bd50-4718-8e87-6962c8d34779", "765", 1.0, 6.50),
    "33": ("33a49007-a815-4079-9b9b-e30ae7eca11f", "39081ebf-16a9-4e2c-a88b-d1a4c76956fd", "567", 1.0, 199.99),
    "ok": ("47063fe3-56d9-4c51-b91f-71929834ce03", "3b27c7c4-7a3e-4635-aef9-6b5c74de6465", "988", 100.0, 0.99),
}  # fmt: skip

SCENARIOS: tuple[str, ...] = tuple(_SAMPLES)

#: What each scenario ends in (SEED_BEHAVIOUR.md): terminal event, order_status, the
#: payment types and the inventory types written, and the error a failed compensation names.
EXPECTED: dict[str, dict[str, Any]] = {
    "ok": {"terminal": "OrderSucceeded", "order_status": "New", "payments": ["Debit"], "inventory": ["Reserve"], "compensation_error": None},
    "1": {"terminal": "OrderFailed", "order_status": "Pending", "payments": [], "inventory": [], "compensation_error": None},
    "11": {"terminal": "OrderFailed", "order_status": "Pending", "payments": [], "inventory": [], "compensation_error": "ErrUpdateOrderStatus"},
    "2": {"terminal": "OrderFailed", "order_status": "Pending", "payments": ["Credit", "Debit"], "inventory": [], "compensation_error": None},
    "22": {"terminal": "OrderFailed", "order_status": "New", "payments": ["Credit", "Debit"], "inventory": [], "compensation_error": "ErrProcessRefund"},
    "3": {"terminal": "OrderFailed", "order_status": "Pending", "payments": ["Credit", "Debit"], "inventory": ["Release", "Reserve"], "compensation_error": None},
    "33": {"terminal": "OrderFailed", "order_status": "New", "payments": ["Debit"], "inventory": ["Release", "Reserve"], "compensation_error": "ErrReleaseInventory"},
}  # fmt: skip


def fresh_order_id(scenario: str) -> str:
    """A new order_id that selects `scenario`: its prefix, then a "0" so that "2" cannot
    turn into "22" by chance, then random hex in the UUID's shape."""
    if scenario not in _SAMPLES:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    prefix = ("4" if scenario == "ok" else scenario) + "0"
    random = str(uuid.uuid4())
    return prefix + random[len(prefix) :]


def sample_order(scenario: str, *, order_id: str | None = None) -> dict[str, Any]:
    """The sample's order JSON for `scenario` (with the sample's own order_id by default)."""
    if scenario not in _SAMPLES:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    sample_id, customer_id, item_id, qty, unit_price = _SAMPLES[scenario]
    return {
        "order_id": order_id or sample_id,
        "order_date": "2018-10-19T10:50:16+08:00",
        "customer_id": customer_id,
        "items": [
            {"item_id": item_id, "qty": qty, "description": "Cart item 1", "unit_price": unit_price}
        ],
    }


# --- the fare saga (FARE_BEHAVIOUR.md) ---------------------------------------------------

#: The lab's fare, exactly as its users published it.
LAB_FARE: dict[str, str] = {
    "customerId": "3",
    "fareId": "wr_563",
    "fareAmount": "$20.00",
    "cc": "2424 2424 2424 2424",
    "expiryDate": "12/22",
    "cvv": "111",
}

FARE_SCENARIOS: tuple[str, ...] = ("ok", "fail_auth", "fail_charge", "fail_credit", "fail_refund")

#: What each fare scenario ends in: terminal event, the fare's status (None: not set), the
#: charge's status in the payment database (None: no row), whether the account was
#: credited, whether the charge was refunded, the error the failure notification names,
#: and the saga's status in the history.
FARE_EXPECTED: dict[str, dict[str, Any]] = {
    "ok": {"terminal": "FareProcessingSucceeded", "fare_status": "completed", "charge": "captured", "credited": True, "refunded": False, "error": None, "history": "succeeded"},
    "fail_auth": {"terminal": "FareProcessingFailed", "fare_status": "failed", "charge": "declined", "credited": False, "refunded": False, "error": "PaymentAuthException", "history": "failed"},
    "fail_charge": {"terminal": "FareProcessingFailed", "fare_status": "failed", "charge": "voided", "credited": False, "refunded": False, "error": "PaymentChargeException", "history": "failed"},
    "fail_credit": {"terminal": "FareProcessingFailed", "fare_status": "failed", "charge": "refunded", "credited": False, "refunded": True, "error": "AccountCreditException", "history": "failed"},
    "fail_refund": {"terminal": "FareProcessingFailed", "fare_status": None, "charge": "captured", "credited": False, "refunded": False, "error": "RefundException", "history": "needs_attention"},
}  # fmt: skip


def fresh_fare_id() -> str:
    """A new fareId in the lab's shape (`wr_` and some hex)."""
    return f"wr_{uuid.uuid4().hex[:12]}"


def sample_fare(scenario: str = "ok", *, fare_id: str | None = None) -> dict[str, str]:
    """The lab's fare JSON for `scenario`: its customerId ends with the scenario's suffix."""
    if scenario not in FARE_SCENARIOS:
        raise ValueError(
            f"unknown fare scenario {scenario!r}; choose one of {', '.join(FARE_SCENARIOS)}"
        )
    customer = LAB_FARE["customerId"] + ("" if scenario == "ok" else f"_{scenario}")
    return {**LAB_FARE, "customerId": customer, "fareId": fare_id or LAB_FARE["fareId"]}
