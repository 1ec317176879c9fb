"""REST snapshots of tasks and experiments, served from the watch-backed cache."""

from __future__ import annotations

from typing import Annotated, Any

from autotuner.api.auth import AuthError, bearer_token
from autotuner.api.protocol import Services
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel

router = APIRouter(prefix="/api/v1", tags=["resources"])

NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Namespace = Annotated[str, Path(pattern=NAMESPACE_PATTERN, max_length=63, description="DNS-1123 label")]
Name = Annotated[str, Path(pattern=NAME_PATTERN, max_length=253, description="DNS-1123 subdomain")]


class ObjectList(BaseModel):
    """Kubernetes objects as JSON (``managedFields`` removed)."""

    items: list[dict[str, Any]]
    cacheReady: bool


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def _authorize(request: Request, namespace: str | None) -> Services:
    found = services(request)
    try:
        principal = await found.authenticator.authenticate(bearer_token(request))
        await found.authenticator.authorize(principal, namespace)
    except AuthError as error:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        raise HTTPException(error.status, error.message, headers=headers) from None
    return found


async def cluster_access(request: Request) -> Services:
    return await _authorize(request, None)


async def namespace_access(request: Request, namespace: Namespace) -> Services:
    return await _authorize(request, namespace)


ClusterAccess = Annotated[Services, Depends(cluster_access)]
NamespaceAccess = Annotated[Services, Depends(namespace_access)]


@router.get("/tasks", response_model=ObjectList)
async def list_all_tasks(s: ClusterAccess) -> ObjectList:
    return ObjectList(items=s.cache.list_tasks(), cacheReady=s.cache.ready)


@router.get("/experiments", response_model=ObjectList)
async def list_all_experiments(s: ClusterAccess) -> ObjectList:
    return ObjectList(items=s.cache.list_experiments(), cacheReady=s.cache.ready)


@router.get("/namespaces/{namespace}/tasks", response_model=ObjectList)
async def list_tasks(namespace: Namespace, s: NamespaceAccess) -> ObjectList:
    return ObjectList(items=s.cache.list_tasks(namespace), cacheReady=s.cache.ready)


@router.get("/namespaces/{namespace}/tasks/{name}", responses={404: {"description": "No such task"}})
async def get_task(namespace: Namespace, name: Name, s: NamespaceAccess) -> dict[str, Any]:
    found = s.cache.get_task(namespace, name)
    if found is None:
        raise HTTPException(404, f"autotunetask {namespace}/{name} not found")
    return found


@router.get("/namespaces/{namespace}/tasks/{name}/experiments", response_model=ObjectList)
async def list_task_experiments(namespace: Namespace, name: Name, s: NamespaceAccess) -> ObjectList:
    return ObjectList(items=s.cache.list_experiments(namespace, name), cacheReady=s.cache.ready)


@router.get("/namespaces/{namespace}/experiments", response_model=ObjectList)
async def list_experiments(namespace: Namespace, s: NamespaceAccess) -> ObjectList:
    return ObjectList(items=s.cache.list_experiments(namespace), cacheReady=s.cache.ready)


@router.get(
    "/namespaces/{namespace}/experiments/{name}", responses={404: {"description": "No such experiment"}}
)
async def get_experiment(namespace: Namespace, name: Name, s: NamespaceAccess) -> dict[str, Any]:
    found = s.cache.get_experiment(namespace, name)
    if found is None:
        raise HTTPException(404, f"experiment {namespace}/{name} not found")
    return found


class SubscriberCount(BaseModel):
    namespace: str
    name: str
    scope: str
    """``cluster``: summed over live replicas via Redis; ``replica``: this replica only (Redis down)."""
    total: int
    replicas: dict[str, int]


ws_router = APIRouter(tags=["streams"])


@ws_router.get("/api/ws/tasks/{namespace}/{name}/subscribers", response_model=SubscriberCount)
async def subscribers(namespace: Namespace, name: Name, s: NamespaceAccess) -> SubscriberCount:
    from autotuner.api.broadcaster import REDIS_DOWN, StreamKind, Topic

    try:
        counts = await s.presence.count(namespace, name)
        scope = "cluster"
    except REDIS_DOWN:
        s.metrics.redis_errors.labels("presence").inc()
        counts = {s.presence.replica_id: s.broadcaster.count(Topic(StreamKind.TASK, namespace, name))}
        scope = "replica"
    return SubscriberCount(
        namespace=namespace, name=name, scope=scope, total=sum(counts.values()), replicas=counts
    )
