"""The stream a dashboard relies on: snapshot first, then every event in order, resumable with since."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio as aioredis
import websockets
from api_support import ApiServer, StreamClient, experiment_object, start_api, task_object, unique
from autotuner.core.events import Event, EventType, TaskRef
from autotuner.core.stream import EventPublisher

from tests.waiting import wait_for

NS = "team-a"
KNOWN_TASK = "llama-throughput"


@pytest.fixture(scope="module")
def shared_key() -> str:
    return unique("autotuner:test-shared")


@pytest.fixture(scope="module")
def api(redis_url: str, shared_key: str) -> Iterator[ApiServer]:
    objects = {
        "autotunetasks": [task_object(NS, KNOWN_TASK), task_object("team-b", "other")],
        "experiments": [
            experiment_object(NS, KNOWN_TASK, f"{KNOWN_TASK}-0"),
            experiment_object(NS, KNOWN_TASK, f"{KNOWN_TASK}-1"),
            experiment_object("team-b", "other", "other-0"),
        ],
    }
    server = start_api(
        redis_url, stream_key=shared_key, objects=objects, env={"AUTOTUNER_HEARTBEAT_SECONDS": "0.5"}
    )
    yield server
    server.stop()


@pytest.fixture
async def pub(redis_url: str, shared_key: str) -> AsyncIterator[EventPublisher]:
    client = aioredis.Redis.from_url(redis_url)
    yield EventPublisher(client, stream_key=shared_key)
    await client.aclose()


async def publish(
    pub: EventPublisher, task: TaskRef, seqs: range, experiment: str | None = None
) -> list[str]:
    ids = []
    for seq in seqs:
        kind = EventType.BENCHMARK_STARTED if experiment else EventType.TASK_PROGRESS
        stored = await pub.publish(
            Event(type=kind, task=task, seq=seq, experiment=experiment, message=str(seq))
        )
        assert stored is not None
        ids.append(stored)
    return ids


async def test_a_late_joiner_gets_a_snapshot_of_the_task_and_its_experiments_first(api: ApiServer) -> None:
    client = await StreamClient.open(f"{api.ws}/api/ws/tasks/{NS}/{KNOWN_TASK}")
    snapshot = await client.expect("snapshot")
    await client.close()
    assert snapshot["task"]["metadata"]["name"] == KNOWN_TASK
    assert snapshot["task"]["status"]["phase"] == "Running"
    assert [e["metadata"]["name"] for e in snapshot["experiments"]] == [f"{KNOWN_TASK}-0", f"{KNOWN_TASK}-1"]
    assert snapshot["live"] is True and snapshot["streamId"]


async def test_events_arrive_in_publish_order_with_their_ids(api: ApiServer, pub: EventPublisher) -> None:
    task = TaskRef(namespace=NS, name=unique("t"))
    client = await StreamClient.open(f"{api.ws}/api/ws/tasks/{task.namespace}/{task.name}")
    await client.expect("snapshot")
    ids = await publish(pub, task, range(1, 201))
    events = await client.events(200)
    await client.close()
    assert [e["seq"] for e in events] == list(range(1, 201))
    assert [e["id"] for e in events] == ids
    assert events[0]["task"] == {"namespace": NS, "name": task.name}


async def test_resuming_with_since_misses_nothing_and_repeats_nothing(
    api: ApiServer, pub: EventPublisher
) -> None:
    task = TaskRef(namespace=NS, name=unique("t"))
    url = f"{api.ws}/api/ws/tasks/{task.namespace}/{task.name}"
    first = await StreamClient.open(url)
    await first.expect("snapshot")
    await publish(pub, task, range(1, 51))
    seen = await first.events(20)
    first.drop()  # disconnect in the middle; publishing goes on meanwhile
    await publish(pub, task, range(51, 101))

    second = await StreamClient.open(f"{url}?since={seen[-1]['id']}")
    resumed = await second.expect("resumed")
    assert resumed["since"] == seen[-1]["id"]
    rest = await second.events(80)
    await publish(pub, task, range(101, 111))
    rest += await second.events(10)
    await second.close()
    assert [e["seq"] for e in seen + rest] == list(range(1, 111))


async def test_an_experiment_stream_carries_only_that_experiments_events(
    api: ApiServer, pub: EventPublisher
) -> None:
    task = TaskRef(namespace=NS, name=unique("t"))
    client = await StreamClient.open(f"{api.ws}/api/ws/experiments/{NS}/{task.name}-1")
    snapshot = await client.expect("snapshot")
    assert snapshot["experiment"] is None  # not (yet) in the cache: the stream still works
    await publish(pub, task, range(1, 3), experiment=f"{task.name}-0")
    await publish(pub, task, range(3, 5), experiment=f"{task.name}-1")
    events = await client.events(2)
    await client.close()
    assert [(e["experiment"], e["seq"]) for e in events] == [(f"{task.name}-1", 3), (f"{task.name}-1", 4)]


async def test_a_namespace_stream_multiplexes_its_tasks_and_nothing_else(
    api: ApiServer, pub: EventPublisher
) -> None:
    mine = [TaskRef(namespace=NS, name=unique("t")) for _ in range(2)]
    theirs = TaskRef(namespace="team-b", name=unique("t"))
    client = await StreamClient.open(f"{api.ws}/api/ws/namespaces/{NS}")
    snapshot = await client.expect("snapshot")
    assert {t["metadata"]["namespace"] for t in snapshot["tasks"]} == {NS}
    await publish(pub, theirs, range(1, 3))
    await publish(pub, mine[0], range(1, 3))
    await publish(pub, mine[1], range(1, 3))
    events = await client.events(4)
    all_client = await StreamClient.open(f"{api.ws}/api/ws/all")
    all_snapshot = await all_client.expect("snapshot")
    await client.close()
    await all_client.close()
    assert [(e["task"]["name"], e["seq"]) for e in events] == [
        (mine[0].name, 1),
        (mine[0].name, 2),
        (mine[1].name, 1),
        (mine[1].name, 2),
    ]
    assert {t["metadata"]["namespace"] for t in all_snapshot["tasks"]} == {NS, "team-b"}


async def test_an_idle_stream_gets_heartbeats_and_pings_get_pongs(api: ApiServer) -> None:
    client = await StreamClient.open(f"{api.ws}/api/ws/tasks/{NS}/{unique('t')}")
    await client.expect("snapshot")
    assert (await client.next(5, skip=()))["type"] == "heartbeat"
    await client.connection.send('{"type":"ping"}')
    assert (await client.expect("pong"))["type"] == "pong"
    await client.close()


async def test_many_clients_on_one_task_all_see_the_same_events(api: ApiServer, pub: EventPublisher) -> None:
    task = TaskRef(namespace=NS, name=unique("t"))
    clients = [await StreamClient.open(f"{api.ws}/api/ws/tasks/{NS}/{task.name}") for _ in range(20)]
    for client in clients:
        await client.expect("snapshot")
    status, counted = api.get(f"/api/ws/tasks/{NS}/{task.name}/subscribers")
    assert status == 200 and counted["total"] == 20 and counted["scope"] == "cluster"
    ids = await publish(pub, task, range(1, 31))
    received = await asyncio.gather(*(client.events(30) for client in clients))
    for client in clients:
        await client.close()
    assert all([e["id"] for e in events] == ids for events in received)


async def test_rest_serves_tasks_and_experiments_from_the_cache(api: ApiServer) -> None:
    status, body = api.get("/api/v1/tasks")
    assert status == 200 and {t["metadata"]["name"] for t in body["items"]} == {KNOWN_TASK, "other"}
    status, body = api.get(f"/api/v1/namespaces/{NS}/tasks")
    assert [t["metadata"]["name"] for t in body["items"]] == [KNOWN_TASK]
    status, body = api.get(f"/api/v1/namespaces/{NS}/tasks/{KNOWN_TASK}")
    assert status == 200 and body["status"]["progress"] == "1/4"
    status, body = api.get(f"/api/v1/namespaces/{NS}/tasks/{KNOWN_TASK}/experiments")
    assert [e["metadata"]["name"] for e in body["items"]] == [f"{KNOWN_TASK}-0", f"{KNOWN_TASK}-1"]
    status, body = api.get(f"/api/v1/namespaces/{NS}/experiments/{KNOWN_TASK}-1")
    assert status == 200 and body["spec"]["taskRef"]["name"] == KNOWN_TASK
    assert api.get(f"/api/v1/namespaces/{NS}/tasks/missing")[0] == 404
    status, ready = api.get("/readyz")
    assert status == 200 and ready["cache"] and ready["redis"] and ready["live"]
    assert api.get("/openapi.json")[0] == 200


async def test_a_client_connecting_right_after_start_up_gets_a_live_snapshot_not_a_resync(
    api_factory: Callable[..., ApiServer], redis_client: aioredis.Redis
) -> None:
    # Redis answers nothing for a moment, as when it is busy or just started: the api's first read of
    # the stream position is still in flight when it starts up.
    await redis_client.execute_command("CLIENT", "PAUSE", 1500, "ALL")
    api = api_factory(objects={"autotunetasks": [task_object(NS, KNOWN_TASK)]})
    client = await StreamClient.open(f"{api.ws}/api/ws/tasks/{NS}/{KNOWN_TASK}")
    snapshot = await client.expect("snapshot")
    with contextlib.suppress(TimeoutError):  # nothing else may follow: no status, no resync
        await client.next(0.5)
    await client.close()
    assert snapshot["live"] is True and snapshot["streamId"] is not None
    assert [m["type"] for m in client.messages] == ["snapshot"]


async def test_a_client_whose_socket_stays_full_is_dropped_as_a_slow_consumer_after_the_send_timeout(
    api_factory: Callable[..., ApiServer], publisher: EventPublisher
) -> None:
    # The queue is large enough never to fill: only the blocked send can drop this client.
    api = api_factory(env={"AUTOTUNER_QUEUE_SIZE": "100000", "AUTOTUNER_SEND_TIMEOUT_SECONDS": "1"})
    task = TaskRef(namespace=NS, name=unique("t"))
    stuck = await websockets.connect(f"{api.ws}/api/ws/tasks/{NS}/{task.name}", max_queue=1)
    for seq in range(1, 301):  # 300 x 64 KiB: more than the socket buffers on both sides hold
        event = Event(type=EventType.TASK_PROGRESS, task=task, seq=seq, data={"pad": "x" * 65_536})
        await publisher.publish(event)

    async def dropped() -> bool:
        return not api.get("/readyz")[1]["subscribers"]

    await wait_for(dropped, within=15, what="the stuck client to be dropped")
    with contextlib.suppress(websockets.ConnectionClosed):
        async with asyncio.timeout(30):
            while True:
                await stuck.recv()
    _, metrics = api.get("/metrics")
    assert 'autotuner_api_ws_closed_total{code="4008"} 1.0' in metrics
    # The close frame gets through only if the client reads the full socket within 2 s; otherwise the
    # connection is cut (1006). Either way the client resumes with the last id it received.
    assert stuck.close_code in (4008, 1006)
