"""The event model shared by the operator (publisher) and the api (fan-out to WebSocket clients).

One event per status transition, shaped as DESIGN.md §4 describes:
``{id, type, task: {namespace, name}, experiment?, seq, timestamp, message, data}``.
``id`` is the Redis stream entry id (the resume token, empty until the event is stored) and ``seq``
increases by one per task, starting at 1, so a client can tell a gap from a quiet period.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EVENT_STREAM_KEY = "autotuner:events"
"""The one Redis stream every transition of every task is appended to."""


class EventType(StrEnum):
    TASK_STARTED = "task_started"
    TASK_PROGRESS = "task_progress"
    TASK_SUSPENDED = "task_suspended"
    TASK_RESUMED = "task_resumed"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    EXPERIMENT_CREATED = "experiment_created"
    EXPERIMENT_STARTED = "experiment_started"
    BENCHMARK_STARTED = "benchmark_started"
    EXPERIMENT_COMPLETED = "experiment_completed"
    EXPERIMENT_FAILED = "experiment_failed"


class TaskRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = ""
    type: EventType
    task: TaskRef
    experiment: str | None = None
    seq: int = Field(ge=1)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
