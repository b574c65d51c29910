"""What an ack costs RabbitMQ: one frame per message against one frame per batch.

    python -m bench.acks            6,000 messages each way, twice, alternated
    python -m bench.acks --batch 25

A durable quorum queue is filled with persistent messages (confirmed), then drained by a
consumer (prefetch 100) that acks either each message (`basic.ack`) or every `--batch`
messages with one frame (`basic.ack` with `multiple`), as a group commit does
(saga_log.runtime.batching). Prints RabbitMQ's CPU (beam.smp, from /proc) per message
drained. RabbitMQ must be local; the queue is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess

import aio_pika


def rabbitmq_cpu() -> float:
    pid = int(subprocess.check_output(["pgrep", "-f", "beam.smp"]).split()[0])
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drain(url: str, *, one_frame: bool, messages: int, batch: int) -> float:
    """RabbitMQ's CPU ms per message consumed and acked."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            f"bench-acks-{os.getpid()}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        try:
            body = b"x" * 400
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue.name,
                    )
                    for _ in range(messages)
                )
            )
            consumer = await connection.channel()
            await consumer.set_qos(prefetch_count=100)
            source = await consumer.get_queue(queue.name)
            seen = 0
            done = asyncio.Event()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                nonlocal seen
                seen += 1
                if not one_frame:
                    await message.ack()
                elif seen % batch == 0 or seen == messages:
                    await message.ack(multiple=True)
                if seen == messages:
                    done.set()

            before = rabbitmq_cpu()
            await source.consume(on_message)
            await asyncio.wait_for(done.wait(), timeout=300)
            await asyncio.sleep(0.5)  # the last acks reach the broker
            return 1000 * (rabbitmq_cpu() - before) / messages
        finally:
            await queue.delete(if_unused=False, if_empty=False)


async def measure(url: str, *, messages: int, batch: int, rounds: int) -> None:
    for round_ in range(1, rounds + 1):
        for one_frame in (False, True):
            cost = await drain(url, one_frame=one_frame, messages=messages, batch=batch)
            how = f"one frame per {batch}" if one_frame else "one frame each   "
            print(f"round {round_}, acks {how}: RabbitMQ CPU {cost:.3f} ms per message", flush=True)
            await asyncio.sleep(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.acks", description=__doc__)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    asyncio.run(measure(url, messages=args.messages, batch=args.batch, rounds=args.rounds))


if __name__ == "__main__":
    main()
