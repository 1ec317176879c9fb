"""Cluster-wide subscriber counts: each replica writes its per-task counts to a Redis hash that expires
unless refreshed, and registers itself in a sorted set scored by that expiry, so a killed replica's
subscribers disappear from the count within ``ttl_seconds``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import redis.asyncio as aioredis
from autotuner.api.broadcaster import REDIS_DOWN, Broadcaster, StreamKind, Topic
from autotuner.api.observability import Metrics

log = logging.getLogger(__name__)

REPLICAS_KEY = "autotuner:api:replicas"
COUNTS_KEY_PREFIX = "autotuner:api:subscribers:"


def _field(topic: Topic) -> str:
    return f"{topic.namespace}/{topic.name}"


class Presence:
    """``ttl_seconds``: how long a replica's counts outlive its last refresh (refreshed every third)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        broadcaster: Broadcaster,
        metrics: Metrics,
        *,
        replica_id: str,
        ttl_seconds: float = 30.0,
    ) -> None:
        self._redis = redis
        self._broadcaster = broadcaster
        self._metrics = metrics
        self.replica_id = replica_id
        self._ttl = ttl_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self._redis.zrem(REPLICAS_KEY, self.replica_id)
            await self._redis.delete(COUNTS_KEY_PREFIX + self.replica_id)
        except REDIS_DOWN:
            pass

    async def refresh(self) -> None:
        counts = {
            _field(topic): n
            for topic, n in self._broadcaster.counts().items()
            if topic.kind is StreamKind.TASK
        }
        key = COUNTS_KEY_PREFIX + self.replica_id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if counts:
                pipe.hset(key, mapping=cast(Any, counts))
            pipe.expire(key, max(1, int(self._ttl)))
            pipe.zadd(REPLICAS_KEY, {self.replica_id: time.time() + self._ttl})
            pipe.zremrangebyscore(REPLICAS_KEY, "-inf", time.time())
            await pipe.execute()

    async def count(self, namespace: str, name: str) -> dict[str, int]:
        """Live subscribers of a task per live replica (this replica's figure is always current)."""
        replicas = [
            r.decode() if isinstance(r, bytes) else str(r)
            for r in await self._redis.zrangebyscore(REPLICAS_KEY, time.time(), "+inf")
        ]
        others = [r for r in replicas if r != self.replica_id]
        result = {self.replica_id: self._broadcaster.count(Topic(StreamKind.TASK, namespace, name))}
        if others:
            async with self._redis.pipeline(transaction=False) as pipe:
                for replica in others:
                    pipe.hget(COUNTS_KEY_PREFIX + replica, f"{namespace}/{name}")
                values = await pipe.execute()
            result.update({r: int(v) if v is not None else 0 for r, v in zip(others, values, strict=True)})
        return result

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN:
                self._metrics.redis_errors.labels("presence").inc()
            await asyncio.sleep(self._ttl / 3)
