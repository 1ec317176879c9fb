"""Fixtures for the local executor's tests: a fresh namespace per test, kubectl, and waiting helpers.

The ``kubeconfig`` fixture (the cluster in ``KUBECONFIG``, else the local KWOK cluster, failing when it
cannot start) lives in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from autotuner.devtools.cluster import tools_dir

T = TypeVar("T")


@dataclass
class Kube:
    """The pinned kubectl against the test cluster, without blocking the event loop."""

    kubeconfig: str

    async def run(self, *args: str, input_: str | None = None) -> str:
        process = await asyncio.create_subprocess_exec(
            str(tools_dir() / "kubectl"),
            "--kubeconfig",
            self.kubeconfig,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(input_.encode() if input_ is not None else None)
        if process.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {err.decode()}")
        return out.decode()

    async def apply(self, namespace: str, *objects: dict[str, Any]) -> None:
        await self.run(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input_=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
        )

    async def get(self, *args: str) -> Any:
        return json.loads(await self.run("get", "-o", "json", *args))


@pytest.fixture
def kube(kubeconfig: str) -> Kube:
    return Kube(kubeconfig)


@pytest.fixture
async def namespace(kube: Kube) -> AsyncIterator[str]:
    name = f"exec-{secrets.token_hex(4)}"
    await kube.run("create", "namespace", name)
    try:
        yield name
    finally:
        await kube.run("delete", "namespace", name, "--wait=false")
