"""The operator's Prometheus endpoint, scraped after a task ran through the real operator process."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest
from autotuner.devtools.ports import free_port
from autotuner.operator.kube import Kube
from prometheus_client.parser import text_string_to_metric_families

from tests.operator.support import create_task, task_manifest, wait_task_phase
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster]


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_endpoint_reports_handler_durations_outcomes_and_experiments_created(
    kube: Kube, namespace: str, executor: Any, start_operator: Any
) -> None:
    port = free_port()
    start_operator(
        namespace=namespace, env={"AUTOTUNER_METRICS_PORT": str(port), "AUTOTUNER_METRICS_HOST": "127.0.0.1"}
    )
    await create_task(
        kube, namespace, task_manifest("measured", {"budget": {"maxExperiments": 2, "parallelism": 1}})
    )
    await wait_task_phase(kube, namespace, "measured", {"Succeeded"}, within=120)

    async def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        # The gauge follows the watch event of the final status write, a moment after it.
        samples = await asyncio.to_thread(_scrape, port)
        return samples if samples.get(("autotuner_operator_tasks", (("phase", "Succeeded"),))) == 1 else None

    samples = await wait_for(settled, within=10, what="the tasks gauge to count the task as Succeeded")

    assert samples[("autotuner_operator_experiments_created_total", ())] == 2
    assert samples[("autotuner_operator_tasks", (("phase", "Succeeded"),))] == 1
    for handler in ("task_reconcile", "experiment_reconcile"):
        labels = (("handler", handler), ("outcome", "ok"))
        count = samples[("autotuner_operator_handler_duration_seconds_count", labels)]
        assert count >= 2, f"{handler} ran {count} time(s)"
        assert samples[("autotuner_operator_handler_duration_seconds_sum", labels)] > 0
        assert (
            samples[
                (
                    "autotuner_operator_handler_duration_seconds_bucket",
                    tuple(sorted((*labels, ("le", "+Inf")))),
                )
            ]
            == count
        )
