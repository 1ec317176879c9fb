"""Types shared by both kinds: scalars, durations, conditions, object metadata."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

# A parameter value as a user writes it in YAML: a number, a string or a boolean. The schema keeps the node
# open (`x-kubernetes-preserve-unknown-fields` on the leaf only) and a CEL rule checks it is a scalar.
Scalar = Annotated[
    bool | int | float | str,
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True, "x-autotuner-scalar": True}),
]

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        description="A duration such as 90s, 30m or 1h30m.",
        json_schema_extra={"pattern": DURATION_PATTERN},
    ),
]


def parse_duration(value: str) -> timedelta:
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"invalid duration {value!r}: expected e.g. 90s, 30m or 1h30m")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value)))


class CamelModel(BaseModel):
    """Spec and status models: fields keep the camelCase names of the manifest; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=True)

    def to_k8s(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(CamelModel):
    """A Kubernetes-style condition; lastTransitionTime changes only when status flips."""

    type: str = Field(max_length=64, description="Condition type, e.g. Ready, Complete, Failed, Suspended.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=64, description="CamelCase machine-readable reason.")
    message: str = Field(default="", max_length=4096, description="Human-readable detail.")
    lastTransitionTime: datetime | None = Field(default=None, description="When status last changed.")
    observedGeneration: int | None = Field(
        default=None, description="The spec generation this was computed from."
    )


CONDITIONS_SCHEMA_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class ObjectRef(CamelModel):
    name: str = Field(max_length=253, description="Name of the referenced object.")
