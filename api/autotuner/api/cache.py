"""The cache REST and snapshots are served from: an interface, and the in-memory store behind it.

Production fills a :class:`MemoryCache` from a Kubernetes list-then-watch (:mod:`autotuner.api.kube`), so
any number of dashboards cost the API server one watch per kind, not one LIST per page view. Tests that
need no cluster inject a :class:`MemoryCache` they fill themselves.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

TASK_LABEL = "autotuner.io/task"
"""Label every Experiment carries with its task's name."""

Object = dict[str, Any]


class Kind(StrEnum):
    TASK = "autotunetasks"
    EXPERIMENT = "experiments"


class ResourceCache(Protocol):
    """Read side of the cache. Objects are Kubernetes JSON (``managedFields`` removed); callers must not
    mutate them."""

    @property
    def ready(self) -> bool:
        """True once the first full list of every kind has been loaded."""
        ...

    def list_tasks(self, namespace: str | None = None) -> list[Object]: ...

    def get_task(self, namespace: str, name: str) -> Object | None: ...

    def list_experiments(self, namespace: str | None = None, task: str | None = None) -> list[Object]: ...

    def get_experiment(self, namespace: str, name: str) -> Object | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def experiment_task(obj: Object) -> str | None:
    """The task an Experiment belongs to: its label, else ``spec.taskRef.name``."""
    labels = obj.get("metadata", {}).get("labels") or {}
    if name := labels.get(TASK_LABEL):
        return str(name)
    ref = (obj.get("spec") or {}).get("taskRef") or {}
    return str(ref["name"]) if ref.get("name") else None


def _key(obj: Object) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _slim(obj: Object) -> Object:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


class MemoryCache:
    """Objects by kind and (namespace, name). Single event loop: no locking needed."""

    def __init__(self, *, ready: bool = True) -> None:
        self._objects: dict[Kind, dict[tuple[str, str], Object]] = {kind: {} for kind in Kind}
        self._loaded: set[Kind] = set(Kind) if ready else set()

    @property
    def ready(self) -> bool:
        return self._loaded == set(Kind)

    def replace(self, kind: Kind, objects: list[Object]) -> None:
        """Load a full list (the "list" of list-then-watch)."""
        self._objects[kind] = {_key(obj): _slim(obj) for obj in objects}
        self._loaded.add(kind)

    def put(self, kind: Kind, obj: Object) -> None:
        self._objects[kind][_key(obj)] = _slim(obj)

    def delete(self, kind: Kind, obj: Object) -> None:
        self._objects[kind].pop(_key(obj), None)

    def list_tasks(self, namespace: str | None = None) -> list[Object]:
        return self._list(Kind.TASK, namespace)

    def get_task(self, namespace: str, name: str) -> Object | None:
        return self._objects[Kind.TASK].get((namespace, name))

    def list_experiments(self, namespace: str | None = None, task: str | None = None) -> list[Object]:
        found = self._list(Kind.EXPERIMENT, namespace)
        return found if task is None else [obj for obj in found if experiment_task(obj) == task]

    def get_experiment(self, namespace: str, name: str) -> Object | None:
        return self._objects[Kind.EXPERIMENT].get((namespace, name))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def _list(self, kind: Kind, namespace: str | None) -> list[Object]:
        items = self._objects[kind]
        keys = sorted(k for k in items if namespace is None or k[0] == namespace)
        return [items[k] for k in keys]
