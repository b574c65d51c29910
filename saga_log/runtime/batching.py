"""Group commit: the deliveries a consumer has in hand when it is free are handled in one
transaction (one inbox insert for all, the handler on the whole batch in saga order, one
outbox insert, one commit, one fsync), then acked.

Each consumer runs one batch at a time, even a batch of one: what arrives while a
transaction runs makes the next batch, so batches grow with load and a lone message waits
for nothing, except on a consumer that publishes nothing (the history, the reactions to
a saga's success): nobody waits for it, so it lingers (`SAGA_LINGER`, 0.5 s) until its
batch is full or the linger is over, which at low load saves most of its transactions
(a history entry or a success reaction is at most that late; at high load batches fill
at once and the linger costs nothing).

A batch that fails in any way is rolled back whole and its messages take the one-message
path, each with its own retries, parking and dead letters: a batch changes how many
transactions there are, never what any message does.

A committed batch is acked with one frame (basic.ack `multiple`: RabbitMQ settles the
whole batch at once, a quorum queue with one log entry) when that frame settles nothing
else (`SettledTags`); otherwise with one frame per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage

from saga_log.runtime.subscription import Received
from saga_log.runtime.tracing import NO_TRACE, MessageTrace

log = logging.getLogger(__name__)


@dataclass
class Pending:
    """A decoded delivery in hand, waiting for its transaction."""

    raw: AbstractIncomingMessage
    received: Received[Any]
    started: float = field(default_factory=time.perf_counter)
    trace: MessageTrace = NO_TRACE


@dataclass
class Outcome:
    """What one committed transaction did with its deliveries."""

    handled: list[Pending]
    duplicates: list[Pending]
    parked: list[Pending]
    emitted: list[str]


class Transactor(Protocol):
    """What group commit needs of the delivery path (`delivery.DeliveryHandler`)."""

    async def transact(self, batch: Sequence[Pending]) -> Outcome: ...

    async def settle(
        self, raw: AbstractIncomingMessage, message: Any = None, trace: MessageTrace = NO_TRACE
    ) -> None: ...

    def account(self, outcome: Outcome, *, batch: int) -> None: ...

    def received(self, raw: AbstractIncomingMessage, message: Any) -> Received[Any]: ...


class SettledTags:
    """Which deliveries of each channel are settled, so that a batch may be acked with one
    frame: basic.ack `multiple` settles every delivery of the channel up to its tag, which
    is right only when each one below the batch's highest tag is in the batch or settled
    already. Delivery tags count up from 1 on each channel, so what is not settled is what
    lies above a floor (everything up to it is settled), less the settled tags above it.
    A delivery counts as settled only once its handling returned: one still anywhere else
    (arriving, waiting, retried) keeps its batch on one frame per message, never lost."""

    def __init__(self) -> None:
        self._channels: weakref.WeakKeyDictionary[Any, _ChannelTags] = weakref.WeakKeyDictionary()

    def settled(self, raw: AbstractIncomingMessage) -> None:
        found = _channel_and_tag(raw)
        if found is None:
            return
        channel, tag = found
        tags = self._channels.get(channel)
        if tags is None:  # not setdefault: that would build one for every delivery
            tags = self._channels[channel] = _ChannelTags()
        tags.add(tag)

    def one_frame(self, raws: Sequence[AbstractIncomingMessage]) -> AbstractIncomingMessage | None:
        """The delivery whose ack with `multiple` settles exactly `raws`, if there is one."""
        if len(raws) < 2:
            return None
        found = [_channel_and_tag(raw) for raw in raws]
        pairs = [pair for pair in found if pair is not None]
        if len(pairs) != len(raws) or any(c is not pairs[0][0] for c, _ in pairs):
            return None
        tags = [tag for _, tag in pairs]
        batch, top = set(tags), max(tags)
        known = self._channels.get(pairs[0][0]) or _ChannelTags()
        for tag in range(known.floor + 1, top + 1):
            if tag not in batch and tag not in known.above:
                return None  # a delivery below the top is still in hand somewhere else
        return raws[tags.index(top)]


@dataclass
class _ChannelTags:
    floor: int = 0  # every tag up to it is settled
    above: set[int] = field(default_factory=set)  # settled tags above the floor

    def add(self, tag: int) -> None:
        if tag <= self.floor:
            return
        self.above.add(tag)
        while self.floor + 1 in self.above:
            self.floor += 1
            self.above.discard(self.floor)


def _channel_and_tag(raw: AbstractIncomingMessage) -> tuple[Any, int] | None:
    tag = getattr(raw, "delivery_tag", None)
    if not isinstance(tag, int):
        return None
    try:
        channel = raw.channel
    except Exception:  # closed: its deliveries are RabbitMQ's again anyway
        return None
    return channel, tag


@dataclass
class _Waiting:
    pending: Pending
    #: True once acked with its batch; False: it takes the one-message path.
    settled: asyncio.Future[bool]


class GroupCommit:
    """Batches the deliveries of one consumer; see the module docstring."""

    def __init__(
        self, delivery: Transactor, size: int, *, queue: str = "", linger: float = 0.0
    ) -> None:
        self._delivery = delivery
        self._size = size
        self._linger = linger
        self._queue = queue
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        #: What was settled on each channel (the delivery path reports every delivery).
        self.settled_tags = SettledTags()
        #: Set when a full batch is waiting: it ends a linger early.
        self._full = asyncio.Event()

    async def join(
        self, raw: AbstractIncomingMessage, message: Any, trace: MessageTrace = NO_TRACE
    ) -> None:
        """Join the next batch; if the batch fails, take the one-message path."""
        waiting = _Waiting(
            Pending(raw, self._delivery.received(raw, message), trace=trace),
            asyncio.get_running_loop().create_future(),
        )
        self._waiting.append(waiting)
        if len(self._waiting) >= self._size:
            self._full.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=f"{self._queue}-batch")
        # Shielded: a delivery task cancelled at shutdown must not cancel its whole batch;
        # what the batch does not ack, RabbitMQ redelivers.
        if not await asyncio.shield(waiting.settled):
            await self._delivery.settle(raw, message, trace)

    async def _flush(self) -> None:
        try:
            while self._waiting:
                if self._linger and len(self._waiting) < self._size:
                    # Off the saga's path (it publishes nothing): wait for company, but
                    # never past a full batch (a fixed sleep capped the consumer at one
                    # batch per linger under load).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self._linger)
                # Set only while a full batch waits: this one takes it.
                self._full.clear()
                batch = self._waiting[: self._size]
                del self._waiting[: len(batch)]
                committed = False
                try:
                    committed = await self._run(batch)
                finally:
                    for waiting in batch:
                        if not waiting.settled.done():
                            waiting.settled.set_result(committed)
        finally:
            for waiting in self._waiting:
                if not waiting.settled.done():
                    waiting.settled.set_result(False)
            self._waiting.clear()

    async def _run(self, batch: list[_Waiting]) -> bool:
        if len(batch) == 1:
            # Nothing to share: the one-message path at once, so that a failure goes
            # straight to its retry instead of being run a second time.
            only = batch[0].pending
            await self._delivery.settle(only.raw, only.received.message, only.trace)
            return True
        pending = [waiting.pending for waiting in batch]
        try:
            outcome = await self._delivery.transact(pending)
        except Exception as exc:
            log.info(
                "batch failed; its messages are handled one by one",
                extra={"queue": self._queue, "size": len(batch), "error": repr(exc)},
            )
            return False
        await self._ack(pending)
        for settled in pending:
            settled.trace.end()
        self._delivery.account(outcome, batch=len(batch))
        return True

    async def _ack(self, batch: Sequence[Pending]) -> None:
        raws = [p.raw for p in batch]
        last = self.settled_tags.one_frame(raws)
        acks: Sequence[BaseException | None]
        if last is not None:
            try:
                await last.ack(multiple=True)
                acks = []
            except Exception as exc:
                acks = [exc]
        else:
            acks = await asyncio.gather(*(raw.ack() for raw in raws), return_exceptions=True)
        for raw in raws:
            self.settled_tags.settled(raw)
        for ack in acks:
            if isinstance(ack, BaseException):
                # Committed but not acked: RabbitMQ redelivers it and the inbox absorbs it.
                log.warning(
                    "ack failed after commit; the redelivery will be a duplicate",
                    extra={"queue": self._queue, "error": repr(ack)},
                )
