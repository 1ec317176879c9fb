"""Prometheus metrics (one registry per app, so several apps can live in one test process) and JSON logs."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "autotuner_api_ws_connections", "Open WebSocket streams by stream kind.", ["stream"], registry=r
        )
        self.events_in = Counter(
            "autotuner_api_events_received_total", "Stream entries read from Redis.", registry=r
        )
        self.messages_out = Counter(
            "autotuner_api_ws_messages_sent_total",
            "Messages sent to WebSocket clients.",
            ["type"],
            registry=r,
        )
        self.lag = Histogram(
            "autotuner_api_ws_delivery_lag_seconds",
            "Per client: time from XADD (stream id) to the send of the newest event in a batch.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.dropped = Counter(
            "autotuner_api_ws_slow_consumers_dropped_total",
            "Clients closed with 4008 because their queue filled or a send blocked.",
            registry=r,
        )
        self.closed = Counter(
            "autotuner_api_ws_closed_total",
            "Streams closed by the server, by close code.",
            ["code"],
            registry=r,
        )
        self.resyncs = Counter(
            "autotuner_api_ws_resyncs_total", "Resync answers sent, by reason.", ["reason"], registry=r
        )
        self.redis_errors = Counter(
            "autotuner_api_redis_errors_total", "Failed Redis operations.", ["operation"], registry=r
        )
        self.redis_live = Gauge(
            "autotuner_api_redis_live", "1 while the stream reader is connected to Redis.", registry=r
        )


# Record attributes that are not ``extra=`` fields; uvicorn adds a colour copy and a protocol object.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "websocket",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
