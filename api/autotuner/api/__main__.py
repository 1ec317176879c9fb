"""``autotuner-api``: serve the api with uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import gc
import sys

import uvicorn
from autotuner.api.app import create_app
from autotuner.api.observability import configure_logging
from autotuner.api.settings import Settings
from pydantic import ValidationError


def run(app_settings: Settings, app: object) -> None:
    """Run ``app`` with the WebSocket limits from ``app_settings`` (shared with autotuner.api.testing)."""
    tune_gc(app_settings.gc_thresholds)
    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=app_settings.host,
        port=app_settings.port,
        loop="auto",
        http="auto",
        ws=app_settings.ws_implementation,
        ws_max_size=app_settings.ws_max_message_bytes,
        ws_ping_interval=app_settings.ws_ping_seconds,
        ws_ping_timeout=app_settings.ws_ping_seconds,
        ws_per_message_deflate=app_settings.ws_per_message_deflate,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=app_settings.shutdown_grace_seconds,
    )


def tune_gc(thresholds: tuple[int, int, int]) -> None:
    """Every open stream keeps a few hundred objects (tasks, futures, frames, buffers) alive for its
    whole life. With CPython's default thresholds the cyclic collector walks all of them many times a
    second, and a full collection over 10,000 streams stalls the event loop for seconds
    (bench/results/stream.md); fan-out garbage is freed by reference counting anyway. So objects alive
    at start-up are frozen out of collections and the thresholds are raised."""
    gc.freeze()
    gc.set_threshold(*thresholds)


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(f"autotuner-api: invalid settings:\n{error}")
    configure_logging(settings.log_level)
    try:
        app = create_app(settings)
    except ValueError as error:
        sys.exit(f"autotuner-api: {error}")
    run(settings, app)


if __name__ == "__main__":
    main()
