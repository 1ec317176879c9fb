"""The watch cache keeps the newest version of each object and never resurrects a deleted one."""

from __future__ import annotations

from typing import Any

from autotuner.operator.cache import Expiring, WatchCache


def _obj(name: str, rv: int, *, uid: str = "u1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(rv),
                         "labels": labels or {}}}  # fmt: skip


def test_older_experiment_version_does_not_replace_a_newer_one() -> None:
    cache = WatchCache()
    cache.put_experiment(_obj("t-0000", 7))
    cache.put_experiment(_obj("t-0000", 5))  # a write's response arriving after a later watch event
    assert cache.experiment("ns", "t-0000")["metadata"]["resourceVersion"] == "7"  # type: ignore[index]


def test_experiments_of_a_task_are_found_by_label_and_forgotten_on_delete() -> None:
    cache = WatchCache()
    cache.put_experiment(_obj("a-0000", 1, labels={"autotuner.io/task": "a"}))
    cache.put_experiment(_obj("b-0000", 2, labels={"autotuner.io/task": "b"}))
    assert [e["metadata"]["name"] for e in cache.experiments_of("ns", "a")] == ["a-0000"]
    cache.forget_experiment("ns", "a-0000")
    assert cache.experiments_of("ns", "a") == []


def test_owned_objects_are_indexed_by_their_experiment_label() -> None:
    cache = WatchCache()
    labels = {"autotuner.io/experiment": "t-0000", "autotuner.io/role": "engine"}
    cache.put_owned("deployment", _obj("t-0000", 3, labels=labels), deleted=False)
    cache.put_owned("pod", _obj("t-0000-abc", 4, labels=labels), deleted=False)
    job_pod = _obj("t-0000-bench-x", 5, labels={"autotuner.io/experiment": "t-0000", "job-name": "t-0000-bench",
                                                 "autotuner.io/role": "benchmark"})  # fmt: skip
    cache.put_owned("pod", job_pod, deleted=False)
    owned = cache.owned("ns", "t-0000")
    assert owned.deployment is not None
    assert [p["metadata"]["name"] for p in owned.engine_pods()] == ["t-0000-abc"]
    assert [p["metadata"]["name"] for p in owned.job_pods("t-0000")] == ["t-0000-bench-x"]


def test_deleting_an_old_incarnation_keeps_the_object_that_replaced_it() -> None:
    cache = WatchCache()
    labels = {"autotuner.io/experiment": "t-0000"}
    cache.put_owned("deployment", _obj("t-0000", 3, uid="old", labels=labels), deleted=False)
    cache.put_owned("deployment", _obj("t-0000", 9, uid="new", labels=labels), deleted=False)
    cache.put_owned("deployment", _obj("t-0000", 10, uid="old", labels=labels), deleted=True)
    assert cache.owned("ns", "t-0000").deployment["metadata"]["uid"] == "new"  # type: ignore[index]
    cache.put_owned("deployment", _obj("t-0000", 11, uid="new", labels=labels), deleted=True)
    assert cache.owned("ns", "t-0000").deployment is None


async def test_expiring_value_is_loaded_once_per_key_within_its_ttl() -> None:
    loads: list[str] = []

    async def load(key: str) -> int:
        loads.append(key)
        return 8

    nodes = Expiring(load, ttl=60)
    assert [
        await nodes.get("nvidia.com/gpu"),
        await nodes.get("nvidia.com/gpu"),
        await nodes.get("amd.com/gpu"),
    ] == [8, 8, 8]
    assert loads == ["nvidia.com/gpu", "amd.com/gpu"]
