"""A thin async Kubernetes client over plain JSON (dicts in, dicts out).

The generated kubernetes_asyncio API classes deserialize into models the operator would immediately turn
back into dicts; this reuses only its configuration loading and HTTP transport.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.client.rest import RESTClientObject

GROUP = "autotuner.io"
VERSION = "v1alpha1"

Obj = dict[str, Any]


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class Resource:
    """One kind's URL layout: ``Resource("apps/v1", "deployments")``, ``Resource("v1", "pods")``."""

    def __init__(self, api_version: str, plural: str, *, namespaced: bool = True) -> None:
        self.api_version = api_version
        self.plural = plural
        self.namespaced = namespaced

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name)}"
        if sub:
            base += f"/{sub}"
        return base


TASKS = Resource(f"{GROUP}/{VERSION}", "autotunetasks")
EXPERIMENTS = Resource(f"{GROUP}/{VERSION}", "experiments")
DEPLOYMENTS = Resource("apps/v1", "deployments")
SERVICES = Resource("v1", "services")
PODS = Resource("v1", "pods")
JOBS = Resource("batch/v1", "jobs")
NODES = Resource("v1", "nodes", namespaced=False)
EVENTS = Resource("v1", "events")


class Kube:
    """JSON verbs against the API server. Build with :meth:`connect`; :meth:`close` at shutdown."""

    def __init__(self, configuration: Configuration) -> None:
        self._config = configuration
        self._rest = RESTClientObject(configuration)

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Kube:
        configuration = Configuration()
        if kubeconfig:
            await k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except k8s_config.ConfigException:
                await k8s_config.load_kube_config(client_configuration=configuration)
        return cls(configuration)

    async def close(self) -> None:
        await self._rest.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        auth = await self._config.auth_settings()
        for setting in auth.values():
            headers[setting["key"]] = setting["value"]
        try:
            response = await self._rest.request(
                method,
                str(self._config.host) + path,
                query_params=dict(query) if query else None,
                headers=headers,
                body=body,
                _request_timeout=30,
            )
        except ApiException as error:
            raise KubeError(error.status or 0, _message(error.body) or str(error.reason)) from None
        except OSError as error:
            raise KubeError(0, str(error)) from error
        data: Any = response.data
        result: Obj = json.loads(data) if data else {}
        return result

    async def get(self, resource: Resource, namespace: str | None, name: str) -> Obj | None:
        try:
            return await self.request("GET", resource.path(namespace, name))
        except KubeError as error:
            if error.not_found:
                return None
            raise

    async def list(
        self, resource: Resource, namespace: str | None, *, labels: Mapping[str, str] | None = None
    ) -> list[Obj]:
        query = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        items: list[Obj] = (await self.request("GET", resource.path(namespace), query=query)).get("items", [])
        return items

    async def watch(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        labels: Mapping[str, str] | None = None,
        resource_version: str = "",
        timeout_seconds: int = 300,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """(type, object) per watch event until the server closes the stream after ``timeout_seconds``.

        Starts from ``resource_version`` ("" = the current state as ADDED events, then changes).
        A 410 Gone (history compacted) ends with a :class:`KubeError` of status 410: list again."""
        query = {"watch": "true", "timeoutSeconds": str(timeout_seconds), "allowWatchBookmarks": "false"}
        if resource_version:
            query["resourceVersion"] = resource_version
        if labels:
            query["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        headers = {"Accept": "application/json"}
        for setting in (await self._config.auth_settings()).values():
            headers[setting["key"]] = setting["value"]
        try:
            response = await self._rest.request(
                "GET",
                str(self._config.host) + resource.path(namespace),
                query_params=query,
                headers=headers,
                _preload_content=False,
                _request_timeout=timeout_seconds + 30,
            )
        except OSError as error:
            raise KubeError(0, str(error)) from error
        async with response:
            if response.status != 200:
                raise KubeError(response.status, _message(await response.read()))
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubeError(int(status.get("code") or 0), str(status.get("message", "")))
                yield str(event["type"]), event["object"]

    async def create(self, resource: Resource, namespace: str | None, body: Obj) -> Obj | None:
        """Create; ``None`` when an object of that name already exists (creates are idempotent)."""
        try:
            return await self.request("POST", resource.path(namespace), body=body)
        except KubeError as error:
            if error.conflict:
                return None
            raise

    async def patch_merge(
        self, resource: Resource, namespace: str | None, name: str, body: Obj, *, sub: str | None = None
    ) -> Obj:
        """JSON merge patch; include ``metadata.resourceVersion`` in ``body`` for an optimistic lock (409)."""
        return await self.request(
            "PATCH",
            resource.path(namespace, name, sub),
            body=body,
            content_type="application/merge-patch+json",
        )

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """Delete in the background (dependents by the GC); False when it was already gone."""
        try:
            await self.request(
                "DELETE",
                resource.path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except KubeError as error:
            if error.not_found:
                return False
            raise
        return True


def _message(body: Any) -> str:
    try:
        message = json.loads(body).get("message", "")
        return str(message)
    except (TypeError, ValueError, AttributeError):
        return str(body or "")
