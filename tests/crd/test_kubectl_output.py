"""`kubectl get att/atx` print the progress columns from status; `kubectl explain` shows the descriptions."""

from __future__ import annotations

import json
from typing import Any

from autotuner.devtools.cluster import kubectl

from tests.crd.manifests import valid_task


def _columns(kubeconfig: str, namespace: str, *args: str) -> dict[str, str]:
    """kubectl's table as header → value for a single row (columns are separated by 2+ spaces)."""
    import re

    lines = kubectl(kubeconfig, "get", *args, "-n", namespace).stdout.strip().splitlines()
    assert len(lines) == 2, lines
    header, row = lines
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    bounds = [*starts[1:], None]
    return {header[s:e].strip(): row[s:e].strip() for s, e in zip(starts, bounds, strict=True)}


def _patch_status(kubeconfig: str, namespace: str, resource: str, status: dict[str, Any]) -> None:
    kubectl(
        kubeconfig,
        "patch",
        resource,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def test_get_autotunetasks_shows_phase_progress_and_best(crds: str, namespace: str) -> None:
    kubectl(
        crds, "apply", "--server-side", "-n", namespace, "-f", "-", input_=json.dumps(valid_task("shown"))
    )
    _patch_status(
        crds,
        namespace,
        "att/shown",
        {
            "phase": "Running",
            "progress": "3/4",
            "bestObjective": "1523.4",
            "best": {"experiment": "shown-0002", "objective": 1523.4, "parameters": {"tp-size": 2}},
        },
    )
    columns = _columns(crds, namespace, "att", "shown")
    assert columns["NAME"] == "shown"
    assert columns["PHASE"] == "Running"
    assert columns["PROGRESS"] == "3/4"
    assert columns["BEST"] == "1523.4"
    assert columns["BEST-EXPERIMENT"] == "shown-0002"
    assert "AGE" in columns


def test_get_experiments_shows_task_phase_objective_params_and_wide_metrics(
    crds: str, namespace: str
) -> None:
    task = valid_task("owner")["spec"]
    experiment = {
        "apiVersion": "autotuner.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "owner-0000"},
        "spec": {
            "taskRef": {"name": "owner"},
            "index": 0,
            "parameters": {"tp-size": 2, "mem-fraction-static": 0.85},
            "summary": "tp-size=2 mem-fraction-static=0.85",
            "model": task["model"],
            "engine": task["engine"],
            "benchmark": {},
            "objective": task["objective"],
        },
    }
    kubectl(crds, "apply", "--server-side", "-n", namespace, "-f", "-", input_=json.dumps(experiment))
    _patch_status(
        crds,
        namespace,
        "atx/owner-0000",
        {
            "phase": "Succeeded",
            "reason": "Completed",
            "objective": 812.5,
            "metrics": {"output_throughput": 812.5, "ttft_p90": 0.21, "tpot_mean": 0.012},
        },
    )
    columns = _columns(crds, namespace, "atx", "owner-0000")
    assert columns["TASK"] == "owner"
    assert columns["PHASE"] == "Succeeded"
    assert columns["OBJECTIVE"] == "812.5"
    assert columns["PARAMS"] == "tp-size=2 mem-fraction-static=0.85"
    wide = _columns(crds, namespace, "atx", "owner-0000", "-o", "wide")
    assert wide["THROUGHPUT"] == "812.5"
    assert wide["TTFT-P90"] == "0.21"
    assert wide["TPOT"] == "0.012"
    assert wide["REASON"] == "Completed"


def test_experiment_spec_is_immutable(crds: str, namespace: str) -> None:
    task = valid_task("frozen")["spec"]
    experiment = {
        "apiVersion": "autotuner.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "frozen-0000"},
        "spec": {
            "taskRef": {"name": "frozen"},
            "index": 0,
            "parameters": {"tp-size": 1},
            "model": task["model"],
            "engine": task["engine"],
            "benchmark": {},
            "objective": task["objective"],
        },
    }
    kubectl(crds, "apply", "--server-side", "-n", namespace, "-f", "-", input_=json.dumps(experiment))
    result = kubectl(
        crds,
        "patch",
        "atx/frozen-0000",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"parameters": {"tp-size": 2}}}',
        check=False,
    )
    assert result.returncode != 0
    assert "spec is immutable" in result.stderr


def test_explain_shows_the_search_space_descriptions(crds: str) -> None:
    text = kubectl(crds, "explain", "autotunetask.spec.searchSpace").stdout
    assert "Engine flags to tune" in text
    assert "Candidate values (numbers, strings or booleans)" in text
    assert "Step of the range; required for grid search" in text
    short = kubectl(crds, "explain", "att.spec.budget.parallelism").stdout
    assert "Experiments running at once" in short
