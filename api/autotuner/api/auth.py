"""Who is asking, and may they read a namespace's tasks.

Tokens come from ``Authorization: Bearer <t>``, the ``access_token`` query parameter, or (browsers cannot
set headers on a WebSocket) a ``bearer.<t>`` entry in ``Sec-WebSocket-Protocol``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import HTTPConnection

SUBPROTOCOL = "autotuner.v1"
"""The subprotocol the server selects when the client offers it (offer it next to ``bearer.<token>``)."""
BEARER_PREFIX = "bearer."


class AuthError(Exception):
    """Refusal: ``status`` is the HTTP status (401/403), ``close_code`` the WebSocket one (4401/4403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.close_code = 4000 + status
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)


ANONYMOUS = Principal("anonymous")


class Authenticator(Protocol):
    async def authenticate(self, token: str | None) -> Principal:
        """The principal behind ``token``; raises AuthError(401)."""
        ...

    async def authorize(self, principal: Principal, namespace: str | None) -> None:
        """Raise AuthError(403) unless ``principal`` may get tasks in ``namespace`` (None: all)."""
        ...


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if token := conn.query_params.get("access_token"):
        return token
    for protocol in offered_subprotocols(conn):
        if protocol.startswith(BEARER_PREFIX) and len(protocol) > len(BEARER_PREFIX):
            return protocol[len(BEARER_PREFIX) :]
    return None


def offered_subprotocols(conn: HTTPConnection) -> list[str]:
    header = conn.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


class NoAuth:
    """Everyone is allowed: the documented default, for local use only."""

    async def authenticate(self, token: str | None) -> Principal:
        return ANONYMOUS

    async def authorize(self, principal: Principal, namespace: str | None) -> None:
        return None


class TokenAuth:
    """One shared secret; whoever holds it sees everything."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("AUTOTUNER_AUTH=token needs AUTOTUNER_API_TOKEN")
        self._token = token.encode()

    async def authenticate(self, token: str | None) -> Principal:
        if token is None:
            raise AuthError(401, "a bearer token is required")
        if not hmac.compare_digest(token.encode(), self._token):
            raise AuthError(401, "invalid token")
        return Principal("token")

    async def authorize(self, principal: Principal, namespace: str | None) -> None:
        return None


class _TTLCache:
    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._data) >= self._max:
            now = time.monotonic()
            self._data = {k: v for k, v in self._data.items() if v[0] >= now}
            if len(self._data) >= self._max:
                self._data.clear()
        self._data[key] = (time.monotonic() + self._ttl, value)


class KubernetesAuth:
    """TokenReview for identity, SubjectAccessReview for ``get autotunetasks.autotuner.io`` in the namespace
    (cluster-wide for streams and lists across namespaces). Answers are cached ``cache_seconds``; the
    api's ServiceAccount needs ``system:auth-delegator``."""

    def __init__(self, api_client: Any, *, cache_seconds: float = 10.0) -> None:
        from kubernetes_asyncio import client

        self._client = client
        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self._tokens = _TTLCache(cache_seconds)
        self._access = _TTLCache(cache_seconds)

    async def authenticate(self, token: str | None) -> Principal:
        if token is None:
            raise AuthError(401, "a bearer token is required")
        key = hashlib.sha256(token.encode()).digest()
        cached = self._tokens.get(key)
        if cached is None:
            c = self._client
            review = await self._authn.create_token_review(
                c.V1TokenReview(spec=c.V1TokenReviewSpec(token=token))
            )
            status = review.status
            if status is not None and status.authenticated and status.user is not None:
                user = status.user
                cached = Principal(
                    username=user.username or "",
                    uid=user.uid or "",
                    groups=tuple(user.groups or ()),
                    extra={k: list(v) for k, v in (user.extra or {}).items()},
                )
            else:
                cached = False
            self._tokens.put(key, cached)
        if cached is False:
            raise AuthError(401, "invalid token")
        principal: Principal = cached
        return principal

    async def authorize(self, principal: Principal, namespace: str | None) -> None:
        key = (principal.username, principal.uid, principal.groups, namespace)
        allowed = self._access.get(key)
        if allowed is None:
            c = self._client
            review = await self._authz.create_subject_access_review(
                c.V1SubjectAccessReview(
                    spec=c.V1SubjectAccessReviewSpec(
                        user=principal.username,
                        uid=principal.uid or None,
                        groups=list(principal.groups) or None,
                        extra=principal.extra or None,
                        resource_attributes=c.V1ResourceAttributes(
                            group="autotuner.io",
                            resource="autotunetasks",
                            verb="get",
                            namespace=namespace or "",
                        ),
                    )
                )
            )
            allowed = bool(review.status and review.status.allowed)
            self._access.put(key, allowed)
        if not allowed:
            where = f"namespace {namespace!r}" if namespace else "all namespaces"
            raise AuthError(403, f"{principal.username} may not get autotunetasks.autotuner.io in {where}")
