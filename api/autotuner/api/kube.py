"""Kubernetes access: the API client, and the list-then-watch that fills the :class:`MemoryCache`."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from autotuner.api.cache import Kind, MemoryCache, Object
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

GROUP = "autotuner.io"
VERSION = "v1alpha1"

log = logging.getLogger(__name__)


async def load_api_client(kubeconfig: str | None) -> Any:
    """An ApiClient from ``kubeconfig``, or the in-cluster ServiceAccount when None."""
    configuration = client.Configuration()
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration=configuration)


class KubeCache(MemoryCache):
    """A :class:`MemoryCache` kept current by one list-then-watch per kind.

    ``namespace`` limits the watch to one namespace (None: cluster-wide); ``watch_seconds`` is the
    server-side watch timeout after which the watch is re-opened from the last resourceVersion;
    ``retry_max_seconds`` caps the backoff after an error. A 410 Gone (resourceVersion too old) relists.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        namespace: str | None = None,
        watch_seconds: int = 300,
        retry_max_seconds: float = 10.0,
    ) -> None:
        super().__init__(ready=False)
        self._api = client.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._watch_seconds = watch_seconds
        self._retry_max = retry_max_seconds
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(kind), name=f"watch-{kind}") for kind in Kind]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _fetch(self, kind: Kind) -> tuple[list[Object], str]:
        if self._namespace:
            result = await self._api.list_namespaced_custom_object(
                GROUP, VERSION, self._namespace, kind.value
            )
        else:
            result = await self._api.list_cluster_custom_object(GROUP, VERSION, kind.value)
        return list(result.get("items", [])), str(result["metadata"]["resourceVersion"])

    async def _run(self, kind: Kind) -> None:
        delay = 0.5
        while True:
            try:
                items, version = await self._fetch(kind)
                self.replace(kind, items)
                log.info("cache listed", extra={"kind": kind.value, "count": len(items)})
                delay = 0.5
                while True:
                    version = await self._watch(kind, version)
            except asyncio.CancelledError:
                raise
            except ApiException as error:
                if error.status == 410:
                    log.info("cache watch expired, relisting", extra={"kind": kind.value})
                    continue
                log.warning("cache watch failed", extra={"kind": kind.value, "error": str(error)})
            except Exception as error:  # a dropped connection must not end the watch for good
                log.warning("cache watch failed", extra={"kind": kind.value, "error": repr(error)})
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._retry_max)

    async def _watch(self, kind: Kind, version: str) -> str:
        """Apply watch events from ``version`` until the server ends the watch; return the last version."""
        if self._namespace:
            func: Any = self._api.list_namespaced_custom_object
            args: tuple[str, ...] = (GROUP, VERSION, self._namespace, kind.value)
        else:
            func, args = self._api.list_cluster_custom_object, (GROUP, VERSION, kind.value)
        stream = watch.Watch()
        async with stream.stream(
            func,
            *args,
            resource_version=version,
            timeout_seconds=self._watch_seconds,
            allow_watch_bookmarks=True,
        ) as events:
            async for event in events:
                obj: Object = event["raw_object"]
                kind_of_event = event["type"]
                if kind_of_event in ("ADDED", "MODIFIED"):
                    self.put(kind, obj)
                elif kind_of_event == "DELETED":
                    self.delete(kind, obj)
                version = str(obj.get("metadata", {}).get("resourceVersion") or version)
        return version
