"""The API server accepts the examples and refuses invalid manifests with a message naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from autotuner.devtools.cluster import kubectl

from tests.crd.manifests import valid_task

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def _apply(kubeconfig: str, namespace: str, manifest: dict[str, Any]) -> tuple[int, str]:
    result = kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "-n",
        namespace,
        "-f",
        "-",
        input_=json.dumps(manifest),
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def _mutated(path: str, value: Any) -> dict[str, Any]:
    """A valid task with the value at a dotted path (list indexes as numbers) replaced; None deletes it."""
    task = valid_task()
    *parents, last = path.split(".")
    node: Any = task
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    key: Any = int(last) if last.isdigit() else last
    if value is None:
        del node[key]
    else:
        node[key] = copy.deepcopy(value)
    return task


# (case id, mutated manifest, substrings the API server's answer must contain: the field path and the rule)
INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("model-missing", _mutated("spec.model", None), ["spec.model", "Required value"]),
    ("model-name-empty", _mutated("spec.model.name", ""), ["spec.model.name", "at least 1 chars"]),
    (
        "unknown-runtime",
        _mutated("spec.engine.runtime", "tgi"),
        ["spec.engine.runtime", 'Unsupported value: "tgi"'],
    ),
    ("empty-search-space", _mutated("spec.searchSpace", []), ["spec.searchSpace", "at least 1 items"]),
    (
        "parameter-without-values-or-range",
        _mutated("spec.searchSpace.0", {"name": "tp-size"}),
        [
            "spec.searchSpace[0]",
            "must validate at least one schema (anyOf)",
            "spec.searchSpace[0].values: Required value",
        ],
    ),
    (
        "parameter-with-values-and-range",
        _mutated("spec.searchSpace.0", {"name": "tp-size", "values": [1], "min": 1, "max": 2}),
        ["spec.searchSpace[0]", "must not validate the schema (not)"],
    ),
    (
        "range-min-not-below-max",
        _mutated("spec.searchSpace.1.min", 0.99),
        ["spec.searchSpace[1].min", "min must be less than max"],
    ),
    (
        "range-step-not-positive",
        _mutated("spec.searchSpace.1.step", 0),
        ["spec.searchSpace[1].step", "step must be positive"],
    ),
    (
        "log-range-from-zero",
        _mutated("spec.searchSpace.1", {"name": "max-num-seqs", "min": 0, "max": 256, "log": True}),
        ["spec.searchSpace[1].log", "log-scale range needs min > 0"],
    ),
    (
        "duplicate-parameter",
        _mutated("spec.searchSpace.1", {"name": "tp-size", "values": [4]}),
        ["spec.searchSpace", 'duplicate entries for key [name="tp-size"]'],
    ),
    (
        "parameter-name-with-dashes",
        _mutated("spec.searchSpace.0.name", "--tp-size"),
        ["spec.searchSpace[0].name", "should match"],
    ),
    (
        "parallelism-above-max-experiments",
        _mutated("spec.budget", {"maxExperiments": 2, "parallelism": 3}),
        ["spec.budget.parallelism", "must not exceed maxExperiments"],
    ),
    (
        "parallelism-zero",
        _mutated("spec.budget.parallelism", 0),
        ["spec.budget.parallelism", "greater than or equal to 1"],
    ),
    (
        "max-experiments-zero",
        _mutated("spec.budget.maxExperiments", 0),
        ["spec.budget.maxExperiments", "greater than or equal to 1"],
    ),
    (
        "negative-failure-budget",
        _mutated("spec.budget.maxFailedExperiments", -1),
        ["spec.budget.maxFailedExperiments", "greater than or equal to 0"],
    ),
    (
        "timeout-not-a-duration",
        _mutated("spec.budget.experimentTimeout", "30 minutes"),
        ["spec.budget.experimentTimeout", "should match"],
    ),
    (
        "unknown-objective-metric",
        _mutated("spec.objective.metric", "throughput"),
        ["spec.objective.metric", 'Unsupported value: "throughput"'],
    ),
    (
        "unknown-direction",
        _mutated("spec.objective.direction", "up"),
        ["spec.objective.direction", 'Unsupported value: "up"'],
    ),
    (
        "unknown-slo-metric",
        _mutated("spec.slo.0.metric", "latency"),
        ["spec.slo[0].metric", 'Unsupported value: "latency"'],
    ),
    (
        "slo-without-bound",
        _mutated("spec.slo.0", {"metric": "ttft_p90", "hard": True}),
        ["spec.slo[0]", "an SLO needs max or min"],
    ),
    (
        "grid-over-continuous-range",
        _mutated("spec.strategy", {"algorithm": "grid"}) | {},
        ["spec.strategy.algorithm", "grid search needs a finite space"],
    ),
    (
        "unknown-algorithm",
        _mutated("spec.strategy.algorithm", "annealing"),
        ["spec.strategy.algorithm", 'Unsupported value: "annealing"'],
    ),
    (
        "bad-scenario",
        _mutated("spec.benchmark", {"scenarios": ["X(1,2)"]}),
        ["spec.benchmark.scenarios[0]", "should match"],
    ),
    (
        "zero-concurrency",
        _mutated("spec.benchmark", {"concurrency": [0]}),
        ["spec.benchmark.concurrency[0]", "greater than or equal to 1"],
    ),
    (
        "volume-with-two-sources",
        _mutated("spec.model.volume", {"claimName": "w", "hostPath": "/w"}),
        ["spec.model.volume", "exactly one of claimName or hostPath"],
    ),
    (
        "unknown-field",
        _mutated("spec.engine.replicas", 2),
        ["spec.engine.replicas", "field not declared in schema"],
    ),
    ("name-not-dns-1035", _mutated("metadata.name", "9-lives"), ["metadata.name must be a DNS-1035 label"]),
    ("name-too-long", _mutated("metadata.name", "a" * 41), ["at most 40 characters"]),
]


def _continuous_grid() -> None:
    # The grid case needs an unstepped range: make parameter 1 continuous.
    for case_id, manifest, _ in INVALID:
        if case_id == "grid-over-continuous-range":
            del manifest["spec"]["searchSpace"][1]["step"]


_continuous_grid()


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_accepted_by_the_api_server(crds: str, namespace: str, example: Path) -> None:
    manifest = yaml.safe_load(example.read_text())
    code, output = _apply(crds, namespace, manifest)
    assert code == 0, output
    stored = json.loads(
        kubectl(crds, "get", "att", manifest["metadata"]["name"], "-n", namespace, "-o", "json").stdout
    )
    # Defaults from the schema are filled in by the API server.
    assert stored["spec"]["strategy"]["algorithm"] in {"grid", "random", "bayesian"}
    assert stored["spec"]["benchmark"]["tool"] == "builtin"
    assert stored["spec"]["suspend"] is False


def test_invalid_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 20


@pytest.mark.parametrize(
    ("manifest", "expected"), [(m, e) for _, m, e in INVALID], ids=[c for c, _, _ in INVALID]
)
def test_invalid_manifest_is_rejected_naming_the_field(
    crds: str, namespace: str, manifest: dict[str, Any], expected: list[str]
) -> None:
    code, output = _apply(crds, namespace, manifest)
    assert code != 0, f"accepted: {json.dumps(manifest)}"
    for text in expected:
        assert text in output, output
