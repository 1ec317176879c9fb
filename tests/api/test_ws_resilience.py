"""What the stream guarantees when things go wrong: trimmed history, slow clients, replicas, Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import websockets
from api_support import ApiServer, StreamClient, task_object, unique
from autotuner.core.events import Event, EventType, TaskRef
from autotuner.core.stream import EventPublisher, SequenceGap, parse_stream_id
from autotuner.devtools.redis_server import RedisServer
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.waiting import wait_for

NS = "team-a"


def progress(task: TaskRef, seq: int, size: int = 0) -> Event:
    return Event(type=EventType.TASK_PROGRESS, task=task, seq=seq, data={"pad": "x" * size} if size else {})


async def test_since_older_than_the_trimmed_history_gets_resync_then_a_fresh_snapshot(
    api_factory: Callable[..., ApiServer], redis_client: aioredis.Redis, stream_key: str
) -> None:
    task = TaskRef(namespace=NS, name=unique("t"))
    api = api_factory(objects={"autotunetasks": [task_object(NS, task.name, phase="Succeeded")]})
    small = EventPublisher(redis_client, stream_key=stream_key, maxlen=10)
    first_id = await small.publish(progress(task, 1))
    for seq in range(2, 401):
        await small.publish(progress(task, seq))

    client = await StreamClient.open(f"{api.ws}/api/ws/tasks/{NS}/{task.name}?since={first_id}")
    resync = await client.expect("resync")
    snapshot = await client.expect("snapshot")
    await small.publish(progress(task, 401))
    after = [await client.expect("event")]
    while after[-1]["event"]["seq"] != 401:
        after.append(await client.expect("event"))
    await client.close()
    assert resync["reason"] == "since_trimmed"
    assert snapshot["task"]["status"]["phase"] == "Succeeded"
    # Events after the snapshot's position follow it, in order and without repeats.
    seqs = [m["event"]["seq"] for m in after]
    assert seqs == list(range(seqs[0], 402))
    assert all(parse_stream_id(m["event"]["id"]) > parse_stream_id(snapshot["streamId"]) for m in after)


async def test_a_client_that_stops_reading_is_dropped_with_4008_and_server_memory_stays_bounded(
    api_factory: Callable[..., ApiServer], publisher: EventPublisher
) -> None:
    api = api_factory(
        env={
            "AUTOTUNER_QUEUE_SIZE": "64",
            "AUTOTUNER_STREAM_READ_COUNT": "16",
            "AUTOTUNER_SEND_TIMEOUT_SECONDS": "30",
        }
    )
    task = TaskRef(namespace=NS, name=unique("t"))
    url = f"{api.ws}/api/ws/tasks/{NS}/{task.name}"
    # max_queue=1: the client stops pulling from its socket once one message waits, like a stuck tab.
    stuck = [await websockets.connect(url, max_queue=1) for _ in range(4)]
    reader = await StreamClient.open(url)
    await reader.expect("snapshot")
    rss_before = api.rss_kib()

    healthy = asyncio.create_task(reader.events(1200, within=60))  # keeps up, so is never dropped
    for seq in range(1, 1201):  # 1200 x 16 KiB = 19 MiB per client, 75 MiB across the stuck ones
        await publisher.publish(progress(task, seq, size=16_384))
    assert [e["seq"] for e in await healthy] == list(range(1, 1201))
    rss_after = api.rss_kib()

    # Each stuck client, once it reads again, finds the buffered events and then the 4008 close.
    for connection in stuck:
        last_id = None
        with contextlib.suppress(websockets.ConnectionClosed):
            async with asyncio.timeout(30):
                while True:
                    message = await connection.recv()
                    if '"type":"event"' in message:
                        last_id = message.split('"id":"', 1)[1].split('"', 1)[0]
        assert connection.close_code == 4008, connection.close_reason
        assert "since=" in (connection.close_reason or "")
        assert last_id is not None
    _, metrics = api.get("/readyz")
    assert metrics["subscribers"] == 1, "dropped clients are unsubscribed"
    assert rss_after - rss_before < 40_000, f"RSS grew {rss_after - rss_before} KiB while clients were stuck"

    # A dropped client resumes from the last event it read and gets everything after it, once.
    resumed = await StreamClient.open(f"{url}?since={last_id}")
    await resumed.expect("resumed")
    rest = await resumed.events(1)
    await resumed.close()
    await reader.close()
    assert rest[0]["seq"] >= 2


async def test_two_replicas_deliver_the_same_events_and_a_killed_replicas_clients_resume_on_the_other(
    api_factory: Callable[..., ApiServer], publisher: EventPublisher
) -> None:
    env = {"AUTOTUNER_REPLICA_TTL_SECONDS": "3"}
    a, b = (
        api_factory(env={**env, "AUTOTUNER_REPLICA_ID": "a"}),
        api_factory(env={**env, "AUTOTUNER_REPLICA_ID": "b"}),
    )
    task = TaskRef(namespace=NS, name=unique("t"))
    path = f"/api/ws/tasks/{NS}/{task.name}"
    on_a, on_b = await StreamClient.open(a.ws + path), await StreamClient.open(b.ws + path)
    also_a = await StreamClient.open(a.ws + path)
    for client in (on_a, on_b, also_a):
        await client.expect("snapshot")

    async def counted_everywhere() -> dict[str, Any] | None:
        counted: dict[str, Any] = b.get(f"{path}/subscribers")[1]
        return counted if counted["total"] == 3 else None

    counted = await wait_for(counted_everywhere, within=5, what="3 subscribers counted across replicas")
    assert counted["replicas"] == {"a": 2, "b": 1} and counted["scope"] == "cluster"

    for seq in range(1, 51):
        await publisher.publish(progress(task, seq))
    seen_a, seen_b = await on_a.events(50), await on_b.events(50)
    assert [e["id"] for e in seen_a] == [e["id"] for e in seen_b]
    await also_a.events(50)

    a.kill()
    producing = asyncio.create_task(_publish_range(publisher, task, range(51, 151), pause=0.002))
    resumed = await StreamClient.open(f"{b.ws}{path}?since={seen_a[-1]['id']}")
    await resumed.expect("resumed")
    rest = await resumed.events(100)
    await producing
    assert [e["seq"] for e in seen_a + rest] == list(range(1, 151))

    async def killed_replica_forgotten() -> bool:
        return bool(b.get(f"{path}/subscribers")[1]["replicas"] == {"b": 2})

    await wait_for(killed_replica_forgotten, within=10, what="the killed replica to leave the count")
    for client in (on_a, also_a, on_b, resumed):
        client.drop()


async def _publish_range(publisher: EventPublisher, task: TaskRef, seqs: range, pause: float = 0.0) -> None:
    for seq in seqs:
        while True:
            try:
                await publisher.publish(progress(task, seq))
                break
            except (RedisConnectionError, OSError):
                await asyncio.sleep(0.05)  # Redis is away: the operator retries the same seq
            except SequenceGap as gap:
                # Redis came back without the high-water mark: continue from the operator's own count.
                assert gap.last == 0
                await publisher.rebase(task, seq - 1)
        if pause:
            await asyncio.sleep(pause)


async def _restart_under_load(
    persistent: bool, api_factory: Callable[..., ApiServer]
) -> list[dict[str, Any]]:
    redis = RedisServer(appendonly=persistent).start()
    key = unique("autotuner:test-restart")
    client = aioredis.Redis.from_url(redis.url, socket_connect_timeout=1, socket_timeout=2)
    try:
        task = TaskRef(namespace=NS, name=unique("t"))
        api = api_factory(
            redis_url=redis.url, stream_key=key, objects={"autotunetasks": [task_object(NS, task.name)]}
        )
        publisher = EventPublisher(client, stream_key=key)
        watcher = await StreamClient.open(f"{api.ws}/api/ws/tasks/{NS}/{task.name}")
        await watcher.expect("snapshot")
        producing = asyncio.create_task(_publish_range(publisher, task, range(1, 301), pause=0.005))
        await watcher.events(50)
        redis.stop()
        # Events published just before the stop may still be on their way: the status follows them.
        assert (await watcher.until("status"))["live"] is False
        assert api.get(f"/api/v1/namespaces/{NS}/tasks/{task.name}")[0] == 200, "REST works without Redis"
        redis.start()
        await producing
        deadline = time.monotonic() + 20
        while not any(m.get("type") == "event" and m["event"]["seq"] == 300 for m in watcher.messages):
            await watcher.next(max(0.01, deadline - time.monotonic()))
        await watcher.close()
        return watcher.messages
    finally:
        await client.aclose()
        redis.stop()


def _assert_no_unannounced_gap(messages: list[dict[str, Any]]) -> None:
    expected = 1
    for message in messages:
        if message["type"] == "snapshot":
            expected = None  # a snapshot replaces history: any seq may follow
        elif message["type"] == "event":
            seq = message["event"]["seq"]
            assert expected is None or seq == expected, f"seq {seq} after {expected - 1} without a resync"
            expected = seq + 1


async def test_redis_restarted_under_load_with_persistence_loses_nothing_and_says_when_live_again(
    api_factory: Callable[..., ApiServer],
) -> None:
    messages = await _restart_under_load(True, api_factory)
    statuses = [m["live"] for m in messages if m["type"] == "status"]
    assert statuses[:1] == [False] and statuses[-1] is True
    assert not any(m["type"] == "resync" for m in messages)
    assert [m["event"]["seq"] for m in messages if m["type"] == "event"] == list(range(1, 301))


async def test_redis_restarted_empty_under_load_is_announced_as_resync_never_a_silent_gap(
    api_factory: Callable[..., ApiServer],
) -> None:
    messages = await _restart_under_load(False, api_factory)
    assert any(m["type"] == "resync" for m in messages)
    _assert_no_unannounced_gap(messages)
    assert [m["live"] for m in messages if m["type"] == "status"][-1] is True
