"""Experiment (experiments.autotuner.io, short name atx): one engine configuration, deployed and measured."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from autotuner.core.crd.common import (
    CONDITIONS_SCHEMA_EXTRA,
    CamelModel,
    Condition,
    Duration,
    ObjectRef,
    Scalar,
)
from autotuner.core.crd.task import SLO, BenchmarkSpec, EngineSpec, ModelSpec, Objective
from pydantic import ConfigDict, Field


class ExperimentPhase(StrEnum):
    PENDING = "Pending"
    DEPLOYING = "Deploying"
    BENCHMARKING = "Benchmarking"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


TERMINAL_PHASES = frozenset({ExperimentPhase.SUCCEEDED, ExperimentPhase.FAILED})


class ExperimentReason(StrEnum):
    """Why an experiment ended the way it did (status.reason)."""

    COMPLETED = "Completed"
    DEPLOY_TIMEOUT = "DeployTimeout"
    ENGINE_CRASHED = "EngineCrashed"
    OUT_OF_MEMORY = "OutOfMemory"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    UNSCHEDULABLE = "Unschedulable"
    BENCHMARK_FAILED = "BenchmarkFailed"
    SLO_VIOLATED = "SLOViolated"
    TIMEOUT = "Timeout"
    CANCELLED = "Cancelled"


class ExperimentSpec(CamelModel):
    """Written once by the operator: the parameters and an immutable copy of what they were created from."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "spec is immutable"}]
        }
    )

    taskRef: ObjectRef = Field(description="The AutotuneTask this experiment belongs to.")
    index: int = Field(
        ge=0, le=100_000, description="Position in the task's sequence of experiments (0-based)."
    )
    parameters: dict[str, Scalar] = Field(
        json_schema_extra={"maxProperties": 32}, description="The tuned engine flags of this configuration."
    )
    summary: str = Field(default="", max_length=256, description="Short parameter summary for kubectl.")
    model: ModelSpec
    engine: EngineSpec
    benchmark: BenchmarkSpec
    objective: Objective
    slo: list[SLO] = Field(default_factory=list, max_length=16)
    timeout: Duration = Field(default="30m", description="Bound on the whole experiment.")


class ExperimentStatus(CamelModel):
    phase: ExperimentPhase | None = Field(
        default=None, description="Pending, Deploying, Benchmarking, Succeeded, Failed."
    )
    reason: ExperimentReason | None = Field(default=None, description="Why it ended this way.")
    message: str | None = Field(
        default=None, max_length=4096, description="Detail, e.g. the container's message."
    )
    metrics: dict[str, float] = Field(default_factory=dict, description="Benchmark metrics (standard names).")
    objective: float | None = Field(default=None, description="The objective metric's value.")
    score: float | None = Field(
        default=None, description="Objective after soft-SLO penalties, oriented to maximise."
    )
    feasible: bool | None = Field(
        default=None, description="False when a hard SLO was violated or it failed."
    )
    gpus: int | None = Field(default=None, description="GPUs the engine used.")
    engine: str | None = Field(default=None, description="Name of the engine Deployment and Service.")
    benchmarkJob: str | None = Field(default=None, description="Name of the benchmark Job.")
    startTime: datetime | None = Field(default=None, description="When deploying started.")
    readyTime: datetime | None = Field(default=None, description="When the engine became ready.")
    benchmarkStartTime: datetime | None = Field(default=None, description="When the benchmark started.")
    completionTime: datetime | None = Field(default=None, description="When it finished.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Failed.", json_schema_extra=CONDITIONS_SCHEMA_EXTRA
    )
    observedGeneration: int | None = None
