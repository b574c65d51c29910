"""A hostile client, and a service gone rogue, against the real broker and databases.

Every attack the trust issue lists is made while valid sagas of both types run: bodies no
parser should chew on, values no column holds, forged events of every type (as the client
through the management UI's form, and as the wrong service), headers that would steer the
runtime, messages planted in the holding queues. Each ends in exactly one place: refused by
the broker, or dead-lettered with its reason (and answered where a client waits), never
left unacknowledged, never looping; and no database row changes but the valid sagas'.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aio_pika
import aiormq
import pytest

from contracts import MESSAGES_BY_TYPE, encode
from contracts.sagas import FARE, ORDER, SAGA_OF_TYPE, SAGAS, producer_of
from contracts.samples import fresh_fare_id, fresh_order_id, sample_fare, sample_order
from contracts.topology import CONSUMERS, HISTORY, NOTIFICATION_QUEUES, published_by
from saga_log.ops.client import SagaWatcher
from saga_log.ops.operator import DEAD, list_held
from tests.support import Stack, eventually, fetch, management_publish, operator_cli
from tools.broker import Management

STARTING = {saga.starts_with.type_name() for saga in SAGAS}
HISTORY_DLQ = HISTORY.dead_letter_queue


def saga_of(kind: str) -> str:
    return SAGA_OF_TYPE[kind].name


def specimen(kind: str, saga_id: str) -> dict[str, Any]:
    """A valid `kind` for the saga `saga_id`, claiming to come from its declared producer:
    what a forger who read the contracts would write."""
    model = MESSAGES_BY_TYPE[kind]
    now = datetime.now(UTC).isoformat()
    card = sample_fare("ok")
    values: dict[str, Any] = {
        "order_id": saga_id,
        "fareId": saga_id,
        "customer_id": "hostile",
        "customerId": "hostile",
        "order_date": now,
        "occurred_at": now,
        "correlation_id": saga_id,
        "items": ["1"] if kind == "InventoryReserved" else sample_order("ok")["items"],
        "amount": "10.00",
        "fareAmount": "10.00",
        "transaction_id": str(uuid.uuid4()),
        "fields": [],
        "waited_seconds": 1,
        "attempts": 1,
        "cardLast4": "4242",
        "order_status": "Succeeded",
        "fareStatus": "failed",
        **{name: card[name] for name in ("cc", "expiryDate", "cvv")},
    }
    data: dict[str, Any] = {"type": kind, "producer": producer_of(kind)}
    data["message_id"] = str(uuid.uuid4())
    for name, info in model.model_fields.items():
        if name not in data and info.is_required():
            data[name] = values.get(name, "forged")
    return json.loads(encode(model.model_validate(data)))


@dataclass
class Attacks:
    """What was tried, and where each attempt must end."""

    #: message id -> (the dead-letter queues it must reach, the reason each must give
    #: (None: any), what it was)
    dead: dict[str, tuple[dict[str, str | None], str]] = field(default_factory=dict)
    #: what the broker refused outright, and what it said
    refused: list[tuple[str, str]] = field(default_factory=list)
    #: attempts the broker let through although it should not have
    let_through: list[str] = field(default_factory=list)
    #: saga ids a valid reply (OrderRejected) or a valid saga may write rows for
    allowed: set[str] = field(default_factory=set)


def dead_letter_queues(routing_key: str) -> list[str]:
    return [
        consumer.dead_letter_queue
        for consumer in CONSUMERS
        if routing_key in consumer.routing_keys or "#" in consumer.routing_keys
    ]


class Client:
    """The management UI's "Publish message" form, logged in as the client user."""

    def __init__(self, stack: Stack, management_url: str) -> None:
        self.stack, self.url = stack, management_url

    def publish(
        self,
        routing_key: str,
        payload: str,
        *,
        exchange: str = "saga.events",
        **properties: Any,
    ) -> str | None:
        """Publish; None if routed, else what the broker said."""
        try:
            result = management_publish(
                self.url,
                self.stack.broker.vhost,
                routing_key,
                payload,
                user=f"{self.stack.broker.prefix}client",
                password=self.stack.broker.passwords["client"],
                properties=properties or None,
                exchange=exchange,
            )
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read()).get("reason", str(exc))
        return None if result == {"routed": True} else f"not routed: {result}"


async def publish_amqp(
    stack: Stack,
    role: str,
    body: bytes,
    routing_key: str,
    exchange: str = "saga.events",
    **props: Any,
) -> str | None:
    """Publish over AMQP as the broker user of `role`; None if the broker took it, else
    what it said."""
    connection = await aio_pika.connect(stack.broker.url(role))
    try:
        channel = await connection.channel()
        target = (
            channel.default_exchange
            if exchange == ""
            else await channel.get_exchange(exchange, ensure=False)
        )
        props.setdefault("delivery_mode", aio_pika.DeliveryMode.PERSISTENT)
        await target.publish(aio_pika.Message(body, **props), routing_key=routing_key)
    except (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException) as exc:
        return str(exc)
    finally:
        await connection.close()
    return None


async def snapshot(stack: Stack) -> dict[str, Counter[str]]:
    """Every row of every table of every database of the stack, as JSON text."""
    rows: dict[str, Counter[str]] = {}
    for service, url in stack.database_urls.items():
        tables = await fetch(
            url,
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
        for table in tables:
            name = f'"{table["schemaname"]}"."{table["tablename"]}"'
            found = await fetch(url, f"SELECT row_to_json(t)::text AS r FROM {name} t")
            rows[f"{service}:{table['tablename']}"] = Counter(row["r"] for row in found)
    return rows


def changed_rows(
    before: dict[str, Counter[str]], after: dict[str, Counter[str]]
) -> list[tuple[str, str]]:
    changes = []
    for table in before.keys() | after.keys():
        old, new = before.get(table, Counter()), after.get(table, Counter())
        changes += [(table, row) for row in (new - old) + (old - new)]
    return changes


def queues(stack: Stack, management_url: str) -> list[dict[str, Any]]:
    admin = Management(management_url, "guest", "guest")
    vhost = quote(stack.broker.vhost, safe="")
    found: list[dict[str, Any]] = admin.call("GET", f"/api/queues/{vhost}")
    return found


def metrics(stack: Stack, name: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports[name]}/metrics", timeout=5) as r:
        text: str = r.read().decode()
        return text


async def test_hostile_clients_and_rogue_services_change_nothing_and_end_in_a_dead_letter(
    stack: Stack, management_url: str
) -> None:
    client = Client(stack, management_url)
    if client.publish("order.placed", "{}", message_id="probe") is not None:
        pytest.skip("RabbitMQ management API not usable as the client user")
    attacks = Attacks()
    attacks.dead["probe"] = ({q: None for q in dead_letter_queues("order.placed")}, "empty order")
    prefix = stack.broker.prefix

    # Sagas the forgeries aim at: an order that succeeded, one whose payment failed, a
    # fare that succeeded.
    async with SagaWatcher(stack.amqp_url) as watcher:
        targets = {"ok": fresh_order_id("ok"), "unpaid": fresh_order_id("2")}
        for scenario, order_id in zip(("ok", "2"), targets.values(), strict=True):
            await watcher.place(sample_order(scenario, order_id=order_id))
        targets["fare"] = fresh_fare_id()
        await watcher.start(FARE, sample_fare("ok", fare_id=targets["fare"]))
        ends = {name: await watcher.wait(saga_id, timeout=60) for name, saga_id in targets.items()}
    assert [ends["ok"][-1]["type"], ends["unpaid"][-1]["type"]] == ["OrderSucceeded", "OrderFailed"]
    assert ends["fare"][-1]["type"] == "FareProcessingSucceeded"
    before = await snapshot(stack)

    async with SagaWatcher(stack.amqp_url) as watcher:
        # Valid sagas of both types, started among the attacks.
        valid = {"order": fresh_order_id("ok"), "fare": fresh_fare_id()}
        attacks.allowed |= set(valid.values())
        await watcher.place(sample_order("ok", order_id=valid["order"]))

        # 1. Bodies no parser should chew on, typed into the form: 60 of each.
        deep = '{"order_id": ' + "[" * 100_000 + "]" * 100_000 + "}"
        digits = '{"order_id": ' + "9" * 5000 + "}"
        for n in range(60):
            for kind, payload in (("deep", deep), ("digits", digits)):
                message_id = f"{kind}-{n}"
                assert client.publish("order.placed", payload, message_id=message_id) is None
                attacks.dead[message_id] = (
                    {q: "not JSON we read" for q in dead_letter_queues("order.placed")},
                    f"{kind} JSON",
                )

        # 2. Values no column holds: answered OrderRejected (a client waits) and dead-lettered.
        rejected: dict[str, tuple[dict[str, Any], str, str]] = {}
        order = sample_order("ok", order_id=fresh_order_id("ok"))
        rejected["nul"] = ({**order, "customer_id": "a\x00b"}, "NUL character", "customer_id")
        order = sample_order("ok", order_id=fresh_order_id("ok"))
        rejected["long"] = ({**order, "customer_id": "c" * 10_000}, "at most", "customer_id")
        order = sample_order("ok", order_id=fresh_order_id("ok"))
        order["items"] = [{**order["items"][0], "qty": 99999999, "unit_price": 99999999}]
        rejected["overflow"] = (order, "exceeds", "items")
        for name, (body, reason, _) in rejected.items():
            attacks.allowed.add(body["order_id"])
            assert client.publish("order.placed", json.dumps(body), message_id=name) is None
            # The history keeps a start it can read as it came (its body is JSON, not
            # columns) beside its rejection; a NUL no PostgreSQL text holds, it refuses too.
            where = (
                dead_letter_queues("order.placed") if name == "nul" else ["order.process_order.dlq"]
            )
            attacks.dead[name] = ({q: reason for q in where}, name)

        # 3. A type nobody declared: dead-lettered; metric labels stay bounded.
        teleport = {**sample_order("ok", order_id=fresh_order_id("ok")), "type": "Teleport"}
        assert client.publish("order.placed", json.dumps(teleport), message_id="teleport") is None
        attacks.dead["teleport"] = (
            {
                "order.process_order.dlq": "a Teleport is not a PlaceOrder",
                HISTORY_DLQ: "unknown message type 'Teleport'",
            },
            "unknown type",
        )

        # 4. A forged event of every type, aimed at the sagas above.
        forged_ids: set[str] = set()
        for kind in MESSAGES_BY_TYPE:
            if kind in STARTING:
                continue
            saga = saga_of(kind)
            target = (
                targets["fare"]
                if saga == "fare"
                else targets["unpaid" if kind == "InventoryReserved" else "ok"]
            )
            forged = specimen(kind, target)
            forged_ids.add(forged["message_id"])
            route = MESSAGES_BY_TYPE[kind].routing_key
            # a. As the client, on the event's own routing key: the broker refuses it.
            said = client.publish(route, json.dumps(forged), message_id=forged["message_id"])
            (attacks.refused if said else attacks.let_through).append(
                (f"client {kind}", said or "")
            )
            # b. As the client, on the key it may publish (its saga's start), claiming to be
            #    an operator in the headers a runtime copy carries: dead-lettered. Typed
            #    into the form (no user_id) and sent over AMQP as the client user.
            start = (FARE if saga == "fare" else ORDER).starts_with
            headers = {"saga-origin-user": f"{prefix}operator", "saga-attempt": 0}
            said = client.publish(
                start.routing_key, json.dumps(forged), message_id=f"form-{kind}", headers=headers
            )
            assert said is None, said
            said = await publish_amqp(
                stack,
                "client",
                json.dumps(forged).encode(),
                start.routing_key,
                user_id=f"{prefix}client",
                message_id=f"client-{kind}",
                headers=headers,
            )
            assert said is None, said
            for message_id, sender in (
                (f"form-{kind}", "none"),
                (f"client-{kind}", f"{prefix}client"),
            ):
                expected: dict[str, str | None] = {
                    q: None for q in dead_letter_queues(start.routing_key)
                }
                expected[HISTORY_DLQ] = f"unexpected producer {sender} for {kind}"
                attacks.dead[message_id] = (expected, f"{kind} from the client")
            # c. As the wrong service: refused on the event's key, refused with another
            #    user's user_id, dead-lettered on a key of its own.
            rogue = next(
                s
                for s in ("payment", "inventory", "order", "fare", "accounting")
                if s != producer_of(kind) and published_by(s)
            )
            body = json.dumps(forged).encode()
            said = await publish_amqp(stack, rogue, body, route, user_id=f"{prefix}{rogue}")
            (attacks.refused if said else attacks.let_through).append(
                (f"{rogue} {kind}", said or "")
            )
            own_key = published_by(rogue)[0].routing_key
            said = await publish_amqp(
                stack, rogue, body, own_key, user_id=f"{prefix}{producer_of(kind)}"
            )
            (attacks.refused if said else attacks.let_through).append(
                (f"{rogue} as {producer_of(kind)}", said or "")
            )
            message_id = f"{rogue}-{kind}"
            said = await publish_amqp(
                stack, rogue, body, own_key, user_id=f"{prefix}{rogue}", message_id=message_id
            )
            assert said is None, said
            expected = {q: None for q in dead_letter_queues(own_key)}
            expected[HISTORY_DLQ] = f"unexpected producer {prefix}{rogue} for {kind}"
            attacks.dead[message_id] = (expected, f"{kind} from {rogue}")

        # 5. The rightful service's event with no user_id (who sent it cannot be known).
        debited = specimen("PaymentDebited", targets["unpaid"])
        forged_ids.add(debited["message_id"])
        said = await publish_amqp(
            stack,
            "payment",
            json.dumps(debited).encode(),
            "payment.debited",
            message_id="unstamped",
        )
        assert said is None, said
        attacks.dead["unstamped"] = (
            {
                q: "unexpected producer none for PaymentDebited"
                for q in dead_letter_queues("payment.debited")
            },
            "PaymentDebited without user_id",
        )

        # 6. Messages planted in a holding queue, by the client and by another service.
        for exchange, role in (("amq.default", "client"), ("order.holding", "client")):
            said = client.publish(
                "order.process_order.parked", json.dumps(sample_order("ok")), exchange=exchange
            )
            (attacks.refused if said else attacks.let_through).append(
                (f"{role} via {exchange}", said or "")
            )
        for exchange in ("", "order.holding"):
            said = await publish_amqp(
                stack,
                "payment",
                b"{}",
                "order.process_order.parked",
                exchange=exchange,
                user_id=f"{prefix}payment",
            )
            (attacks.refused if said else attacks.let_through).append(
                (f"payment via {exchange or 'default'}", said or "")
            )

        # 7. Headers that would steer the runtime, on valid orders: each runs once, normally.
        steered = {}
        for value in ("x", -5, 99, "1e9"):
            order_id = fresh_order_id("ok")
            steered[order_id] = value
            attacks.allowed.add(order_id)
            headers = {
                "saga-attempt": value,
                "saga-routing-key": "order.status_updated",
                "saga-parked-queue": "order.process_order",
            }
            assert (
                client.publish(
                    "order.placed",
                    json.dumps(sample_order("ok", order_id=order_id)),
                    headers=headers,
                )
                is None
            )

        await watcher.start(FARE, sample_fare("ok", fare_id=valid["fare"]))
        done = {name: await watcher.wait(saga_id, timeout=90) for name, saga_id in valid.items()}
        for order_id in steered:
            done[order_id] = await watcher.wait(order_id, timeout=90)

        async def answered() -> dict[str, dict[str, Any]]:
            found = {
                name: next(
                    (e for e in watcher.events(body["order_id"]) if e["type"] == "OrderRejected"),
                    None,
                )
                for name, (body, _, _) in rejected.items()
            }
            return found if all(found.values()) else {}  # type: ignore[return-value]

        answers = await eventually(answered, timeout=30)
        # The rows valid sagas write name them, or (inboxes) their events' message ids.
        allowed = attacks.allowed | {
            e.get("message_id", "-") for saga_id in attacks.allowed for e in watcher.events(saga_id)
        }
        # Whatever the targets heard since: the forgeries themselves, and nothing else.
        forged_answers = [
            e
            for saga_id in targets.values()
            for e in watcher.events(saga_id)
            if e.get("message_id") not in forged_ids
        ]

    # Valid sagas of both types ended as before.
    assert done["order"][-1]["type"] == "OrderSucceeded"
    assert done["fare"][-1]["type"] == "FareProcessingSucceeded"
    for order_id, value in steered.items():
        types = [e["type"] for e in done[order_id]]
        assert types[-1] == "OrderSucceeded", (value, types)
        assert types.count("OrderCreated") == 1, (value, types)
    # Bad values were answered, naming the field; the forgeries got no answer at all.
    for name, (_, reason, where) in rejected.items():
        assert where in answers[name]["fields"][0] and reason in answers[name]["reason"], answers[
            name
        ]
    assert forged_answers == [], forged_answers

    # The broker refused every publish outside a user's permissions.
    assert attacks.let_through == []
    reasons = " ".join(said for _, said in attacks.refused)
    assert "ACCESS_REFUSED" in reasons and "PRECONDITION_FAILED" in reasons

    # Everything else is dead-lettered where it should be, with its reason.
    wanted = {(mid, q) for mid, (queues_, _) in attacks.dead.items() for q in queues_}
    missing: set[tuple[str | None, str]] = set()

    async def all_dead() -> dict[tuple[str | None, str], str]:
        held = {
            (m.message_id, m.queue): m.reason for m in await list_held(stack.operator_url, DEAD)
        }
        missing.clear()
        missing.update(wanted - held.keys())
        return {} if missing else held

    try:
        held = await eventually(all_dead, timeout=120, interval=1)
    except AssertionError:
        raise AssertionError(f"{len(missing)} not dead-lettered: {sorted(missing)[:30]}") from None
    wrong = [
        (message_id, queue, held[(message_id, queue)], what)
        for message_id, (expected_queues, what) in attacks.dead.items()
        for queue, reason in expected_queues.items()
        if not held[(message_id, queue)]
        or (reason is not None and reason not in held[(message_id, queue)])
    ]
    assert wrong == [], "\n".join(map(repr, wrong))

    # Nothing is left unacknowledged or waiting in a work queue.
    def idle() -> list[dict[str, Any]]:
        busy = [
            q
            for q in queues(stack, management_url)
            if q.get("messages_unacknowledged", 0)
            or (
                not q["name"].endswith((".dlq", ".parked"))
                and q["name"] not in NOTIFICATION_QUEUES
                and q.get("messages", 0)
            )
        ]
        return [] if busy else [{"idle": True}]

    await eventually(lambda: asyncio.to_thread(idle), timeout=60)

    # No database row changed but the valid sagas' and the rejected orders' history.
    after = await snapshot(stack)
    foreign = [
        (table, row)
        for table, row in changed_rows(before, after)
        if not any(token in row for token in allowed)
    ]
    assert foreign == [], "\n".join(map(repr, foreign[:40]))
    orders = await fetch(
        stack.database_urls["order"],
        "SELECT order_id FROM orders WHERE order_id = ANY($1)",
        [body["order_id"] for body, _, _ in rejected.values()],
    )
    assert orders == []

    # Metric labels stay bounded: no label carries what a client made up.
    known = set(MESSAGES_BY_TYPE) | {"MessageParked", ""}
    for name in stack.processes:
        text = metrics(stack, name)
        assert "Teleport" not in text
        for line in text.splitlines():
            if line.startswith("saga_messages_total{"):
                kind = line.split('type="', 1)[1].split('"', 1)[0]
                assert kind in known, line

    # The operator tools read every dead letter without falling over.
    shown = operator_cli(stack, "dead-letters")
    assert shown.returncode == 0, shown.stderr
    assert "unexpected producer" in shown.stdout and "not JSON we read" in shown.stdout
    inspected = operator_cli(stack, "inspect", "deep-0")
    assert inspected.returncode == 0 and "not JSON we read" in inspected.stdout, inspected.stderr


async def test_a_compensation_replayed_for_a_succeeded_saga_undoes_nothing(stack: Stack) -> None:
    """Operators are trusted with any message (redrive, replay), and code has bugs: what
    one sends to a compensation of a saga that succeeded must still undo nothing. Each
    service's own view of the saga decides (the order's and fare's sagas, the others'
    succeeded_sagas)."""
    async with SagaWatcher(stack.amqp_url) as watcher:
        order_id, fare_id = fresh_order_id("ok"), fresh_fare_id()
        await watcher.place(sample_order("ok", order_id=order_id))
        await watcher.start(FARE, sample_fare("ok", fare_id=fare_id))
        assert (await watcher.wait(order_id, timeout=60))[-1]["type"] == "OrderSucceeded"
        assert (await watcher.wait(fare_id, timeout=60))[-1]["type"] == "FareProcessingSucceeded"

        async def known_succeeded() -> bool:
            rows = [
                await fetch(
                    stack.database_urls[service],
                    "SELECT saga_id FROM succeeded_sagas WHERE saga_id = ANY($1)",
                    [order_id, fare_id],
                )
                for service in ("payment", "inventory", "accounting")
            ]
            return [len(found) for found in rows] == [2, 1, 1]

        await eventually(known_succeeded, timeout=30)

        async def every_event_stamped() -> bool:
            # The relays stamp what RabbitMQ confirmed up to 1 s later: a stamp landing
            # between the two snapshots is not something the replays changed.
            for url in stack.database_urls.values():
                unstamped = await fetch(
                    url, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL"
                )
                if unstamped[0]["n"]:
                    return False
            return True

        await eventually(every_event_stamped, timeout=30)
        before = await snapshot(stack)
        # Straight into each compensation's (and cancellation's) work queue, as the
        # operator, through the service's holding exchange.
        replays = {
            "payment.refund_payment": specimen("InventoryReleased", order_id),
            "payment.cancel_payment": specimen("OrderCancelled", order_id),
            "inventory.release_inventory": specimen("InventoryReserveFailed", order_id),
            "inventory.cancel_reservation": specimen("OrderCancelled", order_id),
            "order.update_order_status": specimen("PaymentRefunded", order_id),
            "payment.refund_fare": specimen("CustomerAccountCreditFailed", fare_id),
            "payment.cancel_fare_charge": specimen("FareCancelled", fare_id),
            "accounting.cancel_credit": specimen("FareCancelled", fare_id),
            "fare.fail_fare": specimen("FareRefunded", fare_id),
        }

        def counts(field: str) -> dict[str, int]:
            found = {}
            for queue in replays:
                health = stack.health(queue.split(".", 1)[0]) or {}
                found[queue] = health.get("consumers", {}).get(queue, {}).get(field, -1)
            return found

        handled_before, dead_before = counts("handled"), counts("dead_lettered")
        for queue, body in replays.items():
            said = await publish_amqp(
                stack,
                "operator",
                json.dumps(body).encode(),
                queue,
                exchange=f"{queue.split('.', 1)[0]}.holding",
                user_id=f"{stack.broker.prefix}operator",
                message_id=body["message_id"],
                type=body["type"],
            )
            assert said is None, (queue, said)

        async def all_handled() -> dict[str, int]:
            now = counts("handled")
            return now if all(now[q] > handled_before[q] for q in replays) else {}

        await eventually(all_handled, timeout=30)
        assert counts("dead_lettered") == dead_before  # accepted, handled: undone nothing
        replayed = {body["message_id"] for body in replays.values()}
        answers = [
            e
            for saga_id in (order_id, fare_id)
            for e in watcher.events(saga_id)
            if e.get("message_id") not in replayed
            and e["type"] not in ("OrderSucceeded",)
            and e.get("causation_id") in replayed
        ]
    assert answers == []
    after = await snapshot(stack)
    changed = [
        (table, row)
        for table, row in changed_rows(before, after)
        if not table.endswith(":inbox")  # the replays were received, once each
    ]
    assert changed == [], "\n".join(map(repr, changed))
