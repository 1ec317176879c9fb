"""The operator's configuration: one typed object read from the environment once at start-up."""

from __future__ import annotations

from autotuner.operator import __version__
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PROJECT_IMAGE = f"ghcr.io/autotuner/autotuner:{__version__}"


class OperatorSettings(BaseSettings):
    """Every tunable of the operator. Environment variables use the ``AUTOTUNER_`` prefix, except
    ``REDIS_URL`` and ``KUBECONFIG`` which keep the names every other tool uses."""

    model_config = SettingsConfigDict(env_prefix="AUTOTUNER_", extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(
        default=None,
        validation_alias="REDIS_URL",
        description="Redis holding the event stream. Unset: transitions stay in each task's status.outbox.",
    )
    kubeconfig: str | None = Field(
        default=None,
        validation_alias="KUBECONFIG",
        description="Kubeconfig path; unset: in-cluster config, then ~/.kube/config.",
    )
    namespace: str | None = Field(
        default=None, description="Watch only this namespace; unset: every namespace (cluster-wide)."
    )
    local_exec: bool = Field(
        default=False,
        description="Label engine and benchmark pods autotuner.io/local-exec=true so the local executor "
        "(devtools, KWOK clusters only) runs their commands on this machine.",
    )
    sglang_image: str = Field(default="lmsysorg/sglang:v0.5.2-cu126", description="Default SGLang image.")
    vllm_image: str = Field(default="vllm/vllm-openai:v0.11.0", description="Default vLLM image.")
    simulator_image: str = Field(default=DEFAULT_PROJECT_IMAGE, description="Default simulator image.")
    runner_image: str = Field(default=DEFAULT_PROJECT_IMAGE, description="Default benchmark runner image.")
    simulator_requests_gpus: bool = Field(
        default=True,
        description="Simulator engine pods request the GPUs their flags imply, so scheduling behaves as "
        "with a real engine (KWOK's fake GPU nodes). Turn off to run the simulator on CPU-only nodes.",
    )
    task_interval: float = Field(
        default=5.0, gt=0, description="Seconds between task reconciliations when nothing wakes the task."
    )
    experiment_interval: float = Field(
        default=2.0, gt=0, description="Seconds between experiment reconciliations when nothing wakes it."
    )
    resync_interval: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between passes that read a task's Experiments, or an Experiment's engine, "
        "Job and pods, from the API server; passes in between decide on what the watch streams "
        "delivered and read only to confirm a change. Heals a missed watch event.",
    )
    unschedulable_grace: float = Field(
        default=60.0,
        ge=0,
        description="Seconds an engine pod may stay unschedulable (e.g. waiting for GPUs to free up) "
        "before the experiment fails with reason Unschedulable.",
    )
    outbox_cap: int = Field(
        default=500,
        ge=1,
        description="Most unpublished events kept in a task's status.outbox while Redis is unreachable. "
        "When full, new transitions are not recorded yet; they are derived again from the objects once "
        "the outbox drains, so none is lost (intermediate ones carry their original timestamps).",
    )
    redis_timeout: float = Field(default=2.0, gt=0, description="Seconds per Redis call before giving up.")
    metrics_port: int = Field(
        default=9090, ge=0, le=65535, description="Port of the Prometheus /metrics server; 0 disables it."
    )
    metrics_host: str = Field(default="0.0.0.0", description="Address of the Prometheus /metrics server.")
    peering: bool = Field(
        default=False,
        description="Use Kopf peering (several operator replicas, one active). Off: run as the only one.",
    )
    post_k8s_events: bool = Field(
        default=True, description="Post Kubernetes Events for every transition (kubectl describe)."
    )
