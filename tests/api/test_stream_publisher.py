"""The publisher the operator calls: idempotent by (task, seq), gaps refused, resume checks exact."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from api_support import unique
from autotuner.core.events import Event, EventType, TaskRef
from autotuner.core.stream import (
    EventPublisher,
    InvalidStreamId,
    ResumeCheck,
    SequenceGap,
    StreamReader,
    parse_stream_id,
)


def event(task: TaskRef, seq: int, experiment: str | None = None) -> Event:
    return Event(type=EventType.TASK_PROGRESS, task=task, seq=seq, experiment=experiment, message=f"#{seq}")


async def test_published_events_are_stored_in_seq_order_with_their_stream_ids(
    publisher: EventPublisher, redis_client: aioredis.Redis, stream_key: str
) -> None:
    task = TaskRef(namespace="ns", name=unique("t"))
    ids = [await publisher.publish(event(task, seq, experiment="x-1")) for seq in (1, 2, 3)]

    entries = await StreamReader(redis_client, stream_key=stream_key).history("0-0")
    assert [e.id for e in entries] == ids
    assert [e.event().seq for e in entries] == [1, 2, 3]
    assert entries[0].event().id == ids[0]
    assert (entries[0].namespace, entries[0].task, entries[0].experiment) == ("ns", task.name, "x-1")
    assert await publisher.last_seq(task) == 3


async def test_republishing_a_seq_is_ignored_and_returns_none(
    publisher: EventPublisher, redis_client: aioredis.Redis, stream_key: str
) -> None:
    task = TaskRef(namespace="ns", name=unique("t"))
    assert await publisher.publish(event(task, 1)) is not None
    assert await publisher.publish(event(task, 1)) is None
    assert await publisher.publish(event(task, 2)) is not None
    assert await publisher.publish(event(task, 1)) is None

    assert len(await StreamReader(redis_client, stream_key=stream_key).history("0-0")) == 2


async def test_skipping_a_seq_raises_sequence_gap_and_stores_nothing(
    publisher: EventPublisher, redis_client: aioredis.Redis, stream_key: str
) -> None:
    task = TaskRef(namespace="ns", name=unique("t"))
    await publisher.publish(event(task, 1))
    with pytest.raises(SequenceGap) as gap:
        await publisher.publish(event(task, 3))
    assert (gap.value.seq, gap.value.last) == (3, 1)
    assert len(await StreamReader(redis_client, stream_key=stream_key).history("0-0")) == 1


async def test_rebase_lets_a_task_continue_when_redis_has_no_mark_for_it(publisher: EventPublisher) -> None:
    task = TaskRef(namespace="ns", name=unique("t"))
    assert await publisher.rebase(task, 41)
    assert not await publisher.rebase(task, 7), "an existing mark must not be moved"
    assert await publisher.publish(event(task, 42)) is not None


async def test_resume_check_tells_complete_history_from_trimmed_and_unknown_ids(
    redis_client: aioredis.Redis, stream_key: str
) -> None:
    small = EventPublisher(redis_client, stream_key=stream_key, maxlen=10)
    reader = StreamReader(redis_client, stream_key=stream_key)
    task = TaskRef(namespace="ns", name=unique("t"))
    assert await reader.check_resume("0-0") is ResumeCheck.OK  # no stream yet: nothing missed
    ids = [await small.publish(event(task, seq)) for seq in range(1, 401)]
    info = await reader.info()
    assert info is not None and info.length < 400, "approximate MAXLEN trims whole nodes"

    assert await reader.check_resume("0-0") is ResumeCheck.TRIMMED
    assert await reader.check_resume(str(ids[0])) is ResumeCheck.TRIMMED
    assert await reader.check_resume(str(ids[-2])) is ResumeCheck.OK
    assert await reader.check_resume(str(ids[-1])) is ResumeCheck.OK
    ms, _ = parse_stream_id(str(ids[-1]))
    assert await reader.check_resume(f"{ms + 1000}-0") is ResumeCheck.UNKNOWN


@pytest.mark.parametrize(
    "value", ["", "abc", "1-", "-1", "1-2-3", "1.5", "99999999999999999999999-0", "1 -2"]
)
def test_malformed_stream_ids_are_rejected_with_a_clear_error(value: str) -> None:
    with pytest.raises(InvalidStreamId, match="stream id"):
        parse_stream_id(value)


def test_event_message_carries_the_stream_id_and_the_full_event() -> None:
    import orjson
    from autotuner.core.stream import StreamEntry, serialize_event

    original = event(TaskRef(namespace="a", name="b"), 5, experiment="b-3")
    entry = StreamEntry(
        id="17-4", namespace="a", task="b", experiment="b-3", payload=serialize_event(original)
    )
    message = orjson.loads(entry.event_message())
    assert message["type"] == "event"
    assert Event.model_validate(message["event"]) == original.model_copy(update={"id": "17-4"})
