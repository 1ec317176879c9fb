"""The api's one typed settings object, read from the environment (documented in api/README.md)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from autotuner.core.events import EVENT_STREAM_KEY
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthMode(StrEnum):
    NONE = "none"
    """No authentication: for a laptop or a port-forward only."""
    TOKEN = "token"
    """One shared bearer token (``AUTOTUNER_API_TOKEN``)."""
    KUBERNETES = "kubernetes"
    """TokenReview + SubjectAccessReview: a user sees what RBAC lets them ``kubectl get``."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTOTUNER_", extra="ignore", populate_by_name=True)

    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    """Where the event stream lives."""
    shutdown_grace_seconds: int = Field(5, ge=0)
    """On SIGTERM, how long open connections get before they are closed (1012: reconnect with since)."""
    kubeconfig: str | None = Field(None, validation_alias="KUBECONFIG")
    """Kubeconfig path; unset means in-cluster configuration (the pod's ServiceAccount)."""
    namespace: str | None = None
    """Watch only this namespace (``AUTOTUNER_NAMESPACE``); unset watches all namespaces."""
    auth: AuthMode = AuthMode.NONE
    api_token: str | None = None
    """The shared token for ``AUTOTUNER_AUTH=token``."""
    auth_cache_seconds: float = Field(10.0, ge=0)
    """How long a TokenReview/SubjectAccessReview answer is reused."""

    host: str = Field("127.0.0.1", validation_alias="HOST")
    port: int = Field(8080, ge=0, le=65535, validation_alias="PORT")
    static_dir: Path | None = None
    """The built dashboard; served at ``/`` when the directory exists."""
    log_level: str = "info"

    stream_key: str = EVENT_STREAM_KEY
    stream_block_ms: int = Field(2_000, ge=10)
    """How long one XREAD waits; also bounds how fast a dead Redis connection is noticed."""
    stream_read_count: int = Field(256, ge=1)
    """Entries per XREAD/XRANGE. One XREAD's entries reach a client's queue at once, so this must not
    exceed ``queue_size`` (or a client keeping up would be dropped during a burst)."""
    queue_size: int = Field(1_000, ge=1)
    """Messages buffered per WebSocket client; a client that falls this far behind is dropped (4008)."""
    heartbeat_seconds: float = Field(15.0, gt=0)
    """Interval of the ``{"type":"heartbeat"}`` message."""
    ws_ping_seconds: float = Field(20.0, gt=0)
    """WebSocket ping interval; a peer that does not pong within the same time is disconnected."""
    ws_max_message_bytes: int = Field(65_536, ge=1024)
    """Largest frame a client may send (they only send small control messages); larger → close 1009."""
    ws_implementation: Literal["websockets-sansio", "websockets", "wsproto"] = "websockets-sansio"
    """uvicorn's WebSocket protocol implementation; the sans-I/O one writes each frame straight to the
    transport and costs the least per message (bench/results/stream.md)."""
    gc_thresholds: tuple[int, int, int] = (50_000, 20, 100)
    """CPython's collector thresholds (``gc.set_threshold``; default ``700, 10, 10``), as a JSON list in
    ``AUTOTUNER_GC_THRESHOLDS``. Raised so that thousands of long-lived connections are not walked by
    the cyclic collector many times a second (see api/README.md "Scale-out and limits")."""
    ws_per_message_deflate: bool = False
    """permessage-deflate: off by default, see bench/results/stream.md for the cost."""
    send_timeout_seconds: float = Field(10.0, gt=0)
    """A single send that blocks this long (peer not reading) drops the client like a full queue."""
    redis_retry_max_seconds: float = Field(5.0, gt=0)
    """Upper bound of the reconnect backoff while Redis is unreachable."""
    replica_ttl_seconds: float = Field(30.0, gt=1)
    """Lifetime of this replica's subscriber counts in Redis; refreshed every third of it."""
    replica_id: str | None = None
    """Name of this replica in subscriber counts (defaults to hostname:pid)."""

    @model_validator(mode="after")
    def _read_count_fits_queue(self) -> Settings:
        if self.stream_read_count > self.queue_size:
            raise ValueError(
                f"AUTOTUNER_STREAM_READ_COUNT ({self.stream_read_count}) must not exceed "
                f"AUTOTUNER_QUEUE_SIZE ({self.queue_size})"
            )
        if any(value < 0 for value in self.gc_thresholds):
            raise ValueError("AUTOTUNER_GC_THRESHOLDS must not be negative (0 disables collection)")
        if self.auth is AuthMode.TOKEN and not self.api_token:
            raise ValueError("AUTOTUNER_AUTH=token needs AUTOTUNER_API_TOKEN")
        return self
