"""One reader of the event stream per process, fanning out to bounded per-subscriber queues.

Each entry is turned into its WebSocket message once (:meth:`StreamEntry.event_message`, wrapped in one
ASGI message) and the same object is queued for every matching subscriber. A subscriber whose queue is
full is marked dropped; its connection closes with 4008 and the client resumes with ``since``. So memory per client is bounded by
``queue_size`` references, whatever the client does.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass, field
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
    """A ready message (status, pong, error, heartbeat)."""
    RESYNC = "resync"
    """The connection must send a resync and a fresh snapshot at ``stream_id``."""


@dataclass(frozen=True, slots=True)
class Item:
    kind: ItemKind
    stream_id: str | None
    text: str
    message: dict[str, str] = field(init=False, compare=False)
    """The ASGI ``websocket.send`` message carrying ``text``, built once and handed to every client
    (the server only reads it), so a delivery costs no allocation or encoding of its own."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", {"type": "websocket.send", "text": self.text})


HEARTBEAT = Item(ItemKind.CONTROL, None, '{"type":"heartbeat"}')


class Subscriber:
    """A bounded queue plus the stream position the subscription started at.

    The connection's sender waits on a bare future that :meth:`offer` resolves (the cheapest wake-up
    asyncio has); heartbeats and the send timeout are driven by the broadcaster's periodic sweep, so a
    delivery arms no timer.
    """

    __slots__ = (
        "_loop",
        "_waiter",
        "busy_since",
        "dropped",
        "idle_since",
        "items",
        "live_at_start",
        "maxsize",
        "start_id",
        "topic",
    )

    def __init__(self, topic: Topic, maxsize: int, start_id: str | None, live: bool) -> None:
        self.topic = topic
        self.maxsize = maxsize
        self.start_id = start_id
        """Broadcaster position when subscribed: every later matching entry is queued here."""
        self.live_at_start = live
        self.items: deque[Item] = deque()
        self.dropped = asyncio.Event()
        """Set when the queue overflowed or a send blocked too long: the connection closes with 4008."""
        self._loop = asyncio.get_running_loop()
        self.busy_since: float | None = None
        """Loop time at which the current send began (None between sends): the sweep drops the client
        when a send blocks longer than the send timeout."""
        self.idle_since = self._loop.time()
        """Loop time of the last send: the sweep queues a heartbeat after ``heartbeat_seconds`` idle."""
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, item: Item) -> None:
        if len(self.items) >= self.maxsize:
            self.drop()
            return
        self.items.append(item)
        self._wake()

    def drop(self) -> None:
        self.dropped.set()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def take(self) -> list[Item]:
        """Everything queued, waiting until something is (or the subscriber is dropped: empty list)."""
        while not self.items:
            if self.dropped.is_set():
                return []
            self._waiter = self._loop.create_future()
            await self._waiter
        batch = list(self.items)
        self.items.clear()
        return batch

    def sweep(self, now: float, heartbeat_seconds: float, send_timeout_seconds: float) -> None:
        """Drop a client whose send has blocked too long; queue a heartbeat for one idle too long."""
        if self.busy_since is not None:
            if now - self.busy_since > send_timeout_seconds:
                self.drop()
        elif now - self.idle_since >= heartbeat_seconds and not self.items:
            self.idle_since = now
            self.offer(HEARTBEAT)


def status_message(live: bool, reason: str = "") -> str:
    return orjson.dumps({"type": "status", "live": live, "reason": reason}).decode()


class Broadcaster:
    """Reads the stream from its last id with XREAD (every replica sees every entry) and fans out.

    While Redis is away subscribers get ``{"type":"status","live":false}``; when it returns the
    broadcaster checks that the history after its position is intact (not trimmed, not reset) and
    otherwise tells every subscriber to resync before announcing ``live:true``.
    """

    def __init__(
        self,
        reader: StreamReader,
        metrics: Metrics,
        *,
        retry_max_seconds: float = 5.0,
        heartbeat_seconds: float = 15.0,
        send_timeout_seconds: float = 10.0,
        first_contact_seconds: float = 5.0,
    ) -> None:
        """``retry_max_seconds``: cap of the reconnect backoff while Redis is unreachable.
        ``heartbeat_seconds``: a subscriber sent nothing for this long gets a heartbeat.
        ``send_timeout_seconds``: a subscriber whose send blocks this long is dropped (4008).
        ``first_contact_seconds``: :meth:`start` waits at most this long for the first attempt to reach
        Redis, so that clients connecting right after start-up are not told Redis is unavailable (with
        a needless resync) merely because the first XINFO had not been answered yet."""
        self.reader = reader
        self._metrics = metrics
        self._retry_max = retry_max_seconds
        self._heartbeat = heartbeat_seconds
        self._send_timeout = send_timeout_seconds
        self._first_contact = first_contact_seconds
        # A quarter of the shorter deadline (at most 1 s), so each fires at most 25 % late.
        self._sweep_interval = min(1.0, heartbeat_seconds / 4, send_timeout_seconds / 4)
        self.position: str | None = None
        """Id of the last entry fanned out (None until Redis has been reached once)."""
        self.live = False
        self._subscribers: dict[Topic, set[Subscriber]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()
        self._first_attempt = asyncio.Event()

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
        """Start reading; return once the first attempt to reach Redis has succeeded or failed (or after
        ``first_contact_seconds``), so the position is known before the first client subscribes."""
        self._tasks = [
            asyncio.create_task(self._run(), name="broadcaster"),
            asyncio.create_task(self._sweep(), name="broadcaster-sweep"),
        ]
        try:
            async with asyncio.timeout(self._first_contact):
                await self._first_attempt.wait()
        except TimeoutError:
            log.warning("redis not reached at start-up, serving without live events for now")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._sweep_interval)
            now = loop.time()
            for subs in list(self._subscribers.values()):
                for subscriber in list(subs):
                    subscriber.sweep(now, self._heartbeat, self._send_timeout)

    def _fanout(self, entry: StreamEntry) -> None:
        item: Item | None = None
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
            if item is None:
                item = Item(ItemKind.EVENT, entry.id, entry.event_message())
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
                    try:
                        await self._recover()
                    finally:
                        self._first_attempt.set()
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
