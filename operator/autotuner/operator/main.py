"""Every Kopf decorator of the operator, in one place; the logic lives in plain modules.

- Watch events of AutotuneTasks and Experiments start (once) a worker per object and wake it; the
  worker runs reconcile passes until its object is settled (:mod:`.workers`, :mod:`.task`,
  :mod:`.experiment`). Each task has exactly one worker: the only writer of its status and events.
- Watch events of the objects an Experiment owns (engine Deployment and pods, benchmark Job) wake
  that Experiment's worker, so transitions are seen at once; timers in the workers are the fallback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any, cast

import kopf
import redis.asyncio as aioredis
from autotuner.core.crd.experiment import TERMINAL_PHASES
from autotuner.core.stream import EventPublisher
from autotuner.operator import experiment as experiment_logic
from autotuner.operator import task as task_logic
from autotuner.operator.cache import Expiring, WatchCache
from autotuner.operator.kube import EXPERIMENTS, GROUP, VERSION, Kube, KubeError
from autotuner.operator.metrics import OperatorMetrics
from autotuner.operator.resources import LABEL_EXPERIMENT, LABEL_ROLE, LABEL_TASK
from autotuner.operator.settings import OperatorSettings
from autotuner.operator.workers import Workers, sleep_or_wake

logger = logging.getLogger("autotuner.operator")

RETRY_DELAY = 1.0
"""Seconds before a worker retries a pass that failed on an API or Redis error."""
NODE_GPUS_TTL = 10.0
"""Seconds the largest node's GPU count is reused before the nodes are listed again."""


def _now() -> datetime:
    return datetime.now(UTC)


def _emit(settings: OperatorSettings) -> experiment_logic.EmitEvent:
    def emit(obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        if not settings.post_k8s_events:
            return
        try:
            kopf.event(cast(kopf.Body, obj), type=type_, reason=reason, message=message)
        except Exception:  # outside Kopf's context (tests) there is no event queue
            logger.debug("event not posted: %s %s", reason, message)

    return emit


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = OperatorSettings()
    memo.config = config
    memo.kube = await Kube.connect(config.kubeconfig)
    memo.redis = (
        aioredis.from_url(
            config.redis_url, socket_timeout=config.redis_timeout, socket_connect_timeout=config.redis_timeout
        )
        if config.redis_url
        else None
    )
    memo.publisher = EventPublisher(memo.redis) if memo.redis is not None else None
    memo.tasks = Workers()
    memo.experiments = Workers()
    memo.cache = WatchCache()
    memo.node_gpus = Expiring(
        lambda resource: experiment_logic.max_node_gpus(memo.kube, resource), NODE_GPUS_TTL
    )
    memo.task_writes = {}
    memo.metrics = OperatorMetrics()
    memo.metrics.serve(config.metrics_host, config.metrics_port)
    settings.posting.enabled = config.post_k8s_events
    # Only our explicit transition events: Kopf would otherwise post a Kubernetes Event per log line.
    settings.posting.level = logging.WARNING
    settings.peering.standalone = not config.peering
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="autotuner.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="autotuner.io")
    settings.watching.server_timeout = 300
    logger.info(
        "operator started: namespace=%s redis=%s local_exec=%s",
        config.namespace or "(all)",
        "yes" if config.redis_url else "no (events stay in status.outbox)",
        config.local_exec,
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.tasks.stop_all()
    await memo.experiments.stop_all()
    if memo.redis is not None:
        await memo.redis.aclose()
    await memo.kube.close()


def _task_loop(memo: kopf.Memo, namespace: str, name: str) -> Any:
    config: OperatorSettings = memo.config
    cache: WatchCache = memo.cache
    emit = _emit(config)
    track = memo.metrics.track("task_reconcile")
    reconcile = track(task_logic.reconcile)

    async def loop(wake: asyncio.Event) -> None:
        last_read = float("-inf")  # the first pass lists the task's Experiments: it seeds the cache
        while True:
            fresh = time.monotonic() - last_read >= config.resync_interval
            task = None if fresh else cache.task(namespace, name)
            observed = (task, cache.experiments_of(namespace, name)) if task is not None else None
            try:
                result = await reconcile(
                    memo.kube, namespace, name, config, memo.publisher, _now(), emit,
                    memo.metrics.experiments_created.inc, observed=observed, seen=cache.put_experiment,
                )  # fmt: skip
            except KubeError as error:
                if not error.conflict:
                    logger.warning("task %s/%s: %s; retrying", namespace, name, error)
                last_read = float("-inf")
                await sleep_or_wake(wake, 0 if error.conflict else RETRY_DELAY)
                continue
            if observed is None:
                last_read = time.monotonic()
            if result.written is not None:
                cache.put_task(result.written)
                memo.task_writes[(namespace, name)] = result.written["metadata"]["resourceVersion"]
            await sleep_or_wake(wake, config.task_interval * (12 if result.idle else 1))

    return loop


def _experiment_loop(memo: kopf.Memo, namespace: str, name: str) -> Any:
    config: OperatorSettings = memo.config
    emit = _emit(config)
    cache: WatchCache = memo.cache
    reconcile = memo.metrics.track("experiment_reconcile")(experiment_logic.reconcile)

    async def loop(wake: asyncio.Event) -> None:
        last_read = float("-inf")  # the worker's first pass reads everything from the API server
        while True:
            # A fresh read now and then heals a watch event Kopf missed; between them, passes decide
            # on the watch cache and read the API server only to confirm a change (see .cache).
            fresh = time.monotonic() - last_read >= config.resync_interval
            obj = None if fresh else cache.experiment(namespace, name)
            if obj is None:
                obj = await memo.kube.get(EXPERIMENTS, namespace, name)
                last_read = time.monotonic()
                fresh = True
                if obj is not None:
                    cache.put_experiment(obj)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return
            try:
                updated = await reconcile(memo.kube, obj, config, _now(), emit,
                                          cache=None if fresh else cache, node_gpus=memo.node_gpus.get)  # fmt: skip
            except KubeError as error:
                if not error.conflict:
                    logger.warning("experiment %s/%s: %s; retrying", namespace, name, error)
                last_read = float("-inf")
                await sleep_or_wake(wake, 0 if error.conflict else RETRY_DELAY)
                continue
            if updated is not obj:
                cache.put_experiment(updated)
                if (updated.get("status") or {}).get("phase") in TERMINAL_PHASES:
                    return  # this pass ended it, after deleting its engine
                continue  # it moved: look again at once
            if (updated.get("status") or {}).get("phase") in TERMINAL_PHASES:
                if fresh:
                    return  # settled: terminal and, as read from the API server, nothing left to clean up
                last_read = float("-inf")
                continue
            await sleep_or_wake(wake, config.experiment_interval)

    return loop


@kopf.on.event(GROUP, VERSION, "autotunetasks")
async def task_event(
    type: str,
    name: str,
    namespace: str | None,
    body: kopf.Body,
    event: kopf.RawEvent,
    status: kopf.Status,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    namespace = namespace or ""
    key = (namespace, name)
    memo.metrics.set_task_phase(f"{namespace}/{name}", None if type == "DELETED" else status.get("phase"))
    if type == "DELETED":
        memo.task_writes.pop(key, None)
        memo.cache.forget_task(namespace, name)
        await memo.tasks.stop(key)
        return
    memo.cache.put_task(cast(dict[str, Any], event["object"]))
    memo.tasks.ensure(key, _task_loop(memo, namespace, name))
    if body.metadata.get("resourceVersion") != memo.task_writes.get(key):
        memo.tasks.wake(key)  # not merely the echo of the worker's own status write


@kopf.on.event(GROUP, VERSION, "experiments")
async def experiment_event(
    type: str,
    name: str,
    namespace: str | None,
    labels: kopf.Labels,
    event: kopf.RawEvent,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    namespace = namespace or ""
    key = (namespace, name)
    if task := labels.get(LABEL_TASK):
        memo.tasks.wake((namespace, task))
    if type == "DELETED":
        memo.cache.forget_experiment(namespace, name)
        await memo.experiments.stop(key)
        return
    memo.cache.put_experiment(cast(dict[str, Any], event["object"]))
    memo.experiments.ensure(key, _experiment_loop(memo, namespace, name))
    memo.experiments.wake(key)


def _owned_event(kind: str, type: str, event: kopf.RawEvent, memo: kopf.Memo) -> None:
    obj = cast(dict[str, Any], event["object"])
    memo.cache.put_owned(kind, obj, deleted=type == "DELETED")
    meta = obj["metadata"]
    if experiment := (meta.get("labels") or {}).get(LABEL_EXPERIMENT):
        memo.experiments.wake((meta.get("namespace") or "", experiment))


OWNED = {LABEL_ROLE: kopf.PRESENT, LABEL_EXPERIMENT: kopf.PRESENT}


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
async def deployment_event(type: str, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _owned_event("deployment", type, event, memo)


@kopf.on.event("", "v1", "services", labels=OWNED)
async def service_event(type: str, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _owned_event("service", type, event, memo)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def job_event(type: str, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _owned_event("job", type, event, memo)


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def pod_event(type: str, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _owned_event("pod", type, event, memo)
