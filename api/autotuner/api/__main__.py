"""``autotuner-api``: serve the api with uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import sys

import uvicorn
from autotuner.api.app import create_app
from autotuner.api.observability import configure_logging
from autotuner.api.settings import Settings
from pydantic import ValidationError


def run(app_settings: Settings, app: object) -> None:
    """Run ``app`` with the WebSocket limits from ``app_settings`` (shared with autotuner.api.testing)."""
    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=app_settings.host,
        port=app_settings.port,
        loop="auto",
        http="auto",
        ws="websockets",
        ws_max_size=app_settings.ws_max_message_bytes,
        ws_ping_interval=app_settings.ws_ping_seconds,
        ws_ping_timeout=app_settings.ws_ping_seconds,
        ws_per_message_deflate=app_settings.ws_per_message_deflate,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=app_settings.shutdown_grace_seconds,
    )


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
