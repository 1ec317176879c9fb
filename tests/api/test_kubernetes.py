"""Against a real API server: the watch-backed cache and Kubernetes authentication/authorization."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from api_support import ApiServer, StreamClient, close_code, start_api, unique

from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def task_manifest(namespace: str, name: str) -> str:
    return f"""
apiVersion: autotuner.io/v1alpha1
kind: AutotuneTask
metadata: {{namespace: {namespace}, name: {name}}}
spec:
  model: {{name: Qwen/Qwen3-8B}}
  engine: {{runtime: simulator}}
  searchSpace: [{{name: tp-size, values: [1, 2]}}]
  objective: {{metric: output_throughput}}
  suspend: true
"""


@dataclass
class Tenancy:
    allowed: str
    denied: str
    token: str
    task: str


@pytest.fixture(scope="module")
def tenancy(crds: str) -> Iterator[Tenancy]:
    """Namespace A with a ServiceAccount that may get autotunetasks there; namespace B it may not."""
    allowed, denied = unique("team-a"), unique("team-b")
    task = "watched-task"
    kubectl(
        crds,
        "apply",
        "-f",
        "-",
        stdin=f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {allowed}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {denied}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{namespace: {allowed}, name: viewer}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{namespace: {allowed}, name: task-viewer}}
rules: [{{apiGroups: [autotuner.io], resources: [autotunetasks, experiments], verbs: [get, list, watch]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{namespace: {allowed}, name: task-viewer}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: task-viewer}}
subjects: [{{kind: ServiceAccount, name: viewer, namespace: {allowed}}}]
""",
    )
    kubectl(
        crds, "apply", "-f", "-", stdin=task_manifest(allowed, task) + "---" + task_manifest(denied, task)
    )
    token = kubectl(crds, "create", "token", "viewer", "-n", allowed, "--duration=1h").strip()
    yield Tenancy(allowed, denied, token, task)
    kubectl(crds, "delete", "namespace", allowed, denied, "--wait=false")


@pytest.fixture(scope="module")
def api(redis_url: str, crds: str, tenancy: Tenancy) -> Iterator[ApiServer]:
    server = start_api(
        redis_url,
        stream_key=unique("autotuner:test-kube"),
        module="autotuner.api",
        env={"KUBECONFIG": crds, "AUTOTUNER_AUTH": "kubernetes", "AUTOTUNER_AUTH_CACHE_SECONDS": "2"},
    )
    yield server
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_rest_serves_tasks_from_the_watch_and_sees_new_ones_without_a_restart(
    api: ApiServer, tenancy: Tenancy, crds: str
) -> None:
    path = f"/api/v1/namespaces/{tenancy.allowed}/tasks"

    async def tasks(count: int | None = None) -> list[str] | None:
        status, body = api.get(path, bearer(tenancy.token))
        if status != 200 or not body["cacheReady"]:
            return None
        names = [t["metadata"]["name"] for t in body["items"]]
        return names if count is None or len(names) == count else None

    assert await wait_for(tasks, within=20, what="a ready watch cache") == [tenancy.task]

    kubectl(crds, "apply", "-f", "-", stdin=task_manifest(tenancy.allowed, "added-later"))
    await wait_for(lambda: tasks(2), within=20, what="the watch to deliver the new task")
    client = await StreamClient.open(
        f"{api.ws}/api/ws/tasks/{tenancy.allowed}/added-later", additional_headers=bearer(tenancy.token)
    )
    snapshot = await client.expect("snapshot")
    await client.close()
    assert snapshot["task"]["metadata"]["name"] == "added-later"


async def test_a_service_account_token_streams_its_namespace_by_header_query_or_subprotocol(
    api: ApiServer, tenancy: Tenancy
) -> None:
    path = f"{api.ws}/api/ws/namespaces/{tenancy.allowed}"
    by_header = await StreamClient.open(path, additional_headers=bearer(tenancy.token))
    by_query = await StreamClient.open(f"{path}?access_token={tenancy.token}")
    by_subprotocol = await StreamClient.open(path, subprotocols=[f"bearer.{tenancy.token}", "autotuner.v1"])
    for client in (by_header, by_query, by_subprotocol):
        snapshot = await client.expect("snapshot")
        assert tenancy.task in {t["metadata"]["name"] for t in snapshot["tasks"]}
        await client.close()
    assert by_subprotocol.connection.subprotocol == "autotuner.v1", "the token is never echoed back"


async def test_the_same_token_is_refused_on_another_namespace_and_cluster_wide_with_4403(
    api: ApiServer, tenancy: Tenancy
) -> None:
    headers = bearer(tenancy.token)
    code, reason = await close_code(
        f"{api.ws}/api/ws/namespaces/{tenancy.denied}", additional_headers=headers
    )
    assert code == 4403 and tenancy.denied in reason
    code, _ = await close_code(
        f"{api.ws}/api/ws/tasks/{tenancy.denied}/{tenancy.task}", additional_headers=headers
    )
    assert code == 4403
    code, _ = await close_code(f"{api.ws}/api/ws/all", additional_headers=headers)
    assert code == 4403
    assert api.get(f"/api/v1/namespaces/{tenancy.denied}/tasks", headers)[0] == 403
    assert api.get("/api/v1/tasks", headers)[0] == 403


async def test_an_invalid_or_missing_token_is_refused_with_4401(api: ApiServer, tenancy: Tenancy) -> None:
    path = f"{api.ws}/api/ws/namespaces/{tenancy.allowed}"
    assert (await close_code(path, additional_headers=bearer("not-a-token")))[0] == 4401
    assert (await close_code(path))[0] == 4401
    assert api.get(f"/api/v1/namespaces/{tenancy.allowed}/tasks", bearer("not-a-token"))[0] == 401
    assert api.get(f"/api/v1/namespaces/{tenancy.allowed}/tasks")[0] == 401
