"""Operator overhead per experiment and the gap from one experiment's end to the next one's creation.

Runs on the local KWOK cluster with the local executor (real simulator and runner) and the real
``autotuner-operator`` subprocess, at parallelism 1 and 10. Experiment appearances and ends are
observed by polling the API every 50 ms (creationTimestamp has only second resolution), so figures
carry ~50 ms of sampling error.

- gap: for each experiment created after the first ``parallelism``, its first sighting minus the
  sighting of the most recent experiment end before it (the slot it fills);
- overhead: an experiment's observed lifetime minus its engine start-up (operator's ``startTime`` →
  ``readyTime``) and its benchmark (``benchmarkStartTime`` → ``completionTime``): time spent in the
  operator's own reactions.

    python bench/bench_operator.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autotuner.devtools.cluster import LocalCluster, apply_crds  # noqa: E402
from autotuner.devtools.executor import ExecutorOptions, LocalExecutor  # noqa: E402
from autotuner.operator.kube import EXPERIMENTS, TASKS, Kube  # noqa: E402

TERMINAL = {"Succeeded", "Failed"}


def _t(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def task(name: str, parallelism: int, count: int) -> dict[str, Any]:
    return {
        "apiVersion": "autotuner.io/v1alpha1",
        "kind": "AutotuneTask",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "meta-llama/Llama-3.2-1B-Instruct"},
            "engine": {"runtime": "simulator", "args": {"time-scale": 0.01}},
            "searchSpace": [{"name": "max-running-requests", "min": 1, "max": 512, "integer": True}],
            "objective": {"metric": "output_throughput"},
            "strategy": {"algorithm": "random", "seed": 1},
            "budget": {"maxExperiments": count, "parallelism": parallelism, "experimentTimeout": "5m"},
            "benchmark": {"concurrency": [4], "scenarios": ["D(32,8)"], "maxRequests": 8, "warmup": 0},
        },
    }


async def run(kube: Kube, kubeconfig: str, parallelism: int, count: int) -> dict[str, float]:
    namespace = f"bench-{secrets.token_hex(3)}"
    await kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    env = {**os.environ, "KUBECONFIG": kubeconfig, "AUTOTUNER_NAMESPACE": namespace,
           "AUTOTUNER_LOCAL_EXEC": "true", "AUTOTUNER_METRICS_PORT": "0"}  # fmt: skip
    operator = subprocess.Popen([str(Path(sys.executable).parent / "autotuner-operator")], env=env,  # noqa: ASYNC220 - Popen only starts it
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    created: dict[str, float] = {}
    ended: dict[str, float] = {}
    try:
        await kube.request("POST", TASKS.path(namespace), body=task("bench", parallelism, count))
        deadline = time.monotonic() + 170
        while time.monotonic() < deadline:
            now = time.time()
            for e in await kube.list(EXPERIMENTS, namespace):
                name = e["metadata"]["name"]
                created.setdefault(name, now)
                if (e.get("status") or {}).get("phase") in TERMINAL:
                    ended.setdefault(name, now)
            if len(ended) == count:
                break
            await asyncio.sleep(0.05)
        items = {e["metadata"]["name"]: e for e in await kube.list(EXPERIMENTS, namespace)}
    finally:
        operator.terminate()
        operator.wait(15)
        await kube.request("DELETE", f"/api/v1/namespaces/{namespace}")
    order = sorted(created, key=created.__getitem__)
    gaps = []
    for name in order[parallelism:]:
        before = [t for t in ended.values() if t <= created[name]]
        if before:
            gaps.append(created[name] - max(before))
    overheads = []
    for name, e in items.items():
        s = e.get("status") or {}
        if name in ended and s.get("readyTime") and s.get("completionTime"):
            engine = _t(s["readyTime"]) - _t(s["startTime"])
            bench = _t(s["completionTime"]) - _t(s["benchmarkStartTime"])
            overheads.append(ended[name] - created[name] - engine - bench)
    return {
        "experiments": len(ended),
        "gap_median": statistics.median(gaps) if gaps else float("nan"),
        "gap_max": max(gaps) if gaps else float("nan"),
        "overhead_median": statistics.median(overheads) if overheads else float("nan"),
        "overhead_max": max(overheads) if overheads else float("nan"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer experiments")
    args = parser.parse_args()
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        cluster = LocalCluster(REPO / ".local")
        cluster.up()
        kubeconfig = str(cluster.kubeconfig)
    apply_crds(kubeconfig)
    kube = await Kube.connect(kubeconfig)
    rows = []
    options = ExecutorOptions(time_scale=0.01, max_engines=12, max_benchmarks=4)
    try:
        async with LocalExecutor(kubeconfig, options=options):
            for parallelism, count in ((1, 4 if args.quick else 8), (10, 15 if args.quick else 30)):
                rows.append((parallelism, await run(kube, kubeconfig, parallelism, count)))
    finally:
        await kube.close()
    lines = [
        "| parallelism | experiments | gap end→next created, median (s) | gap max (s) "
        "| operator overhead / experiment, median (s) | overhead max (s) |",
        "|---|---|---|---|---|---|",
    ]
    for p, r in rows:
        lines.append(f"| {p} | {r['experiments']:.0f} | {r['gap_median']:.3f} | {r['gap_max']:.3f} "
                     f"| {r['overhead_median']:.3f} | {r['overhead_max']:.3f} |")  # fmt: skip
    table = "\n".join(lines)
    note = ("\n\nLocal KWOK cluster, simulator at time-scale 0.01, API polled every 50 ms; "
            "the operator shares 2 cores with the executor's simulators and runners.\n")  # fmt: skip
    print(table)
    (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (REPO / "bench" / "results" / "operator.md").write_text("# Operator overhead\n\n" + table + note)


if __name__ == "__main__":
    asyncio.run(main())
