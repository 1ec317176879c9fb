"""Manifests shared by the CRD tests."""

from __future__ import annotations

from typing import Any


def valid_task(name: str = "valid-task") -> dict[str, Any]:
    return {
        "apiVersion": "autotuner.io/v1alpha1",
        "kind": "AutotuneTask",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "Qwen/Qwen3-8B"},
            "engine": {"runtime": "simulator", "args": {"gpu": "h100_sxm"}},
            "searchSpace": [
                {"name": "tp-size", "values": [1, 2]},
                {"name": "mem-fraction-static", "min": 0.8, "max": 0.95, "step": 0.05},
            ],
            "objective": {"metric": "output_throughput"},
            "slo": [{"metric": "ttft_p90", "max": 1.0, "hard": True}],
            "budget": {"maxExperiments": 4, "parallelism": 2},
        },
    }
