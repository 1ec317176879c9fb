"""Fixtures for the operator's end-to-end tests: a fresh namespace, the local executor, and the real
``autotuner-operator`` as a subprocess (so a SIGKILL is a real one)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from autotuner.devtools.executor import ExecutorOptions, LocalExecutor
from autotuner.operator.kube import Kube

T = TypeVar("T")

OPERATOR_ENV = {
    "AUTOTUNER_LOCAL_EXEC": "true",
    "AUTOTUNER_METRICS_PORT": "0",
    "AUTOTUNER_TASK_INTERVAL": "1",
    "AUTOTUNER_EXPERIMENT_INTERVAL": "1",
}


class OperatorProcess:
    """``autotuner-operator`` in a subprocess; :meth:`kill` sends SIGKILL, :meth:`start` starts it again."""

    def __init__(self, kubeconfig: str, log: Path, env: dict[str, str]) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        script = Path(sys.executable).parent / "autotuner-operator"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(script)],
                env={**os.environ, "KUBECONFIG": self.kubeconfig, **OPERATOR_ENV, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
async def kube(crds: str) -> AsyncIterator[Kube]:
    client = await Kube.connect(crds)
    try:
        yield client
    finally:
        await client.close()


async def _new_namespace(kube: Kube) -> str:
    name = f"op-{secrets.token_hex(4)}"
    await kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    return name


@pytest.fixture
async def namespace(kube: Kube) -> AsyncIterator[str]:
    name = await _new_namespace(kube)
    yield name
    await kube.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
async def second_namespace(kube: Kube) -> AsyncIterator[str]:
    name = await _new_namespace(kube)
    yield name
    await kube.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
async def executor(crds: str, tmp_path: Path) -> AsyncIterator[LocalExecutor]:
    """The local executor for every namespace (so tests with two namespaces share one)."""
    options = ExecutorOptions(time_scale=0.01, max_engines=12, max_benchmarks=4, log_dir=tmp_path / "exec")
    async with LocalExecutor(crds, options=options) as running:
        yield running


@pytest.fixture
def start_operator(crds: str, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(
        *, namespace: str | None, redis_url: str | None = None, env: dict[str, str] | None = None
    ) -> OperatorProcess:
        env = dict(env or {})
        if namespace:
            env["AUTOTUNER_NAMESPACE"] = namespace
        if redis_url:
            env["REDIS_URL"] = redis_url
        process = OperatorProcess(crds, tmp_path / f"operator-{len(started)}.log", env)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
