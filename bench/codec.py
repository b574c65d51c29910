"""What reading a message body costs a consumer: `contracts.decode` (pydantic's JSON
parser for a plain body) against the careful path every body took before.

    python -m bench.codec

For one message of each hop of the order saga, and for the history's generic reader
(`SagaMessage`) of the same bodies, it prints microseconds per decode each way, best of
five rounds. Pure CPU, no broker or database: the figure a delivery saves.
"""

from __future__ import annotations

import json
import timeit
import uuid
from decimal import Decimal

from pydantic import BaseModel

from bench.host import CpuTicks, steal_note
from contracts import OrderCreated, PaymentDebited, encode, transaction_id
from contracts.codec import _decode_carefully, _plainly_readable, decode
from contracts.recorded import SagaMessage
from contracts.sagas.order import InventoryReserved, OrderItem, OrderSucceeded, PlaceOrder
from contracts.samples import fresh_order_id


def bodies() -> list[tuple[type[BaseModel], bytes]]:
    order_id = fresh_order_id("ok")
    items = [OrderItem(item_id="i-1", qty=Decimal(1), unit_price=Decimal("34.99"))]
    # As a client's code publishes it: numbers as strings (the sample's floats go the
    # careful path, which keeps them exact).
    order = {
        "order_id": order_id,
        "order_date": "2018-10-19T10:50:16+08:00",
        "customer_id": "c-1",
        "items": [{"item_id": "i-1", "qty": "1", "unit_price": "34.99"}],
    }
    cause = str(uuid.uuid4())
    common = {"producer": "order", "order_id": order_id}
    events: list[BaseModel] = [
        OrderCreated.caused_by(
            cause, **common, order_date="2018-10-19T10:50:16+08:00", customer_id="c-1", items=items
        ),
        PaymentDebited.caused_by(
            cause,
            producer="payment",
            order_id=order_id,
            transaction_id=transaction_id(order_id, "Debit"),
            amount=Decimal("34.99"),
            items=items,
        ),
        InventoryReserved.caused_by(
            cause,
            producer="inventory",
            order_id=order_id,
            transaction_id=transaction_id(order_id, "Reserve"),
            items=["i-1"],
        ),
        OrderSucceeded.caused_by(cause, **common, order_status="New"),
    ]
    found: list[tuple[type[BaseModel], bytes]] = [(PlaceOrder, json.dumps(order).encode())]
    found += [(type(event), encode(event)) for event in events]  # type: ignore[arg-type]
    return found


def per_call_us(call: object, number: int = 2000) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    ticks = CpuTicks.now()
    print(f"{'message':<20} {'reader':<18} {'careful µs':>11} {'decode µs':>10}  path")
    for model, body in bodies():
        for reader in (model, SagaMessage):
            careful = per_call_us(lambda r=reader, b=body: _decode_carefully(r, b))
            now = per_call_us(lambda r=reader, b=body: decode(r, b))
            path = "fast" if _plainly_readable(reader, body) else "careful"
            print(
                f"{model.__name__:<20} {reader.__name__:<18} {careful:>11.1f} {now:>10.1f}  {path}"
            )
    print(steal_note(CpuTicks.now().steal_percent_since(ticks)))


if __name__ == "__main__":
    main()
