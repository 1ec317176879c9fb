"""One reader of the event stream per process, fanning out to bounded per-subscriber queues.

Each entry is turned into its WebSocket message once (:meth:`StreamEntry.event_message`) and the same
string is queued for every matching subscriber. A subscriber whose queue is full is marked dropped; its
connection closes with 4008 and the client resumes with ``since``. So memory per client is bounded by
``queue_size`` references, whatever the client does.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

import orjson
from autotuner.api.observability import Metrics
from autotuner.core.stream import ResumeCheck, StreamEntry, StreamReader
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class StreamKind(StrEnum):
    TASK = "task"
    EXPERIMENT = "experiment"
    NAMESPACE = "namespace"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Topic:
    """What a subscriber receives: a task and its experiments, one experiment, a namespace, or all."""

    kind: StreamKind
    namespace: str = ""
    name: str = ""

    def matches(self, entry: StreamEntry) -> bool:
        if self.kind is StreamKind.ALL:
            return True
        if entry.namespace != self.namespace:
            return False
        if self.kind is StreamKind.TASK:
            return entry.task == self.name
        if self.kind is StreamKind.EXPERIMENT:
            return entry.experiment == self.name
        return True


class ItemKind(StrEnum):
    EVENT = "event"
    CONTROL = "control"
    """A ready message (status, pong, error)."""
    RESYNC = "resync"
    """The connection must send a resync and a fresh snapshot at ``stream_id``."""


@dataclass(frozen=True, slots=True)
class Item:
    kind: ItemKind
    stream_id: str | None
    text: str


class Subscriber:
    """A bounded queue plus the stream position the subscription started at."""

    def __init__(self, topic: Topic, maxsize: int, start_id: str | None, live: bool) -> None:
        self.topic = topic
        self.maxsize = maxsize
        self.start_id = start_id
        """Broadcaster position when subscribed: every later matching entry is queued here."""
        self.live_at_start = live
        self.items: deque[Item] = deque()
        self.wakeup = asyncio.Event()
        self.dropped = asyncio.Event()
        """Set when the queue overflowed: the connection must close with 4008."""

    def offer(self, item: Item) -> None:
        if len(self.items) >= self.maxsize:
            self.dropped.set()
            self.wakeup.set()
            return
        self.items.append(item)
        self.wakeup.set()

    async def take(self, wait_seconds: float) -> list[Item]:
        """Everything queued, waiting up to ``wait_seconds`` for something (empty list on timeout)."""
        if not self.items:
            self.wakeup.clear()
            try:
                async with asyncio.timeout(wait_seconds):
                    await self.wakeup.wait()
            except TimeoutError:
                return []
        batch = list(self.items)
        self.items.clear()
        return batch


def status_message(live: bool, reason: str = "") -> str:
    return orjson.dumps({"type": "status", "live": live, "reason": reason}).decode()


class Broadcaster:
    """Reads the stream from its last id with XREAD (every replica sees every entry) and fans out.

    ``retry_max_seconds`` caps the reconnect backoff while Redis is unreachable. While Redis is away
    subscribers get ``{"type":"status","live":false}``; when it returns the broadcaster checks that the
    history after its position is intact (not trimmed, not reset) and otherwise tells every subscriber to
    resync before announcing ``live:true``.
    """

    def __init__(self, reader: StreamReader, metrics: Metrics, *, retry_max_seconds: float = 5.0) -> None:
        self.reader = reader
        self._metrics = metrics
        self._retry_max = retry_max_seconds
        self.position: str | None = None
        """Id of the last entry fanned out (None until Redis has been reached once)."""
        self.live = False
        self._subscribers: dict[Topic, set[Subscriber]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    def count(self, topic: Topic) -> int:
        return len(self._subscribers.get(topic, ()))

    def counts(self) -> dict[Topic, int]:
        return {topic: len(subs) for topic, subs in self._subscribers.items() if subs}

    def subscribe(self, topic: Topic, maxsize: int) -> Subscriber:
        subscriber = Subscriber(topic, maxsize, self.position, self.live)
        self._subscribers.setdefault(topic, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subs = self._subscribers.get(subscriber.topic)
        if subs is not None:
            subs.discard(subscriber)
            if not subs:
                del self._subscribers[subscriber.topic]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broadcaster")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _fanout(self, entry: StreamEntry) -> None:
        message: str | None = None
        for topic in (
            Topic(StreamKind.ALL),
            Topic(StreamKind.NAMESPACE, entry.namespace),
            Topic(StreamKind.TASK, entry.namespace, entry.task),
            Topic(StreamKind.EXPERIMENT, entry.namespace, entry.experiment) if entry.experiment else None,
        ):
            if topic is None:
                continue
            subs = self._subscribers.get(topic)
            if not subs:
                continue
            if message is None:
                message = entry.event_message()
            item = Item(ItemKind.EVENT, entry.id, message)
            for subscriber in subs:
                subscriber.offer(item)
        self.position = entry.id

    def _broadcast(self, item: Item) -> None:
        for subs in self._subscribers.values():
            for subscriber in subs:
                subscriber.offer(item)

    async def _recover(self) -> None:
        """Establish a position after start-up or an outage, resyncing subscribers if history is lost."""
        if self.position is None:
            self.position = await self.reader.tail_id()
            # Clients that connected before Redis was reachable got a snapshot at an unknown position.
            if self.subscriber_count:
                self._broadcast(Item(ItemKind.RESYNC, self.position, "redis_unavailable"))
        else:
            check = await self.reader.check_resume(self.position)
            if check is not ResumeCheck.OK:
                log.warning("stream history lost during outage", extra={"check": check.value})
                self.position = await self.reader.tail_id()
                self._broadcast(Item(ItemKind.RESYNC, self.position, f"stream_{check.value}"))
        self.live = True
        self._metrics.redis_live.set(1)
        self.connected.set()
        self._broadcast(Item(ItemKind.CONTROL, None, status_message(True)))
        log.info("stream live", extra={"position": self.position})

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                if not self.live:
                    await self._recover()
                    delay = 0.1
                assert self.position is not None
                entries = await self.reader.read(self.position)
                if entries:
                    self._metrics.events_in.inc(len(entries))
                for entry in entries:
                    self._fanout(entry)
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN as error:
                self._metrics.redis_errors.labels("xread").inc()
                if self.live:
                    log.warning("redis unreachable", extra={"error": repr(error)})
                    self.live = False
                    self._metrics.redis_live.set(0)
                    self.connected.clear()
                    self._broadcast(Item(ItemKind.CONTROL, None, status_message(False, "redis_unavailable")))
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._retry_max)
            except Exception:
                # A bug or an unexpected reply must not end fan-out for the life of the process.
                self._metrics.redis_errors.labels("unexpected").inc()
                log.exception("broadcaster error")
                await asyncio.sleep(1.0)
