"""The FastAPI application: clients are created in the lifespan and handed to handlers as state."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from autotuner.api import rest, ws
from autotuner.api.auth import Authenticator, KubernetesAuth, NoAuth, TokenAuth
from autotuner.api.broadcaster import REDIS_DOWN, Broadcaster
from autotuner.api.cache import ResourceCache
from autotuner.api.observability import Metrics
from autotuner.api.presence import Presence
from autotuner.api.protocol import Services
from autotuner.api.settings import AuthMode, Settings
from autotuner.core.stream import StreamReader
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def create_app(
    settings: Settings,
    *,
    cache: ResourceCache | None = None,
    authenticator: Authenticator | None = None,
) -> FastAPI:
    """``cache``/``authenticator`` replace the Kubernetes-backed ones (tests, benches); by default both
    come from the cluster named by ``KUBECONFIG`` (or the pod's ServiceAccount)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = Metrics()
        redis = aioredis.Redis.from_url(
            settings.redis_url,
            decode_responses=False,
            # A blocking XREAD must not be taken for a dead connection.
            socket_timeout=settings.stream_block_ms / 1000 + 5,
            socket_connect_timeout=2,
            health_check_interval=10,
        )
        kube_client: Any | None = None
        needs_kube = cache is None or (authenticator is None and settings.auth is AuthMode.KUBERNETES)
        if needs_kube:
            from autotuner.api.kube import load_api_client

            kube_client = await load_api_client(settings.kubeconfig)
        resource_cache: ResourceCache
        if cache is not None:
            resource_cache = cache
        else:
            from autotuner.api.kube import KubeCache

            resource_cache = KubeCache(kube_client, namespace=settings.namespace)
        reader = StreamReader(
            redis,
            stream_key=settings.stream_key,
            block_ms=settings.stream_block_ms,
            count=settings.stream_read_count,
        )
        broadcaster = Broadcaster(
            reader,
            metrics,
            retry_max_seconds=settings.redis_retry_max_seconds,
            heartbeat_seconds=settings.heartbeat_seconds,
            send_timeout_seconds=settings.send_timeout_seconds,
        )
        presence = Presence(
            redis,
            broadcaster,
            metrics,
            replica_id=settings.replica_id or f"{socket.gethostname()}:{os.getpid()}",
            ttl_seconds=settings.replica_ttl_seconds,
        )
        app.state.services = Services(
            settings=settings,
            metrics=metrics,
            redis=redis,
            reader=reader,
            broadcaster=broadcaster,
            presence=presence,
            cache=resource_cache,
            authenticator=authenticator or _authenticator(settings, kube_client),
            kube_client=kube_client,
        )
        await resource_cache.start()
        await broadcaster.start()
        await presence.start()
        try:
            yield
        finally:
            await presence.stop()
            await broadcaster.stop()
            await resource_cache.stop()
            await redis.aclose()
            if kube_client is not None:
                await kube_client.close()

    app = FastAPI(
        title="autotuner api",
        version="v1alpha1",
        description="Snapshots and live event streams of AutotuneTasks and Experiments.",
        lifespan=lifespan,
    )
    app.include_router(rest.router)
    app.include_router(rest.ws_router)
    app.include_router(ws.router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is serving (no dependency checked)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> JSONResponse:
        """Ready when the resource cache is loaded. Redis down keeps the replica ready (REST still
        works) but is reported, so it shows in probes' output."""
        services: Services = request.app.state.services
        redis_ok = True
        try:
            await services.redis.ping()
        except REDIS_DOWN:
            redis_ok = False
        body = {
            "cache": services.cache.ready,
            "redis": redis_ok,
            "live": services.broadcaster.live,
            "subscribers": services.broadcaster.subscriber_count,
        }
        return JSONResponse(body, status_code=200 if services.cache.ready else 503)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics(request: Request) -> Response:
        services: Services = request.app.state.services
        return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_websocket_route("/{path:path}", ws.unknown_stream)
    if settings.static_dir is not None and settings.static_dir.is_dir():
        app.mount("/", StaticFiles(directory=settings.static_dir, html=True), name="dashboard")
    return app


def _authenticator(settings: Settings, kube_client: Any | None) -> Authenticator:
    if settings.auth is AuthMode.TOKEN:
        return TokenAuth(settings.api_token or "")
    if settings.auth is AuthMode.KUBERNETES:
        return KubernetesAuth(kube_client, cache_seconds=settings.auth_cache_seconds)
    return NoAuth()
