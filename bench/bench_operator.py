"""Operator overhead: the gap from one experiment's end to the next one's creation, and the
operator's own CPU per experiment, at design scale (DESIGN.md §7: many tasks x 10 parallel).

Two modes, both against the real ``autotuner-operator`` subprocess on the local KWOK cluster:

- ``stub`` (operator overhead only): T tasks x P parallel experiments. No simulator or runner runs:
  the bench itself plays the kubelet for the tasks' pods through the same ``autotuner.io/exec-*``
  annotations the local executor writes (engine pod → ready at once; benchmark pod → completed with
  a stub runner result whose throughput is a hash of the experiment's name). The pods carry the
  executor's test hook ``autotuner.io/sim-fault: never-ready``, which tells every local executor
  not to run them. Engines request no GPUs (``AUTOTUNER_SIMULATOR_REQUESTS_GPUS=false``) so
  hundreds fit the cluster's four fake nodes. What remains is the operator plus the control plane
  (Deployment → ReplicaSet → Pod → scheduler → KWOK, Job controller) on this 2-core machine.
- ``executor``: one task with the local executor running the real simulator and runner, at
  parallelism 1 and 10 — the end-to-end figure, where simulators and runners compete for the cores.

Timings come from watch events received by this process (creationTimestamp has one-second
resolution): an experiment "ends" when the watch delivers its terminal status, and "is created"
when the watch delivers its ADDED event. For a task with parallelism P, the experiment with index
P + j fills the slot freed by the task's (j+1)-th end, so gap = its ADDED - that end. Both sides
carry the same watch delivery delay. Operator CPU comes from /proc/<pid>/stat.

    python bench/bench_operator.py [--quick] [--mode stub|executor|all]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autotuner.devtools.cluster import LocalCluster, apply_crds  # noqa: E402
from autotuner.devtools.executor import ExecutorOptions, LocalExecutor  # noqa: E402
from autotuner.devtools.ports import free_port  # noqa: E402
from autotuner.devtools.redis_server import RedisServer  # noqa: E402
from autotuner.operator.kube import EXPERIMENTS, PODS, TASKS, Kube, KubeError  # noqa: E402

TERMINAL = {"Succeeded", "Failed"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TIME_LIMIT = 170.0
"""Seconds one run may take before the bench gives up on it (each run must fit ``make bench``)."""


def task(name: str, parallelism: int, count: int, *, stub: bool) -> dict[str, Any]:
    """A simulator task; ``stub`` ones are bayesian (the costliest proposals) and keep Jobs briefly."""
    metadata: dict[str, Any] = {"name": name}
    if stub:
        metadata["annotations"] = {"autotuner.io/sim-fault": "never-ready"}
    return {
        "apiVersion": "autotuner.io/v1alpha1",
        "kind": "AutotuneTask",
        "metadata": metadata,
        "spec": {
            "model": {"name": "meta-llama/Llama-3.2-1B-Instruct"},
            "engine": {"runtime": "simulator", "args": {"time-scale": 0.01}},
            "searchSpace": [
                {"name": "max-running-requests", "min": 1, "max": 512, "integer": True},
                {"name": "mem-fraction-static", "min": 0.5, "max": 0.95},
            ],
            "objective": {"metric": "output_throughput"},
            "strategy": {"algorithm": "bayesian" if stub else "random", "seed": 1, "initialRandom": 5},
            "budget": {
                "maxExperiments": count,
                "parallelism": parallelism,
                "experimentTimeout": "5m",
                "maxFailedExperiments": count,
            },
            "benchmark": {
                "concurrency": [4],
                "scenarios": ["D(32,8)"],
                "maxRequests": 8,
                "warmup": 0,
                "jobRetention": "5s" if stub else "1h",
            },
        },
    }


def stub_result(experiment: str) -> str:
    """A runner result (its compact JSON contract) with a throughput derived from the name."""
    score = int.from_bytes(hashlib.sha256(experiment.encode()).digest()[:2], "big") / 65535
    metrics = {"output_throughput": 1000 + 9000 * score, "ttft_p90": 0.05, "tpot_mean": 0.01,
               "success_rate": 1.0, "error_count": 0.0}  # fmt: skip
    doc = {"version": 1, "tool": "builtin", "scenario": "D(32,8)", "metrics": metrics,
           "requests": 8, "duration": 0.1}  # fmt: skip
    return json.dumps(doc, separators=(",", ":"))


async def stub_kubelet(kube: Kube, namespace: str) -> None:
    """Mark the namespace's engine pods ready and complete its benchmark pods (see the module doc)."""
    done: set[str] = set()
    pending: set[asyncio.Task[None]] = set()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    async def annotate(pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        role = (meta.get("labels") or {}).get("autotuner.io/role")
        if role == "engine":
            values = {"autotuner.io/exec-state": "ready"}
        else:
            experiment = (meta.get("labels") or {}).get("autotuner.io/experiment", meta["name"])
            values = {"autotuner.io/exec-state": "completed", "autotuner.io/exec-exit-code": "0",
                      "autotuner.io/exec-reason": "Completed", "autotuner.io/exec-message": stub_result(experiment),
                      "autotuner.io/exec-started-at": now, "autotuner.io/exec-finished-at": now}  # fmt: skip
        with contextlib.suppress(KubeError):  # a pod deleted meanwhile needs nothing
            await kube.patch_merge(PODS, namespace, meta["name"], {"metadata": {"annotations": values}})

    while True:
        try:
            async for type_, pod in kube.watch(PODS, namespace, labels={"autotuner.io/local-exec": "true"}):
                meta = pod["metadata"]
                if type_ == "DELETED" or meta["uid"] in done or meta.get("deletionTimestamp"):
                    continue
                if (pod.get("status") or {}).get("phase") != "Running":
                    continue
                if (meta.get("annotations") or {}).get("autotuner.io/exec-state"):
                    continue
                done.add(meta["uid"])
                job = asyncio.create_task(annotate(pod))
                pending.add(job)
                job.add_done_callback(pending.discard)
        except KubeError:
            await asyncio.sleep(0.2)


@dataclass
class Timeline:
    """Watch-arrival times of experiment creations and ends, per task."""

    expected: int
    all_ended: asyncio.Event = field(default_factory=asyncio.Event)
    created: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    task_of: dict[str, str] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def follow(self, kube: Kube, namespace: str) -> None:
        while True:
            try:
                async for type_, e in kube.watch(EXPERIMENTS, namespace):
                    now = time.time()  # wall clock: compared with the operator's status timestamps
                    name = e["metadata"]["name"]
                    if type_ == "DELETED":
                        continue
                    self.created.setdefault(name, now)
                    self.task_of[name] = e["spec"]["taskRef"]["name"]
                    self.index[name] = int(e["spec"]["index"])
                    self.items[name] = e
                    if (e.get("status") or {}).get("phase") in TERMINAL:
                        self.ended.setdefault(name, now)
                        if len(self.ended) >= self.expected:
                            self.all_ended.set()
            except KubeError:
                await asyncio.sleep(0.2)

    def peak_alive(self) -> int:
        """Most experiments existing and not yet ended at one moment."""
        steps = sorted([(t, 1) for t in self.created.values()] + [(t, -1) for t in self.ended.values()])
        alive = peak = 0
        for _, step in steps:
            alive += step
            peak = max(peak, alive)
        return peak

    def gaps(self, parallelism: int) -> list[float]:
        out = []
        for task_name in set(self.task_of.values()):
            names = [n for n, t in self.task_of.items() if t == task_name]
            ends = sorted(self.ended[n] for n in names if n in self.ended)
            for name in names:
                j = self.index[name] - parallelism
                if j >= 0 and j < len(ends):
                    out.append(self.created[name] - ends[j])
        return out


def handler_passes(port: int) -> dict[str, tuple[float, float]]:
    """(seconds, count) per handler from the operator's /metrics (all outcomes)."""
    import urllib.request

    out = {"task_reconcile": (0.0, 0.0), "experiment_reconcile": (0.0, 0.0)}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        for suffix, slot in (("_sum{", 0), ("_count{", 1)):
            if line.startswith("autotuner_operator_handler_duration_seconds" + suffix):
                handler = line.split('handler="')[1].split('"')[0]
                if handler in out:
                    values = list(out[handler])
                    values[slot] += float(line.rsplit(" ", 1)[1])
                    out[handler] = (values[0], values[1])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) >= 2 else float("nan")


async def run(
    kube: Kube,
    kubeconfig: str,
    *,
    tasks: int,
    parallelism: int,
    count: int,
    stub: bool,
    extra_env: dict[str, str],
) -> dict[str, float]:
    namespace = f"bench-{secrets.token_hex(3)}"
    await kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    metrics_port = free_port()
    env = {**os.environ, "KUBECONFIG": kubeconfig, "AUTOTUNER_NAMESPACE": namespace,
           "AUTOTUNER_LOCAL_EXEC": "true", "AUTOTUNER_METRICS_PORT": str(metrics_port),
           "AUTOTUNER_METRICS_HOST": "127.0.0.1", **extra_env}  # fmt: skip
    if stub:
        env["AUTOTUNER_SIMULATOR_REQUESTS_GPUS"] = "false"
    # The operator's log of the latest run of each kind, for when a figure looks wrong.
    log_name = f"bench-operator-{'stub' if stub else 'executor'}-p{parallelism}.log"
    log = open(REPO / ".local" / log_name, "wb")  # noqa: ASYNC230, SIM115
    operator = subprocess.Popen([str(Path(sys.executable).parent / "autotuner-operator")], env=env,  # noqa: ASYNC220 - Popen only starts it
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    timeline = Timeline(expected=tasks * count)
    background = [asyncio.create_task(timeline.follow(kube, namespace))]
    if stub:
        background.append(asyncio.create_task(stub_kubelet(kube, namespace)))
    try:
        await asyncio.sleep(1.0)  # the operator's start-up, not part of any gap
        cpu_before = cpu_seconds(operator.pid)
        started = time.monotonic()
        for i in range(tasks):
            await kube.request(
                "POST", TASKS.path(namespace), body=task(f"t{i:03d}", parallelism, count, stub=stub)
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(timeline.all_ended.wait(), TIME_LIMIT)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(operator.pid) - cpu_before
        passes = await asyncio.to_thread(handler_passes, metrics_port)
        alive_peak = timeline.peak_alive()
    finally:
        for job in background:
            job.cancel()
        operator.terminate()
        try:
            operator.wait(15)
        except subprocess.TimeoutExpired:
            print(f"the operator did not stop within 15 s of SIGTERM (see .local/{log_name}); killed")
            operator.kill()
            operator.wait()
        log.close()
        await kube.request("DELETE", f"/api/v1/namespaces/{namespace}")
    gaps = timeline.gaps(parallelism)
    lifetimes, pickups, deploys, benches, overheads = [], [], [], [], []
    for name, e in timeline.items.items():
        st = e.get("status") or {}
        if name not in timeline.ended:
            continue
        lifetime = timeline.ended[name] - timeline.created[name]
        lifetimes.append(lifetime)
        if st.get("readyTime") and st.get("completionTime"):
            pickups.append(_t(st["startTime"]) - timeline.created[name])
            engine = _t(st["readyTime"]) - _t(st["startTime"])
            bench = _t(st["completionTime"]) - _t(st["benchmarkStartTime"])
            deploys.append(engine)
            benches.append(bench)
            overheads.append(lifetime - engine - bench)
    succeeded = sum(1 for e in timeline.items.values() if (e.get("status") or {}).get("phase") == "Succeeded")
    return {
        "tasks": tasks,
        "parallelism": parallelism,
        "experiments": len(timeline.ended),
        "succeeded": succeeded,
        "alive_peak": alive_peak,
        "elapsed": elapsed,
        "gap_median": _median(gaps),
        "gap_p90": _p90(gaps),
        "gap_max": max(gaps, default=float("nan")),
        "lifetime_median": _median(lifetimes),
        "pickup_median": _median(pickups),
        "deploy_median": _median(deploys),
        "bench_median": _median(benches),
        "overhead_median": _median(overheads),
        "cpu_per_experiment": cpu / max(1, len(timeline.ended)),
        "task_pass_ms": 1000 * passes["task_reconcile"][0] / max(1, passes["task_reconcile"][1]),
        "task_passes": passes["task_reconcile"][1] / max(1, len(timeline.ended)),
        "experiment_pass_ms": 1000
        * passes["experiment_reconcile"][0]
        / max(1, passes["experiment_reconcile"][1]),
        "experiment_passes": passes["experiment_reconcile"][1] / max(1, len(timeline.ended)),
        "cpu_share": cpu / elapsed,
    }


def _t(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (the whole bench in under 2 min)")
    parser.add_argument("--mode", choices=("stub", "executor", "all"), default="all")
    parser.add_argument("--tasks", type=int, help="stub mode: tasks (default 20, quick 10)")
    parser.add_argument(
        "--experiments", type=int, help="stub mode: experiments per task (default 30, quick 20)"
    )
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "operator.md"))
    parser.add_argument(
        "--operator-path",
        help="PYTHONPATH for the operator process only, to measure another version of it, e.g. "
        "`git archive HEAD operator/autotuner/operator | tar -x -C /tmp/old` then /tmp/old/operator",
    )
    args = parser.parse_args()
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        cluster = LocalCluster(REPO / ".local")
        cluster.up()
        kubeconfig = str(cluster.kubeconfig)
    apply_crds(kubeconfig)
    kube = await Kube.connect(kubeconfig)
    rows: list[tuple[str, dict[str, float]]] = []
    extra_env = {"PYTHONPATH": args.operator_path} if args.operator_path else {}
    # Events go to a real Redis, as in production: each pass publishes and trims its status outbox.
    redis = RedisServer().start()
    extra_env["REDIS_URL"] = redis.url
    try:
        if args.mode in ("stub", "all"):
            tasks = args.tasks or (10 if args.quick else 20)
            count = args.experiments or (15 if args.quick else 20)
            rows.append(("stub (operator only)",
                         await run(kube, kubeconfig, tasks=tasks, parallelism=10, count=count, stub=True,
                                   extra_env=extra_env)))  # fmt: skip
        if args.mode in ("executor", "all"):
            options = ExecutorOptions(time_scale=0.01, max_engines=12, max_benchmarks=4)
            async with LocalExecutor(kubeconfig, options=options):
                for parallelism, count in ((1, 4 if args.quick else 8), (10, 15 if args.quick else 30)):
                    rows.append(("executor (real sim + runner)",
                                 await run(kube, kubeconfig, tasks=1, parallelism=parallelism, count=count,
                                           stub=False, extra_env=extra_env)))  # fmt: skip
    finally:
        await kube.close()
        redis.stop()
    print(render(rows))
    output = Path(args.output)
    await asyncio.to_thread(output.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(output.write_text, "# Operator overhead\n\n" + render(rows) + NOTE)


NOTE = """

- gap: an experiment's end (its terminal status delivered by a watch) → the next experiment of the
  same task delivered as ADDED (DESIGN.md §7 target: median ≤ 0.5 s at 100 tasks x 10).
- created→Deploying: the operator's reaction to a new Experiment; Deploying→ready and benchmark: the
  engine start and the benchmark as the operator's status timestamps record them (in stub mode these
  are the control plane's Deployment/ReplicaSet/scheduler/KWOK and Job round trips); overhead: the
  rest of an experiment's lifetime (operator reactions plus status and watch delivery).
- operator CPU: the operator process's user+system seconds per experiment, and its share of one
  core over the run; passes and their mean duration from its /metrics.
- the operator publishes its events to a local redis-server (as in production).
- stub: no simulator or runner runs, the bench plays the kubelet (operator + control plane only);
  executor: the real simulator (time-scale 0.01) and runner run locally. Everything shares this
  machine's 2 cores with the API server, etcd, KWOK and the controllers.

`python bench/bench_operator.py [--quick]`
"""


def render(rows: list[tuple[str, dict[str, float]]]) -> str:
    lines = [
        "| mode | tasks x parallel | experiments (succeeded) | peak alive | run (s) | gap median (s) "
        "| gap p90 (s) | gap max (s) | lifetime median (s) | created→Deploying (s) | Deploying→ready (s) "
        "| benchmark (s) | overhead median (s) | operator CPU / exp (s) | operator CPU share "
        "| task passes / exp | task pass mean (ms) | experiment passes / exp | experiment pass mean (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in rows:
        lines.append(
            f"| {mode} | {r['tasks']:.0f} x {r['parallelism']:.0f} | {r['experiments']:.0f} ({r['succeeded']:.0f}) "
            f"| {r['alive_peak']:.0f} | {r['elapsed']:.0f} | {r['gap_median']:.3f} | {r['gap_p90']:.3f} "
            f"| {r['gap_max']:.3f} | {r['lifetime_median']:.2f} | {r['pickup_median']:.2f} "
            f"| {r['deploy_median']:.2f} | {r['bench_median']:.2f} | {r['overhead_median']:.3f} "
            f"| {r['cpu_per_experiment']:.3f} | {r['cpu_share']:.0%} | {r['task_passes']:.1f} "
            f"| {r['task_pass_ms']:.0f} | {r['experiment_passes']:.1f} | {r['experiment_pass_ms']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
