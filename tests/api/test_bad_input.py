"""Bad input gets a clear error or close code, never a 500 or a crash."""

from __future__ import annotations

import random
import string
import urllib.parse
from collections.abc import Iterator

import pytest
import websockets
from api_support import ApiServer, StreamClient, close_code, start_api, unique


@pytest.fixture(scope="module")
def api(redis_url: str) -> Iterator[ApiServer]:
    server = start_api(redis_url, stream_key=unique("autotuner:test-bad"))
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("path", "code", "reason"),
    [
        ("/api/ws/tasks/Team-A/t", 4400, "invalid namespace"),
        ("/api/ws/tasks/a/" + "x" * 300, 4400, "invalid name"),
        ("/api/ws/tasks/a/under_score", 4400, "invalid name"),
        ("/api/ws/namespaces/-a", 4400, "invalid namespace"),
        ("/api/ws/experiments/a/b%20c", 4400, "invalid name"),
        ("/api/ws/tasks/a/t?since=yesterday", 4400, "not a stream id"),
        ("/api/ws/tasks/a/t?since=", 4400, "not a stream id"),
        ("/api/ws/all?since=1-2-3", 4400, "not a stream id"),
        ("/api/ws/tasks/a", 4404, "no stream"),
        ("/api/ws/nothing/here", 4404, "no stream"),
        ("/not-api", 4404, "no stream"),
    ],
)
async def test_invalid_stream_requests_are_closed_with_a_documented_code(
    api: ApiServer, path: str, code: int, reason: str
) -> None:
    got_code, got_reason = await close_code(api.ws + path)
    assert got_code == code
    assert reason in got_reason


async def test_malformed_and_binary_frames_get_an_error_message_and_the_stream_continues(
    api: ApiServer,
) -> None:
    client = await StreamClient.open(f"{api.ws}/api/ws/tasks/a/t")
    await client.expect("snapshot")
    for frame in ("not json", "[1,2]", '{"type":"subscribe"}', b"\x00\x01"):
        await client.connection.send(frame)
        error = await client.expect("error")
        assert error["code"] == "bad_message"
    await client.connection.send('{"type":"ping"}')
    await client.expect("pong")
    await client.close()


async def test_an_oversize_frame_closes_the_stream_with_1009(api: ApiServer) -> None:
    async with websockets.connect(f"{api.ws}/api/ws/tasks/a/t", max_size=None) as connection:
        await connection.recv()
        await connection.send("x" * 200_000)
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await connection.recv()
        assert connection.close_code == 1009
    assert api.process.poll() is None


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/namespaces/Bad/tasks", 422),
        ("/api/v1/namespaces/a/tasks/Bad_Name", 422),
        ("/api/v1/namespaces/a/experiments/" + "y" * 260, 422),
        ("/api/v1/namespaces/a/tasks/missing", 404),
        ("/api/v1/nothing", 404),
        ("/api/ws/tasks/a/Bad/subscribers", 422),
    ],
)
def test_invalid_rest_requests_get_a_clear_4xx(api: ApiServer, path: str, status: int) -> None:
    got, body = api.get(path)
    assert got == status
    assert "detail" in body


async def _first_outcome(url: str) -> str | int:
    """The first message type of a stream, or its close code when it is refused."""
    import json

    async with websockets.connect(url, open_timeout=5) as connection:
        try:
            return str(json.loads(await connection.recv())["type"])
        except websockets.ConnectionClosed:
            assert connection.close_code is not None
            return connection.close_code


async def test_fuzzed_names_and_since_values_never_get_a_500_or_crash_the_server(api: ApiServer) -> None:
    rng = random.Random(5)
    alphabet = string.ascii_lowercase + string.digits + "-._~!$&'()*+,;=:@%A"
    for _ in range(60):
        name = urllib.parse.quote("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))), safe="")
        since = urllib.parse.quote("".join(rng.choice(string.printable) for _ in range(rng.randint(0, 24))))
        status, _ = api.get(f"/api/v1/namespaces/{name}/tasks/{name}")
        assert status in (404, 422), (name, status)
        outcome = await _first_outcome(f"{api.ws}/api/ws/tasks/{name}/{name}?since={since}")
        assert outcome in ("resumed", "resync", 4400, 4404), (name, since, outcome)
    assert api.process.poll() is None
    assert api.get("/healthz")[0] == 200
