"""What the watch streams last said about each Experiment and the objects it owns.

Kopf already receives every watch event of Experiments, engine Deployments/Services/pods and
benchmark Jobs/pods (see :mod:`.main`); keeping their latest bodies here lets an experiment worker
decide "nothing to do" without a single API call. The cache is only ever used to *skip* work: a pass
whose decision would change anything re-reads the objects from the API server first and decides
again on what it read (:mod:`.experiment`), so a stale or incomplete cache can delay a transition
until the next watch event or timer, never cause a wrong one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from autotuner.operator.resources import LABEL_EXPERIMENT, LABEL_ROLE, LABEL_TASK, ROLE_ENGINE, job_name

Obj = dict[str, Any]
Key = tuple[str, str]
"""(namespace, experiment name)."""


def _rv(obj: Obj) -> int:
    # resourceVersions are opaque strings by contract but etcd's are increasing integers; when one is
    # not, the newest event simply wins.
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return -1


@dataclass
class Owned:
    """The objects of one Experiment, by kind."""

    deployment: Obj | None = None
    service: Obj | None = None
    job: Obj | None = None
    pods: dict[str, Obj] = field(default_factory=dict)

    def engine_pods(self) -> list[Obj]:
        return [p for p in self.pods.values() if p["metadata"]["labels"].get(LABEL_ROLE) == ROLE_ENGINE]

    def job_pods(self, experiment: str) -> list[Obj]:
        name = job_name(experiment)
        return [p for p in self.pods.values() if p["metadata"]["labels"].get("job-name") == name]


class WatchCache:
    """Latest Experiment bodies and owned objects, fed by watch events and by the operator's writes."""

    def __init__(self) -> None:
        self._tasks: dict[Key, Obj] = {}
        self._experiments: dict[Key, Obj] = {}
        self._owned: dict[Key, Owned] = {}

    def task(self, namespace: str, name: str) -> Obj | None:
        return self._tasks.get((namespace, name))

    def put_task(self, obj: Obj) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        known = self._tasks.get(key)
        if known is None or _rv(obj) >= _rv(known):
            self._tasks[key] = obj

    def forget_task(self, namespace: str, name: str) -> None:
        self._tasks.pop((namespace, name), None)

    def experiments_of(self, namespace: str, task: str) -> list[Obj]:
        """The cached Experiments labelled with ``task`` (complete only once a LIST seeded them)."""
        return [
            e
            for (ns, _), e in self._experiments.items()
            if ns == namespace and (e["metadata"].get("labels") or {}).get(LABEL_TASK) == task
        ]

    def __len__(self) -> int:
        return len(self._experiments)

    def experiment(self, namespace: str, name: str) -> Obj | None:
        return self._experiments.get((namespace, name))

    def put_experiment(self, obj: Obj) -> None:
        """Keep ``obj`` unless the cache already holds a newer version (a write's response can race
        with the watch event of an earlier one)."""
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        known = self._experiments.get(key)
        if known is None or _rv(obj) >= _rv(known):
            self._experiments[key] = obj

    def forget_experiment(self, namespace: str, name: str) -> None:
        self._experiments.pop((namespace, name), None)
        self._owned.pop((namespace, name), None)

    def owned(self, namespace: str, experiment: str) -> Owned:
        return self._owned.get((namespace, experiment)) or Owned()

    def put_owned(self, kind: str, obj: Obj, *, deleted: bool) -> None:
        """Record a Deployment, Service, Job or Pod event of an object labelled with its experiment."""
        meta = obj["metadata"]
        experiment = (meta.get("labels") or {}).get(LABEL_EXPERIMENT)
        if not experiment or kind not in ("deployment", "service", "job", "pod"):
            return
        owned = self._owned.setdefault((meta["namespace"], experiment), Owned())
        if kind == "pod":
            if deleted:
                owned.pods.pop(meta["name"], None)
            else:
                owned.pods[meta["name"]] = obj
            return
        current = getattr(owned, kind)
        if deleted:
            if current is not None and current["metadata"].get("uid") == meta.get("uid"):
                setattr(owned, kind, None)
        elif current is None or current["metadata"].get("uid") != meta.get("uid") or _rv(obj) >= _rv(current):
            setattr(owned, kind, obj)


class Expiring:
    """Values read through ``load(key)`` at most every ``ttl`` seconds per key (e.g. the largest GPU
    count a node offers, per GPU resource name: read once per experiment otherwise)."""

    def __init__(self, load: Callable[[str], Awaitable[int | None]], ttl: float) -> None:
        self._load = load
        self._ttl = ttl
        self._values: dict[str, tuple[float, int | None]] = {}

    async def get(self, key: str) -> int | None:
        at, value = self._values.get(key, (float("-inf"), None))
        if time.monotonic() - at > self._ttl:
            value = await self._load(key)
            self._values[key] = (time.monotonic(), value)
        return value
