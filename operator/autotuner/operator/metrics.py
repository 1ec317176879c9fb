"""Prometheus metrics of the operator: per-handler duration and outcome, experiments created, tasks by phase."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

P = ParamSpec("P")
T = TypeVar("T")


class OperatorMetrics:
    """The operator's metrics in their own registry (several operators can live in one test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.handler_seconds = Histogram(
            "autotuner_operator_handler_duration_seconds",
            "Duration of one handler call or reconcile pass.",
            ["handler", "outcome"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.experiments_created = Counter(
            "autotuner_operator_experiments_created_total", "Experiments created.", registry=self.registry
        )
        self.tasks = Gauge(
            "autotuner_operator_tasks", "AutotuneTasks by phase.", ["phase"], registry=self.registry
        )
        self._task_phases: dict[str, str] = {}

    def serve(self, host: str, port: int) -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)

    def set_task_phase(self, key: str, phase: str | None) -> None:
        """Record ``key``'s phase (None: the task is gone) and refresh the gauge."""
        if phase is None:
            self._task_phases.pop(key, None)
        else:
            self._task_phases[key] = phase
        counts: dict[str, int] = {}
        for value in self._task_phases.values():
            counts[value] = counts.get(value, 0) + 1
        for phase_name in ("Pending", "Running", "Suspended", "Succeeded", "Failed"):
            self.tasks.labels(phase=phase_name).set(counts.get(phase_name, 0))

    def track(self, handler: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
        """Decorator: time an async handler, labelled with its outcome (ok or the exception's class)."""

        def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                started = time.perf_counter()
                outcome = "ok"
                try:
                    return await fn(*args, **kwargs)
                except BaseException as error:
                    outcome = type(error).__name__
                    raise
                finally:
                    self.handler_seconds.labels(handler=handler, outcome=outcome).observe(
                        time.perf_counter() - started
                    )

            wrapper.__name__ = getattr(fn, "__name__", handler)
            wrapper.__doc__ = fn.__doc__
            return wrapper

        return decorate
