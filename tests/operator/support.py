"""Manifests and queries shared by the operator's end-to-end tests."""

from __future__ import annotations

import copy
from typing import Any

from autotuner.operator.kube import DEPLOYMENTS, EXPERIMENTS, JOBS, PODS, SERVICES, TASKS, Kube

from tests.waiting import wait_for

MODEL = "meta-llama/Llama-3.2-1B-Instruct"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def task_manifest(name: str, spec: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    """A small simulator task: fast engine (time-scale 0.01), a few requests per experiment."""
    base: dict[str, Any] = {
        "model": {"name": MODEL},
        "engine": {"runtime": "simulator", "args": {"time-scale": 0.01}, "readinessTimeout": "60s"},
        "searchSpace": [
            {"name": "max-running-requests", "values": [1, 2, 4, 8, 16]},
            {"name": "mem-fraction-static", "values": [0.8, 0.9]},
        ],
        "objective": {"metric": "output_throughput", "direction": "maximize"},
        "strategy": {"algorithm": "grid", "seed": 7},
        "budget": {
            "maxExperiments": 2,
            "parallelism": 1,
            "experimentTimeout": "2m",
            "maxFailedExperiments": 5,
        },
        "benchmark": {"concurrency": [8], "scenarios": ["D(64,16)"], "maxRequests": 12, "warmup": 0},
    }
    return {
        "apiVersion": "autotuner.io/v1alpha1",
        "kind": "AutotuneTask",
        "metadata": {"name": name, **metadata},
        "spec": merge(base, spec or {}),
    }


async def create_task(kube: Kube, namespace: str, manifest: dict[str, Any]) -> None:
    await kube.request("POST", TASKS.path(namespace), body=manifest)


async def get_task(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    task = await kube.get(TASKS, namespace, name)
    assert task is not None, f"task {namespace}/{name} is gone"
    return task


async def experiments(kube: Kube, namespace: str, task: str | None = None) -> list[dict[str, Any]]:
    items = await kube.list(EXPERIMENTS, namespace, labels={"autotuner.io/task": task} if task else None)
    return sorted(items, key=lambda e: int(e["spec"]["index"]))


async def wait_task_phase(
    kube: Kube, namespace: str, name: str, phases: set[str], within: float = 120
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        task = await get_task(kube, namespace, name)
        return task if (task.get("status") or {}).get("phase") in phases else None

    return await wait_for(check, within=within, what=f"task {name} to reach {sorted(phases)}")


async def engines_left(kube: Kube, namespace: str) -> list[str]:
    """Engine Deployments, Services and pods still in the namespace."""
    left = []
    for resource in (DEPLOYMENTS, SERVICES):
        left += [f"{resource.plural}/{o['metadata']['name']}" for o in await kube.list(resource, namespace)]
    pods = await kube.list(PODS, namespace, labels={"autotuner.io/role": "engine"})
    left += [f"pods/{p['metadata']['name']}" for p in pods if not p["metadata"].get("deletionTimestamp")]
    return left


async def jobs(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    return await kube.list(JOBS, namespace)
