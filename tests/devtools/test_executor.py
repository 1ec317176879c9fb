"""The local executor on the real local cluster: the real simulator and runner run for KWOK's pods."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from autotuner.devtools.executor import (
    FAULT_ANNOTATION,
    LOCAL_EXEC_LABEL,
    ROLE_LABEL,
    ExecutorOptions,
    LocalExecutor,
    NotAKwokClusterError,
)

from tests.devtools.conftest import Kube
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
BENCHMARK_ARGS = ["--concurrency", "1,4", "--scenario", "D(128,32)", "--max-requests", "8"]
OVERCOMMITTED = ["--mem-fraction-static", "0.1"]  # 15 GiB of weights cannot fit in 10% of an H100


def engine_deployment(name: str, *extra: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, LOCAL_EXEC_LABEL: "true", ROLE_LABEL: "engine"},
                    "annotations": annotations or {},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "image": "autotuner-sim:test",
                            "command": ["autotuner-sim", "--port", "8000", "--model", MODEL, *extra],
                            "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}},
                        }
                    ]
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 8000, "targetPort": 8000}]},
    }


def benchmark_job(name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {LOCAL_EXEC_LABEL: "true", ROLE_LABEL: "benchmark"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "runner",
                            "image": "autotuner-runner:test",
                            "command": ["autotuner-runner"],
                            "args": ["--url", url, "--model", MODEL, *BENCHMARK_ARGS],
                        }
                    ],
                },
            },
        },
    }


@asynccontextmanager
async def executor(kubeconfig: str, namespace: str, **options: Any) -> AsyncIterator[LocalExecutor]:
    async with LocalExecutor(
        kubeconfig, namespace=namespace, options=ExecutorOptions(time_scale=0.02, **options)
    ) as running:
        yield running


def condition(obj: dict[str, Any], kind: str) -> str | None:
    return next((c["status"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


async def pod_of(
    kube: Kube, namespace: str, selector: str, test: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        pods = (await kube.get("pods", "-n", namespace, "-l", selector))["items"]
        return next((p for p in pods if test(p)), None)

    return await wait_for(probe, within=30, what=f"a pod {selector} in the expected state")


def container(pod: dict[str, Any]) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = pod["status"].get("containerStatuses") or [{}]
    return statuses[0]


def running(pod: dict[str, Any]) -> bool:
    return bool(pod["status"].get("phase") == "Running")


def crash_looping(pod: dict[str, Any]) -> bool:
    return bool(container(pod).get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff")


async def available(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        deployment: dict[str, Any] = await kube.get("deployment", name, "-n", namespace)
        return deployment if condition(deployment, "Available") == "True" else None

    return await wait_for(probe, within=30, what=f"deployment {name} Available")


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        return await response.json()


async def test_engine_deployment_becomes_available_only_once_the_real_simulator_answers(
    kube: Kube, namespace: str, kubeconfig: str
) -> None:
    await kube.apply(namespace, engine_deployment("engine"))
    # KWOK alone starts the pod but nothing has answered its health endpoint yet.
    pod = await pod_of(kube, namespace, "app=engine", running)
    assert condition(pod, "Ready") == "False"
    assert condition(await kube.get("deployment", "engine", "-n", namespace), "Available") != "True"

    async with executor(kubeconfig, namespace) as local:
        await available(kube, namespace, "engine")
        pod = await pod_of(kube, namespace, "app=engine", running)
        url = pod["metadata"]["annotations"]["autotuner.io/exec-url"]
        assert local.engines == {(namespace, pod["metadata"]["name"]): url}
        models = await get_json(url + "/v1/models")
        assert models["data"][0]["owned_by"] == "autotuner-simulator"

        await kube.run("delete", "deployment", "engine", "-n", namespace)

        async def stopped() -> bool | None:
            return True if not local.engines else None

        await wait_for(stopped, within=30, what="the simulator of the deleted pod to stop")
        with pytest.raises(aiohttp.ClientConnectionError):
            await get_json(url + "/health")


async def test_benchmark_job_completes_with_the_runners_real_json_in_its_termination_message(
    kube: Kube, namespace: str, kubeconfig: str
) -> None:
    async with executor(kubeconfig, namespace):
        await kube.apply(namespace, engine_deployment("engine"), service("engine"))
        await available(kube, namespace, "engine")
        await kube.apply(namespace, benchmark_job("bench", f"http://engine.{namespace}.svc:8000"))

        pod = await pod_of(
            kube, namespace, "job-name=bench", lambda p: p["status"].get("phase") == "Succeeded"
        )
        terminated = container(pod)["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
        result = json.loads(terminated["message"])
        assert [level["concurrency"] for level in result["levels"]] == [1, 4]
        assert result["requests"] == 16
        assert result["metrics"]["success_rate"] == 1.0
        assert result["metrics"]["output_throughput"] > 0

        async def complete() -> bool | None:
            job = await kube.get("job", "bench", "-n", namespace)
            return True if condition(job, "Complete") == "True" else None

        await wait_for(complete, within=30, what="the Job to be Complete")


async def test_benchmark_against_a_service_without_a_ready_engine_fails_with_the_runners_errors(
    kube: Kube, namespace: str, kubeconfig: str
) -> None:
    async with executor(kubeconfig, namespace, endpoint_timeout=0.5):
        await kube.apply(namespace, benchmark_job("bench", f"http://missing.{namespace}.svc:8000"))

        pod = await pod_of(kube, namespace, "job-name=bench", lambda p: p["status"].get("phase") == "Failed")
        terminated = container(pod)["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (2, "Error")
        result = json.loads(terminated["message"])
        assert result["metrics"]["success_rate"] == 0.0
        assert result["errors"]["connection"] > 0


async def test_overcommitted_memory_fraction_crash_loops_with_the_simulators_oom_message(
    kube: Kube, namespace: str, kubeconfig: str
) -> None:
    async with executor(kubeconfig, namespace):
        await kube.apply(namespace, engine_deployment("engine", *OVERCOMMITTED))

        pod = await pod_of(kube, namespace, "app=engine", crash_looping)
        status = container(pod)
        terminated = status["lastState"]["terminated"]
        assert terminated["reason"] == "OOMKilled"
        assert terminated["exitCode"] == 1  # the simulator's real exit status
        assert "CUDA out of memory" in terminated["message"]
        assert status["restartCount"] >= 1
        assert status["ready"] is False
        assert condition(pod, "Ready") == "False"


@pytest.mark.parametrize(
    ("fault", "phase", "waiting", "terminated"),
    [
        ("crash", "Running", "CrashLoopBackOff", ("Error", 1)),
        ("oom", "Running", "CrashLoopBackOff", ("OOMKilled", 137)),
        ("image-pull", "Pending", "ImagePullBackOff", None),
    ],
)
async def test_fault_hook_gives_the_container_state_a_kubelet_would_report(
    kube: Kube,
    namespace: str,
    kubeconfig: str,
    fault: str,
    phase: str,
    waiting: str,
    terminated: tuple[str, int] | None,
) -> None:
    async with executor(kubeconfig, namespace) as local:
        await kube.apply(namespace, engine_deployment("engine", annotations={FAULT_ANNOTATION: fault}))

        def in_fault_state(pod: dict[str, Any]) -> bool:
            state = container(pod).get("state", {})
            return bool(
                pod["status"].get("phase") == phase and state.get("waiting", {}).get("reason") == waiting
            )

        pod = await pod_of(kube, namespace, "app=engine", in_fault_state)
        status = container(pod)
        assert status["ready"] is False
        if terminated is not None:
            last = status["lastState"]["terminated"]
            assert (last["reason"], last["exitCode"]) == terminated
            assert status["restartCount"] >= 1
        assert local.engines == {}  # hooks are played by KWOK stages; nothing ran


async def test_never_ready_hook_keeps_the_pod_running_but_not_ready_while_a_normal_engine_becomes_ready(
    kube: Kube, namespace: str, kubeconfig: str
) -> None:
    async with executor(kubeconfig, namespace) as local:
        await kube.apply(
            namespace,
            engine_deployment("stuck", annotations={FAULT_ANNOTATION: "never-ready"}),
            engine_deployment("healthy"),
        )
        await available(kube, namespace, "healthy")

        pod = await pod_of(kube, namespace, "app=stuck", running)
        assert condition(pod, "Ready") == "False"
        assert container(pod)["ready"] is False
        assert "running" in container(pod)["state"]
        assert [name for _, name in local.engines] == [
            (await pod_of(kube, namespace, "app=healthy", running))["metadata"]["name"]
        ]


async def test_restarted_executor_gives_engines_a_fresh_simulator_and_runs_pending_benchmarks(
    kube: Kube, namespace: str, kubeconfig: str
) -> None:
    async with executor(kubeconfig, namespace):
        await kube.apply(namespace, engine_deployment("engine"), service("engine"))
        await available(kube, namespace, "engine")
    first = (await pod_of(kube, namespace, "app=engine", running))["metadata"]["annotations"][
        "autotuner.io/exec-url"
    ]
    # The benchmark pod starts while no executor runs: nothing completes it.
    await kube.apply(namespace, benchmark_job("bench", f"http://engine.{namespace}.svc:8000"))
    await pod_of(kube, namespace, "job-name=bench", running)

    async with executor(kubeconfig, namespace):
        pod = await pod_of(
            kube, namespace, "job-name=bench", lambda p: p["status"].get("phase") == "Succeeded"
        )
        result = json.loads(container(pod)["state"]["terminated"]["message"])
        assert result["metrics"]["success_rate"] == 1.0
        engine = await pod_of(kube, namespace, "app=engine", running)
        assert engine["metadata"]["annotations"]["autotuner.io/exec-url"] != first


async def test_executor_refuses_a_cluster_with_a_node_that_is_not_a_kwok_node(
    kube: Kube, kubeconfig: str
) -> None:
    name = f"real-node-{secrets.token_hex(4)}"
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        # Tainted so that nothing of the other tests is scheduled there during its short life.
        "spec": {"taints": [{"key": "autotuner.io/test-only", "effect": "NoSchedule"}]},
    }
    await kube.run("apply", "-f", "-", input_=json.dumps(node))
    try:
        with pytest.raises(NotAKwokClusterError, match=name):
            async with LocalExecutor(kubeconfig):
                pass
    finally:
        await kube.run("delete", "node", name, "--wait=false")
