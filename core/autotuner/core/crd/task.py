"""AutotuneTask (autotunetasks.autotuner.io, short name att): what to tune, how, and how far it got."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from autotuner.core.crd.common import CONDITIONS_SCHEMA_EXTRA, CamelModel, Condition, Duration, Scalar
from autotuner.core.metrics import METRIC_NAMES
from pydantic import ConfigDict, Field

MetricName = str  # validated through the enum in the schema (see _metric_field)


def _metric_field(description: str, **kwargs: Any) -> Any:
    return Field(description=description, json_schema_extra={"enum": list(METRIC_NAMES)}, **kwargs)


class Runtime(StrEnum):
    SGLANG = "sglang"
    VLLM = "vllm"
    SIMULATOR = "simulator"


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class Algorithm(StrEnum):
    GRID = "grid"
    RANDOM = "random"
    BAYESIAN = "bayesian"


class BenchmarkTool(StrEnum):
    BUILTIN = "builtin"
    GENAI_BENCH = "genai-bench"
    GUIDELLM = "guidellm"


class Endpoint(StrEnum):
    COMPLETIONS = "completions"
    CHAT = "chat"


class TaskPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class ModelVolume(CamelModel):
    """Where the weights come from when they are not downloaded by the engine at start-up."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.claimName) != has(self.hostPath)",
                    "message": "volume needs exactly one of claimName or hostPath",
                },
            ]
        }
    )

    claimName: str | None = Field(
        default=None, max_length=253, description="A PersistentVolumeClaim holding the weights."
    )
    hostPath: str | None = Field(
        default=None, max_length=1024, description="A node path holding the weights."
    )
    subPath: str | None = Field(default=None, max_length=1024, description="Path inside the volume.")
    mountPath: str = Field(
        default="/models", max_length=1024, description="Where the volume is mounted in the engine."
    )


class ModelSpec(CamelModel):
    """The model to serve."""

    name: str = Field(
        min_length=1,
        max_length=256,
        description="Model name or path as the engine takes it (a Hugging Face id or a path inside the volume).",
    )
    servedName: str | None = Field(
        default=None, max_length=256, description="Name the engine serves the model under (defaults to name)."
    )
    volume: ModelVolume | None = Field(default=None, description="Volume holding the weights.")


class EnvVar(CamelModel):
    name: str = Field(max_length=256, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", description="Variable name.")
    value: str = Field(default="", max_length=4096, description="Variable value.")


class Toleration(CamelModel):
    key: str | None = Field(default=None, max_length=316, description="Taint key.")
    operator: str | None = Field(
        default=None, json_schema_extra={"enum": ["Exists", "Equal"]}, description="Exists or Equal."
    )
    value: str | None = Field(default=None, max_length=256, description="Taint value.")
    effect: str | None = Field(
        default=None,
        json_schema_extra={"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
        description="Taint effect.",
    )


class EngineResources(CamelModel):
    """Resources of one engine pod. GPUs are derived from the parallelism flags (tp * pp * dp)."""

    cpu: str | None = Field(default=None, max_length=32, description="CPU request and limit, e.g. '8'.")
    memory: str | None = Field(
        default=None, max_length=32, description="Memory request and limit, e.g. 64Gi."
    )
    gpuResourceName: str = Field(
        default="nvidia.com/gpu", max_length=253, description="Extended resource that counts GPUs."
    )
    gpusPerEngine: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="Override the GPU count otherwise derived from tensor/pipeline/data parallel flags.",
    )


class EngineSpec(CamelModel):
    """The inference engine every experiment deploys, and the flags that stay fixed."""

    runtime: Runtime = Field(
        description="sglang, vllm, or simulator (the project's stand-in engine, no GPU)."
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        description="Engine image; defaults to the operator's image for the runtime.",
    )
    args: dict[str, Scalar] = Field(
        default_factory=dict,
        json_schema_extra={"maxProperties": 64},
        description="Fixed engine flags without leading dashes, e.g. {trust-remote-code: true, dtype: bfloat16}. "
        "true adds a bare flag, false omits it.",
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra environment variables.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Engine port (default: the runtime's)."
    )
    resources: EngineResources = Field(default_factory=EngineResources, description="Pod resources.")
    readinessTimeout: Duration = Field(
        default="10m", description="How long the engine may take to become ready."
    )
    nodeSelector: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra={"maxProperties": 32},
        description="Node selector for engine pods.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Tolerations for engine pods."
    )
    serviceAccountName: str | None = Field(
        default=None, max_length=253, description="Engine pods' ServiceAccount."
    )


class SearchParameter(CamelModel):
    """One engine flag to tune: a list of values, or a numeric range [min, max] with an optional step."""

    # `values` holds untyped scalars, which CEL cannot see: its presence rules are OpenAPI junctors.
    model_config = ConfigDict(
        json_schema_extra={
            "x-autotuner-anyOf": [{"required": ["values"]}, {"required": ["min", "max"]}],
            "x-autotuner-not": {
                "anyOf": [
                    {"required": ["values", "min"]},
                    {"required": ["values", "max"]},
                    {"required": ["values", "step"]},
                ]
            },
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.min) == has(self.max)",
                    "message": "a range needs both min and max",
                    "fieldPath": ".max",
                },
                {
                    "rule": "!has(self.min) || !has(self.max) || self.min < self.max",
                    "message": "min must be less than max",
                    "fieldPath": ".min",
                },
                {
                    "rule": "!has(self.step) || self.step > 0.0",
                    "message": "step must be positive",
                    "fieldPath": ".step",
                },
                {
                    "rule": "!self.log || (has(self.min) && self.min > 0.0 && !has(self.step))",
                    "message": "a log-scale range needs min > 0 and no step",
                    "fieldPath": ".log",
                },
                {
                    "rule": "!self.integer || (has(self.min) && has(self.max))",
                    "message": "integer applies to a range (min and max)",
                    "fieldPath": ".integer",
                },
            ],
        },
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Engine flag without leading dashes, e.g. tp-size, mem-fraction-static, schedule-policy.",
    )
    values: list[Scalar] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Candidate values (numbers, strings or booleans); the order is the grid order.",
    )
    min: float | None = Field(default=None, description="Lower bound of a numeric range (inclusive).")
    max: float | None = Field(default=None, description="Upper bound of a numeric range (inclusive).")
    step: float | None = Field(default=None, description="Step of the range; required for grid search.")
    log: bool = Field(
        default=False, description="Sample the range on a log scale (min must be > 0, no step)."
    )
    integer: bool = Field(default=False, description="The range holds integers.")


class Objective(CamelModel):
    """What to optimise."""

    metric: MetricName = _metric_field("A standard metric name, e.g. output_throughput or ttft_p90.")
    direction: Direction = Field(default=Direction.MAXIMIZE, description="maximize or minimize.")


class SLO(CamelModel):
    """A service-level objective. Hard: a violation makes the experiment infeasible. Soft: a score penalty."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.max) || has(self.min)", "message": "an SLO needs max or min"},
            ]
        }
    )

    metric: MetricName = _metric_field("A standard metric name, e.g. ttft_p90 (seconds).")
    max: float | None = Field(default=None, description="Upper bound (for latencies, error counts).")
    min: float | None = Field(default=None, description="Lower bound (for throughputs, success_rate).")
    hard: bool = Field(default=False, description="A violation makes the configuration infeasible.")
    weight: float = Field(default=1.0, ge=0, description="Weight of the penalty of a soft violation.")


class Strategy(CamelModel):
    """How the search space is explored."""

    algorithm: Algorithm = Field(
        default=Algorithm.BAYESIAN, description="grid, random or bayesian (Optuna TPE)."
    )
    seed: int = Field(
        default=0, ge=0, le=2**31 - 1, description="Seed; same seed and results give the same run."
    )
    initialRandom: int = Field(
        default=5, ge=0, le=1000, description="Bayesian: random configurations before the model takes over."
    )


class Budget(CamelModel):
    """How many experiments, how many at once, and when to give up."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.parallelism <= self.maxExperiments",
                    "message": "parallelism must not exceed maxExperiments",
                    "fieldPath": ".parallelism",
                },
            ]
        }
    )

    maxExperiments: int = Field(default=20, ge=1, le=1000, description="Experiments to run at most.")
    parallelism: int = Field(default=1, ge=1, le=100, description="Experiments running at once.")
    maxFailedExperiments: int = Field(
        default=5, ge=0, le=1000, description="The task fails when more experiments than this have failed."
    )
    experimentTimeout: Duration = Field(
        default="30m", description="Bound on one experiment, deploy to result."
    )
    deadline: Duration | None = Field(default=None, description="Bound on the whole task from its start.")


class BenchmarkSpec(CamelModel):
    """The load each engine configuration is measured under."""

    tool: BenchmarkTool = Field(
        default=BenchmarkTool.BUILTIN, description="builtin, genai-bench or guidellm."
    )
    image: str | None = Field(
        default=None, max_length=512, description="Runner image (default: the operator's)."
    )
    concurrency: list[int] = Field(
        default_factory=lambda: [1, 8],
        min_length=1,
        max_length=16,
        json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 4096}},
        description="Concurrency levels, each run in turn.",
    )
    scenarios: list[str] = Field(
        default_factory=lambda: ["D(256,64)"],
        min_length=1,
        max_length=8,
        json_schema_extra={
            "items": {
                "type": "string",
                "maxLength": 64,
                "pattern": r"^(D\(\d+,\d+\)|N\(\d+,\d+\)/\(\d+,\d+\))$",
            }
        },
        description='Traffic in genai-bench notation: "D(in,out)" or "N(mean_in,sd_in)/(mean_out,sd_out)" tokens.',
    )
    maxRequests: int = Field(default=100, ge=1, le=1_000_000, description="Requests per concurrency level.")
    maxDuration: Duration | None = Field(default=None, description="Time limit per concurrency level.")
    warmup: int = Field(default=2, ge=0, le=1000, description="Warm-up requests before measuring.")
    endpoint: Endpoint = Field(default=Endpoint.COMPLETIONS, description="completions or chat.")
    jobRetention: Duration = Field(
        default="1h", description="How long finished benchmark Jobs are kept for their logs."
    )


class AutotuneTaskSpec(CamelModel):
    """What to tune: a model on an engine, a search space, an objective under SLOs, a strategy and budget."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.strategy.algorithm != 'grid' || "
                    "self.searchSpace.all(p, !has(p.min) || has(p.step) || p.integer)",
                    "message": "grid search needs a finite space: give every parameter values, a step, or integer: true",
                    "fieldPath": ".strategy.algorithm",
                },
            ]
        }
    )

    model: ModelSpec
    engine: EngineSpec
    searchSpace: list[SearchParameter] = Field(
        min_length=1,
        max_length=32,
        description="Engine flags to tune; names are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    objective: Objective
    slo: list[SLO] = Field(default_factory=list, max_length=16, description="Service-level objectives.")
    strategy: Strategy = Field(default_factory=Strategy)
    budget: Budget = Field(default_factory=Budget)
    benchmark: BenchmarkSpec = Field(default_factory=BenchmarkSpec)
    suspend: bool = Field(
        default=False,
        description="Stop creating experiments; running ones finish. Set back to false to resume.",
    )


class ExperimentCounts(CamelModel):
    total: int = Field(default=0, description="Experiments created.")
    pending: int = Field(default=0, description="Created, not yet deploying.")
    running: int = Field(default=0, description="Deploying or benchmarking.")
    succeeded: int = Field(default=0, description="Finished with a result.")
    failed: int = Field(default=0, description="Finished without a usable result.")


class BestResult(CamelModel):
    experiment: str = Field(max_length=253, description="Name of the best Experiment so far.")
    parameters: dict[str, Scalar] = Field(default_factory=dict, description="Its parameters.")
    objective: float = Field(description="Its objective value (the metric, before SLO penalties).")
    score: float | None = Field(default=None, description="Its score after soft-SLO penalties.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Its metrics.")


class OutboxEvent(CamelModel):
    """A transition recorded with its per-task sequence number, kept until the event bus confirms it."""

    seq: int = Field(ge=1)
    type: str = Field(max_length=64)
    experiment: str | None = Field(default=None, max_length=253)
    timestamp: datetime
    message: str = Field(default="", max_length=1024)
    data: dict[str, Scalar] = Field(default_factory=dict)


class RecordedTransitions(CamelModel):
    """Which transitions have already been given an event ``seq`` (the operator's bookkeeping, so that
    each transition becomes exactly one event even across restarts)."""

    phase: str | None = Field(default=None, max_length=32, description="Task phase last recorded.")
    finished: int = Field(default=0, ge=0, description="Finished-experiment count last recorded.")
    experiments: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra={"maxProperties": 1000},
        description="Experiment name → its phase last recorded.",
    )


class AutotuneTaskStatus(CamelModel):
    phase: TaskPhase | None = Field(
        default=None, description="Pending, Running, Succeeded, Failed or Suspended."
    )
    progress: str | None = Field(
        default=None, description="Finished experiments / maxExperiments, e.g. 7/20."
    )
    experiments: ExperimentCounts | None = Field(default=None, description="Experiments by state.")
    best: BestResult | None = Field(default=None, description="The best feasible experiment so far.")
    bestObjective: str | None = Field(default=None, description="The best objective, formatted for display.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Complete, Failed, Suspended.",
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )
    observedGeneration: int | None = Field(default=None, description="The spec generation last reconciled.")
    startTime: datetime | None = Field(default=None, description="When the first experiment was created.")
    completionTime: datetime | None = Field(default=None, description="When the task finished.")
    eventSeq: int | None = Field(default=None, description="Sequence number of the last recorded transition.")
    publishedSeq: int | None = Field(
        default=None, description="Sequence number of the last event on the event bus."
    )
    outbox: list[OutboxEvent] = Field(
        default_factory=list, description="Transitions not yet on the event bus."
    )
    recorded: RecordedTransitions | None = Field(
        default=None, description="Transitions already recorded as events (operator bookkeeping)."
    )
