"""The Kubernetes objects an Experiment owns: the engine Deployment + Service and the benchmark Job.

Names are deterministic (engine = experiment name, Job = ``<experiment>-bench``) so that a restarted
operator finds what it created, and a create that meets 409 AlreadyExists is simply done.
"""

from __future__ import annotations

import math
from typing import Any, Final

from autotuner.core.crd.common import parse_duration
from autotuner.core.crd.experiment import ExperimentSpec
from autotuner.core.crd.task import Runtime
from autotuner.operator import engines
from autotuner.operator.settings import OperatorSettings

LABEL_TASK: Final = "autotuner.io/task"
LABEL_EXPERIMENT: Final = "autotuner.io/experiment"
LABEL_ROLE: Final = "autotuner.io/role"
LABEL_LOCAL_EXEC: Final = "autotuner.io/local-exec"
ROLE_ENGINE: Final = "engine"
ROLE_BENCHMARK: Final = "benchmark"
SIM_ANNOTATION_PREFIX: Final = "autotuner.io/sim-"
"""Annotations on an AutotuneTask with this prefix (e.g. ``autotuner.io/sim-fault: crash``) are copied to
its Experiments and, with local execution on, to their pod templates: the local executor's fault switches."""
ENGINE_CONTAINER: Final = "engine"
RUNNER_CONTAINER: Final = "runner"
TERMINATION_LOG: Final = "/dev/termination-log"

Obj = dict[str, Any]


def job_name(experiment: str) -> str:
    return f"{experiment}-bench"


def owner_reference(obj: Obj) -> Obj:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(experiment: Obj, spec: ExperimentSpec, role: str, settings: OperatorSettings) -> dict[str, str]:
    labels = {
        LABEL_TASK: spec.taskRef.name,
        LABEL_EXPERIMENT: experiment["metadata"]["name"],
        LABEL_ROLE: role,
    }
    if settings.local_exec:
        labels[LABEL_LOCAL_EXEC] = "true"
    return labels


def _pod_annotations(experiment: Obj, settings: OperatorSettings) -> dict[str, str]:
    if not settings.local_exec:
        return {}
    annotations: dict[str, str] = experiment["metadata"].get("annotations") or {}
    return {k: v for k, v in annotations.items() if k.startswith(SIM_ANNOTATION_PREFIX)}


def engine_port(spec: ExperimentSpec) -> int:
    return spec.engine.port or engines.runtime_info(spec.engine.runtime).default_port


def engine_args(spec: ExperimentSpec) -> dict[str, engines.Value]:
    """Fixed args, overridden by the tuned parameters, plus the served name."""
    args: dict[str, engines.Value] = {**spec.engine.args, **spec.parameters}
    if spec.model.servedName:
        args["served-model-name"] = spec.model.servedName
    return args


def engine_gpus(spec: ExperimentSpec) -> int:
    return engines.gpu_count(spec.engine.runtime, engine_args(spec), spec.engine.resources.gpusPerEngine)


def model_path(spec: ExperimentSpec) -> str:
    volume = spec.model.volume
    if volume is None or spec.model.name.startswith("/"):
        return spec.model.name
    return f"{volume.mountPath.rstrip('/')}/{spec.model.name}"


def engine_image(spec: ExperimentSpec, settings: OperatorSettings) -> str:
    if spec.engine.image:
        return spec.engine.image
    return {
        Runtime.SGLANG: settings.sglang_image,
        Runtime.VLLM: settings.vllm_image,
    }.get(spec.engine.runtime, settings.simulator_image)


def deployment(experiment: Obj, spec: ExperimentSpec, settings: OperatorSettings) -> Obj:
    name = experiment["metadata"]["name"]
    port = engine_port(spec)
    info = engines.runtime_info(spec.engine.runtime)
    labels = _labels(experiment, spec, ROLE_ENGINE, settings)
    gpus = engine_gpus(spec)
    limits: dict[str, str] = {}
    if gpus and (spec.engine.runtime != Runtime.SIMULATOR or settings.simulator_requests_gpus):
        limits[spec.engine.resources.gpuResourceName] = str(gpus)
    if spec.engine.resources.cpu:
        limits["cpu"] = spec.engine.resources.cpu
    if spec.engine.resources.memory:
        limits["memory"] = spec.engine.resources.memory
    volumes: list[Obj] = []
    mounts: list[Obj] = []
    if spec.model.volume is not None:
        v = spec.model.volume
        source: Obj = (
            {"persistentVolumeClaim": {"claimName": v.claimName, "readOnly": True}}
            if v.claimName
            else {"hostPath": {"path": v.hostPath, "type": "Directory"}}
        )
        volumes.append({"name": "model", **source})
        mount: Obj = {"name": "model", "mountPath": v.mountPath, "readOnly": True}
        if v.subPath:
            mount["subPath"] = v.subPath
        mounts.append(mount)
    if spec.engine.runtime != Runtime.SIMULATOR:
        # NCCL needs a large /dev/shm for tensor parallelism; the default 64 MiB crashes it.
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    container: Obj = {
        "name": ENGINE_CONTAINER,
        "image": engine_image(spec, settings),
        "command": engines.command(spec.engine.runtime, model_path(spec), port, engine_args(spec)),
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {
            "httpGet": {"path": info.health_path, "port": port},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "env": [e.to_k8s() for e in spec.engine.env],
        "resources": {"limits": limits, "requests": dict(limits)},
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: Obj = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": 30,
    }
    if spec.engine.nodeSelector:
        pod_spec["nodeSelector"] = spec.engine.nodeSelector
    if spec.engine.tolerations:
        pod_spec["tolerations"] = [t.to_k8s() for t in spec.engine.tolerations]
    if spec.engine.serviceAccountName:
        pod_spec["serviceAccountName"] = spec.engine.serviceAccountName
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _owned_metadata(experiment, name, labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {LABEL_EXPERIMENT: name, LABEL_ROLE: ROLE_ENGINE}},
            "template": {
                "metadata": {"labels": labels, "annotations": _pod_annotations(experiment, settings)},
                "spec": pod_spec,
            },
        },
    }


def service(experiment: Obj, spec: ExperimentSpec, settings: OperatorSettings) -> Obj:
    name = experiment["metadata"]["name"]
    port = engine_port(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": experiment["metadata"]["namespace"],
            "labels": _labels(experiment, spec, ROLE_ENGINE, settings),
            "ownerReferences": [owner_reference(experiment)],
        },
        "spec": {
            # Headless: one engine pod needs no load balancing, and a ClusterIP per experiment would
            # drain the cluster's service range (hundreds of experiments alive) and serialise every
            # create and delete on the IP allocator. DNS gives the ready pod's address.
            "clusterIP": "None",
            "selector": {LABEL_EXPERIMENT: name, LABEL_ROLE: ROLE_ENGINE},
            "ports": [{"name": "http", "port": port, "targetPort": port}],
        },
    }


def runner_args(experiment: Obj, spec: ExperimentSpec) -> list[str]:
    """The runner's command line: the benchmark spec, SLOs mapped to per-request goodput limits."""
    name = experiment["metadata"]["name"]
    namespace = experiment["metadata"]["namespace"]
    bench = spec.benchmark
    args = [
        "autotuner-runner",
        "--url", f"http://{name}.{namespace}.svc:{engine_port(spec)}",
        "--model", spec.model.servedName or model_path(spec),
        "--concurrency", ",".join(str(c) for c in bench.concurrency),
        "--scenario", bench.scenarios[0],
        "--max-requests", str(bench.maxRequests),
        "--warmup", str(bench.warmup),
        "--tool", str(bench.tool),
        "--endpoint", str(bench.endpoint),
        "--gpus", str(max(1, engine_gpus(spec))),
        "--termination-log", TERMINATION_LOG,
    ]  # fmt: skip
    if bench.maxDuration:
        args += ["--max-duration", f"{parse_duration(bench.maxDuration).total_seconds():g}"]
    for key, limit in request_slos(spec).items():
        args += ["--slo", f"{key}={limit:g}"]
    return args


def request_slos(spec: ExperimentSpec) -> dict[str, float]:
    """Per-request latency limits for goodput, from the SLOs with a max on a ttft/tpot/e2e metric
    (the tightest one per quantity): a request meets its SLOs when each of its latencies is within them."""
    limits: dict[str, float] = {}
    for slo in spec.slo:
        if slo.max is None:
            continue
        for key in ("ttft", "tpot", "e2e_latency"):
            if slo.metric.startswith(key + "_"):
                limits[key] = min(limits.get(key, math.inf), slo.max)
    return limits


def _owned_metadata(experiment: Obj, name: str, labels: dict[str, str]) -> Obj:
    """Metadata of an object the Experiment owns: deleting the Experiment deletes it (garbage collector)."""
    return {
        "name": name,
        "namespace": experiment["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(experiment)],
    }


def job(experiment: Obj, spec: ExperimentSpec, settings: OperatorSettings, *, deadline_seconds: int) -> Obj:
    name = job_name(experiment["metadata"]["name"])
    labels = _labels(experiment, spec, ROLE_BENCHMARK, settings)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _owned_metadata(experiment, name, labels),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, deadline_seconds),
            "ttlSecondsAfterFinished": int(parse_duration(spec.benchmark.jobRetention).total_seconds()),
            "template": {
                "metadata": {"labels": labels, "annotations": _pod_annotations(experiment, settings)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": RUNNER_CONTAINER,
                            "image": spec.benchmark.image or settings.runner_image,
                            "command": runner_args(experiment, spec),
                            "terminationMessagePath": TERMINATION_LOG,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "resources": {"requests": {"cpu": "1", "memory": "512Mi"}},
                        }
                    ],
                },
            },
        },
    }
