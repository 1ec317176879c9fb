"""Close codes, name validation and the shared state handlers reach through ``app.state.services``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import redis.asyncio as aioredis
from autotuner.api.auth import Authenticator
from autotuner.api.broadcaster import Broadcaster
from autotuner.api.cache import ResourceCache
from autotuner.api.observability import Metrics
from autotuner.api.presence import Presence
from autotuner.api.settings import Settings
from autotuner.core.stream import StreamReader


class CloseCode(IntEnum):
    """WebSocket close codes the api uses (documented in api/README.md)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    """Server shutting down: reconnect (to another replica) with ``since``."""
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SLOW_CONSUMER = 4008
    """The client's queue filled (it did not read fast enough): resume with ``since=<last id>``."""
    BAD_REQUEST = 4400
    """Invalid namespace/name or ``since``: do not retry unchanged."""
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    """No such stream path."""


_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class InvalidName(ValueError):
    pass


def check_namespace(value: str) -> str:
    if not _LABEL.match(value):
        raise InvalidName(
            f"invalid namespace {value[:80]!r}: must be a DNS-1123 label "
            "(lowercase letters, digits and '-', at most 63 characters)"
        )
    return value


def check_name(value: str) -> str:
    if len(value) > 253 or not _SUBDOMAIN.match(value):
        raise InvalidName(
            f"invalid name {value[:80]!r}: must be a DNS-1123 subdomain "
            "(lowercase letters, digits, '-' and '.', at most 253 characters)"
        )
    return value


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    redis: aioredis.Redis
    reader: StreamReader
    broadcaster: Broadcaster
    presence: Presence
    cache: ResourceCache
    authenticator: Authenticator
    kube_client: Any | None
