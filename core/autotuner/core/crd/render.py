"""Renders the pydantic models into CustomResourceDefinitions (`make crds`; `--check` for the drift test).

Pydantic's JSON Schema is turned into a Kubernetes *structural* schema: references inlined, optional
`anyOf [T, null]` collapsed to T, OpenAPI v3.0 spellings (`exclusiveMinimum: true`), defaults of nested
objects made explicit so the API server fills them in, and titles dropped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from autotuner.core.crd import CATEGORY, EXPERIMENT_NAME_MAX, GROUP, TASK_NAME_MAX, VERSION
from autotuner.core.crd.experiment import ExperimentSpec, ExperimentStatus
from autotuner.core.crd.task import AutotuneTaskSpec, AutotuneTaskStatus
from pydantic import BaseModel


def _name_rule(max_length: int) -> dict[str, str]:
    # Experiment, Deployment, Service and Job names derive from the task's ("<task>-<index>", "<exp>-bench"),
    # and Services need DNS-1035 labels of at most 63 characters.
    return {
        "rule": f"self.metadata.name.size() <= {max_length} && "
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": f"metadata.name must be a DNS-1035 label (lower case, starting with a letter) of at most "
        f"{max_length} characters, because engine and benchmark names are derived from it",
    }


def _model_classes(model: type[BaseModel], seen: dict[str, type[BaseModel]]) -> dict[str, type[BaseModel]]:
    seen[model.__name__] = model
    for field in model.model_fields.values():
        for candidate in _annotation_models(field.annotation):
            if candidate.__name__ not in seen:
                _model_classes(candidate, seen)
    return seen


def _annotation_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _annotation_models(arg)]


def _add_factory_defaults(model: type[BaseModel], defs: dict[str, Any], root: dict[str, Any]) -> None:
    for name, cls in _model_classes(model, {}).items():
        schema = root if cls is model else defs.get(name)
        if schema is None:
            continue
        for field_name, field in cls.model_fields.items():
            if field.default_factory is None:
                continue
            value = field.get_default(call_default_factory=True)
            if isinstance(value, BaseModel):
                dumped: Any = value.model_dump(mode="json", by_alias=True, exclude_none=True)
            else:
                dumped = value
            if dumped in ({}, []) and not isinstance(value, BaseModel):
                continue  # an empty list or map is the same as absent; keep manifests short
            schema["properties"][field.alias or field_name]["default"] = dumped


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[1]]
        node = {**target, **node}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot render a union of {options} as a structural schema")
        node = {**_structural(options[0], defs), **node}
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**_structural(node.pop("allOf")[0], defs), **node}
    node.pop("title", None)
    # Untyped scalars cannot carry CEL rules; the operator checks them (a semantic error fails the task).
    node.pop("x-autotuner-scalar", None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(node.get(key), int | float) and not isinstance(node.get(key), bool):
            node[key.replace("exclusive", "").lower()] = node[key]
            node[key] = True
    if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node:
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    for junctor in ("anyOf", "not"):
        if f"x-autotuner-{junctor}" in node:
            node[junctor] = node.pop(f"x-autotuner-{junctor}")
    for key in ("properties",):
        if key in node:
            node[key] = {k: _structural(v, defs) for k, v in node[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _structural(node[key], defs)
    return node


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    _add_factory_defaults(model, defs, raw)
    result: dict[str, Any] = _structural(raw, defs)
    return result


def _crd(
    *,
    kind: str,
    plural: str,
    short: str,
    spec: type[BaseModel],
    status: type[BaseModel],
    columns: list[dict[str, Any]],
    description: str,
    max_name_length: int,
) -> dict[str, Any]:
    root: dict[str, Any] = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": openapi_schema(spec),
            "status": openapi_schema(status),
        },
        "x-kubernetes-validations": [_name_rule(max_name_length)],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def _column(name: str, type_: str, path: str, description: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path, "description": description}
    if priority:
        column["priority"] = priority
    return column


AGE = _column("Age", "date", ".metadata.creationTimestamp", "Time since creation.")


def task_crd() -> dict[str, Any]:
    return _crd(
        kind="AutotuneTask",
        plural="autotunetasks",
        short="att",
        spec=AutotuneTaskSpec,
        status=AutotuneTaskStatus,
        max_name_length=TASK_NAME_MAX,
        description="AutotuneTask searches engine flags of an LLM inference engine (SGLang, vLLM) for the "
        "configuration that best meets an objective under SLOs, one Experiment per configuration.",
        columns=[
            _column("Phase", "string", ".status.phase", "Pending, Running, Succeeded, Failed or Suspended."),
            _column("Progress", "string", ".status.progress", "Finished experiments / maxExperiments."),
            _column("Best", "string", ".status.bestObjective", "Best objective so far."),
            _column(
                "Best-Experiment", "string", ".status.best.experiment", "Experiment with the best objective."
            ),
            _column("Objective", "string", ".spec.objective.metric", "The objective metric.", priority=1),
            _column("Algorithm", "string", ".spec.strategy.algorithm", "Search algorithm.", priority=1),
            AGE,
        ],
    )


def experiment_crd() -> dict[str, Any]:
    return _crd(
        kind="Experiment",
        plural="experiments",
        short="atx",
        spec=ExperimentSpec,
        status=ExperimentStatus,
        max_name_length=EXPERIMENT_NAME_MAX,
        description="Experiment deploys one engine configuration of an AutotuneTask, benchmarks it and scores it.",
        columns=[
            _column("Task", "string", ".spec.taskRef.name", "The AutotuneTask."),
            _column(
                "Phase", "string", ".status.phase", "Pending, Deploying, Benchmarking, Succeeded, Failed."
            ),
            _column("Objective", "number", ".status.objective", "The objective metric's value."),
            _column("Params", "string", ".spec.summary", "Tuned parameters."),
            _column("Reason", "string", ".status.reason", "Why it ended this way.", priority=1),
            _column(
                "Throughput", "number", ".status.metrics.output_throughput", "Output tokens/s.", priority=1
            ),
            _column(
                "TTFT-P90", "number", ".status.metrics.ttft_p90", "Time to first token, p90 (s).", priority=1
            ),
            _column(
                "TPOT", "number", ".status.metrics.tpot_mean", "Time per output token, mean (s).", priority=1
            ),
            AGE,
        ],
    )


def render_all() -> dict[str, str]:
    """File name under crds/ → YAML text."""
    header = "# Generated by `make crds` from core/autotuner/core/crd/*.py; do not edit.\n"
    return {
        f"{GROUP}_{crd['spec']['names']['plural']}.yaml": header
        + yaml.safe_dump(crd, sort_keys=False, width=120)
        for crd in (task_crd(), experiment_crd())
    }


# The Helm chart installs the same CRDs from its crds/ folder (Helm does not follow links out of a chart).
DEFAULT_OUTPUTS = (Path("crds"), Path("charts/autotuner/crds"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, action="append", help="output folder (repeatable)")
    parser.add_argument("--check", action="store_true", help="fail when the files differ from the models")
    args = parser.parse_args()
    outputs: list[Path] = args.out or list(DEFAULT_OUTPUTS)
    stale = []
    for out in outputs:
        for name, text in render_all().items():
            path = out / name
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if stale:
        sys.exit(f"out of date (run `make crds`): {', '.join(stale)}")


if __name__ == "__main__":
    main()
