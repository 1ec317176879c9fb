"""The one Redis Streams mechanism for events: the operator publishes with :class:`EventPublisher`, every
api replica reads with :class:`StreamReader`.

Layout in Redis (one logical Redis; the keys are not hash-tagged for Redis Cluster):

- ``autotuner:events`` — the stream. Each entry holds ``e`` (the event as JSON, without ``id``: the entry
  id *is* the event id), and the routing fields ``ns``, ``t`` (task name) and ``x`` (experiment name or
  empty) so a reader can route an entry without parsing its JSON.
- ``autotuner:seq:{namespace}/{name}`` — the per-task high-water mark: the last ``seq`` appended.

Appends are idempotent by ``(task, seq)``: a Lua script compares ``seq`` with the high-water mark and the
XADD happens in the same atomic step, so a publisher that retries after a timeout (not knowing whether
its first attempt landed) never produces a duplicate, and one that skipped an event is told so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from autotuner.core.events import EVENT_STREAM_KEY, Event, TaskRef
from redis.exceptions import ResponseError

SEQ_KEY_PREFIX: Final = "autotuner:seq:"
"""Prefix of the per-task high-water mark keys (``autotuner:seq:{namespace}/{name}``)."""

DEFAULT_MAXLEN: Final = 100_000
"""Default approximate stream length. At ~300 bytes an entry this is ~30 MB of Redis memory, and at
10 events/s it keeps almost three hours of history for clients resuming with ``since``."""

_STREAM_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")

# KEYS: stream, seq key. ARGV: seq, maxlen, payload, namespace, task, experiment.
# Returns {1, id} when appended, {0, last} for a duplicate, {-1, last} for a gap.
_PUBLISH_LUA: Final = """
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local seq = tonumber(ARGV[1])
if seq <= last then return {0, tostring(last)} end
if seq > last + 1 then return {-1, tostring(last)} end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
                      'e', ARGV[3], 'ns', ARGV[4], 't', ARGV[5], 'x', ARGV[6])
redis.call('SET', KEYS[2], seq)
return {1, id}
"""


class SequenceGap(Exception):
    """``seq`` is more than one past the task's high-water mark: publish the missing events first
    (or, after Redis lost its data, :meth:`EventPublisher.rebase` the task)."""

    def __init__(self, task: TaskRef, seq: int, last: int) -> None:
        super().__init__(f"event seq {seq} for task {task.key} leaves a gap: the stream's last seq is {last}")
        self.task = task
        self.seq = seq
        self.last = last


class InvalidStreamId(ValueError):
    """A string that is not a Redis stream id (``<ms>-<n>`` or ``<ms>``)."""


def parse_stream_id(value: str) -> tuple[int, int]:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``; a bare ``"<ms>"`` means ``<ms>-0``."""
    match = _STREAM_ID.match(value)
    if match is None:
        raise InvalidStreamId(f"not a stream id: {value[:64]!r} (expected <milliseconds>-<sequence>)")
    ms, n = int(match.group(1)), int(match.group(2) or 0)
    if ms >= 2**64 or n >= 2**64:
        raise InvalidStreamId(f"stream id out of range: {value[:64]!r}")
    return ms, n


def format_stream_id(value: tuple[int, int]) -> str:
    return f"{value[0]}-{value[1]}"


def seq_key(task: TaskRef) -> str:
    return f"{SEQ_KEY_PREFIX}{task.key}"


def serialize_event(event: Event) -> bytes:
    """The stored form: the event as JSON without ``id`` (the entry id is the id)."""
    return orjson.dumps(event.model_dump(mode="json", exclude={"id"}))


class EventPublisher:
    """Appends events to the stream, idempotent by ``(task, seq)``.

    ``maxlen`` bounds the stream (approximate trimming, so Redis trims whole radix-tree nodes cheaply);
    clients resuming from an id older than what is kept get a resync. ``stream_key`` exists for tests.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        stream_key: str = EVENT_STREAM_KEY,
        maxlen: int = DEFAULT_MAXLEN,
    ) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self._redis = redis
        self._stream_key = stream_key
        self._maxlen = maxlen
        self._script = redis.register_script(_PUBLISH_LUA)

    async def publish(self, event: Event) -> str | None:
        """Append ``event``; return its stream id, or ``None`` if this ``(task, seq)`` was already appended.

        Raises :class:`SequenceGap` when ``event.seq`` > last + 1. Redis connection errors propagate
        (``redis.exceptions.ConnectionError``/``TimeoutError``): retrying the same event is always safe.
        """
        result: list[Any] = await self._script(
            keys=[self._stream_key, seq_key(event.task)],
            args=[
                event.seq,
                self._maxlen,
                serialize_event(event),
                event.task.namespace,
                event.task.name,
                event.experiment or "",
            ],
        )
        status, value = int(result[0]), _text(result[1])
        if status == 1:
            return value
        if status == 0:
            return None
        raise SequenceGap(event.task, event.seq, int(value))

    async def last_seq(self, task: TaskRef) -> int:
        """The last ``seq`` appended for ``task`` (0 when none)."""
        value = await self._redis.get(seq_key(task))
        return int(value) if value is not None else 0

    async def rebase(self, task: TaskRef, last_seq: int) -> bool:
        """Set the high-water mark of a task Redis has no record of (e.g. Redis restarted without
        persistence), so publishing continues at ``last_seq + 1``. Returns False if a mark exists."""
        return bool(await self._redis.set(seq_key(task), last_seq, nx=True))

    async def forget(self, task: TaskRef) -> None:
        """Drop the high-water mark of a deleted task (its events stay in the stream until trimmed)."""
        await self._redis.delete(seq_key(task))


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One stream entry, routed by its plain fields; ``payload`` is the stored event JSON (no id)."""

    id: str
    namespace: str
    task: str
    experiment: str
    payload: bytes

    def event_message(self) -> str:
        """The WebSocket message ``{"type":"event","event":{"id":..., ...}}``, built by splicing bytes
        (no JSON parse or dump), once per entry however many clients receive it."""
        return '{"type":"event","event":{"id":"' + self.id + '",' + self.payload[1:].decode() + "}"

    def event(self) -> Event:
        return Event.model_validate({**orjson.loads(self.payload), "id": self.id})


class ResumeCheck(StrEnum):
    OK = "ok"
    """Every entry after the id is still in the stream."""
    TRIMMED = "trimmed"
    """Entries after the id were trimmed (MAXLEN) or deleted: the history has a hole."""
    UNKNOWN = "unknown"
    """The id is newer than anything the stream has produced: the stream was reset (Redis lost data)."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    length: int
    first_id: str | None
    last_generated_id: str
    max_deleted_id: str | None
    """Largest id removed by XDEL (trimming does not move it); None on Redis < 7."""
    entries_added: int | None
    """Entries ever appended; ``entries_added > length`` means some were trimmed. None on Redis < 7."""


class StreamReader:
    """Reads the stream with plain XREAD/XRANGE (no consumer groups: every api replica sees every entry).

    ``redis`` must be created with ``decode_responses=False`` and a socket timeout longer than
    ``block_ms``, or a blocking read is cut short as a timeout.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        stream_key: str = EVENT_STREAM_KEY,
        block_ms: int = 5_000,
        count: int = 1_000,
    ) -> None:
        """``block_ms``: how long one XREAD waits for new entries; ``count``: entries per read."""
        self._redis = redis
        self._stream_key = stream_key
        self.block_ms = block_ms
        self.count = count

    async def read(self, after: str) -> list[StreamEntry]:
        """Entries after ``after``, waiting up to ``block_ms`` for the first one (empty list on timeout)."""
        response: Any = await self._redis.xread(
            {self._stream_key: after}, count=self.count, block=self.block_ms
        )
        if not response:
            return []
        # RESP2 answers [[key, entries]]; RESP3 answers {key: [entries]}.
        entries = next(iter(response.values()))[0] if isinstance(response, dict) else response[0][1]
        return [_entry(entry_id, fields) for entry_id, fields in entries]

    async def history(self, after: str, until: str = "+", count: int | None = None) -> list[StreamEntry]:
        """Entries with ``after`` < id <= ``until`` (at most ``count``, default ``self.count``)."""
        entries: Any = await self._redis.xrange(
            self._stream_key, f"({after}", until, count=count or self.count
        )
        return [_entry(entry_id, fields) for entry_id, fields in entries]

    async def info(self) -> StreamInfo | None:
        """Length and boundary ids, or None when the stream does not exist (yet, or any more)."""
        try:
            raw = await self._redis.xinfo_stream(self._stream_key)
        except ResponseError as error:
            if "no such key" in str(error).lower():
                return None
            raise
        first = raw.get("first-entry")
        return StreamInfo(
            length=int(raw["length"]),
            first_id=_text(first[0]) if first else None,
            last_generated_id=_text(raw["last-generated-id"]),
            max_deleted_id=_text(raw["max-deleted-entry-id"]) if "max-deleted-entry-id" in raw else None,
            entries_added=int(raw["entries-added"]) if "entries-added" in raw else None,
        )

    async def tail_id(self) -> str:
        """The id of the newest entry ever appended (``0-0`` for no stream): read after it to see only
        what comes next, without the race of ``$``."""
        info = await self.info()
        return info.last_generated_id if info else "0-0"

    async def check_resume(self, since: str) -> ResumeCheck:
        """Whether reading after ``since`` yields the complete history.

        Trimming removes the oldest entries first, so if the entry ``since`` names is still in the
        stream, nothing after it was trimmed (an XDEL after it is caught by ``max-deleted-entry-id``).
        If it is gone, entries after it may be gone too: TRIMMED when the stream has lost entries,
        UNKNOWN when it never did — then the id belongs to an earlier incarnation of the stream (Redis
        restarted without its data). An id newer than any the stream produced is UNKNOWN as well.
        """
        wanted = parse_stream_id(since)
        info = await self.info()
        if info is None:
            return ResumeCheck.OK if wanted == (0, 0) else ResumeCheck.UNKNOWN
        last = parse_stream_id(info.last_generated_id)
        if wanted > last:
            return ResumeCheck.UNKNOWN
        if info.max_deleted_id is not None and wanted < parse_stream_id(info.max_deleted_id):
            return ResumeCheck.TRIMMED
        removed = info.entries_added is None or info.entries_added > info.length
        if wanted == (0, 0):
            return ResumeCheck.TRIMMED if removed else ResumeCheck.OK
        if wanted == last or await self._redis.xrange(self._stream_key, since, since, count=1):
            return ResumeCheck.OK
        return ResumeCheck.TRIMMED if removed else ResumeCheck.UNKNOWN


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(entry_id: Any, fields: dict[Any, Any]) -> StreamEntry:
    def field(name: bytes) -> bytes:
        value = fields.get(name)
        if value is None:
            value = fields.get(name.decode(), b"")
        return value if isinstance(value, bytes) else str(value).encode()

    return StreamEntry(
        id=_text(entry_id),
        namespace=field(b"ns").decode(),
        task=field(b"t").decode(),
        experiment=field(b"x").decode(),
        payload=field(b"e"),
    )
