"""Fixtures for the api tests: a publisher on a per-test stream key and real api processes."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).parent))  # api_support.py, imported by the test modules

from api_support import ApiServer, start_api, unique
from autotuner.core.stream import EventPublisher


@pytest.fixture
def stream_key() -> str:
    return unique("autotuner:test-events")


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def publisher(redis_client: aioredis.Redis, stream_key: str) -> EventPublisher:
    return EventPublisher(redis_client, stream_key=stream_key)


@pytest.fixture
def api_factory(redis_url: str, stream_key: str) -> Iterator[Callable[..., ApiServer]]:
    """Start api processes on the test's stream; all are stopped after the test."""
    started: list[ApiServer] = []

    def start(**kwargs: Any) -> ApiServer:
        kwargs.setdefault("stream_key", stream_key)
        server = start_api(kwargs.pop("redis_url", redis_url), **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
