"""Real api processes and WebSocket clients for the api tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import websockets
from autotuner.devtools.ports import free_port
from websockets.asyncio.client import ClientConnection


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def task_object(namespace: str, name: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "apiVersion": "autotuner.io/v1alpha1",
        "kind": "AutotuneTask",
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": "1"},
        "spec": {"model": {"name": "m"}},
        "status": {"phase": phase, "progress": "1/4"},
    }


def experiment_object(namespace: str, task: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "autotuner.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"namespace": namespace, "name": name, "labels": {"autotuner.io/task": task}},
        "spec": {"taskRef": {"name": task}, "index": 0},
        "status": {"phase": "Benchmarking"},
    }


@dataclass
class ApiServer:
    port: int
    process: subprocess.Popen[bytes]
    log_path: str

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.http + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read()
                if response.headers.get_content_type() != "application/json":
                    return response.status, body.decode(errors="replace")  # /metrics
                return response.status, json.loads(body or b"null")
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                return error.code, json.loads(body)
            except ValueError:
                return error.code, body.decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def start_api(
    redis_url: str,
    *,
    stream_key: str,
    objects: dict[str, list[dict[str, Any]]] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
    module: str = "autotuner.api.testing",
) -> ApiServer:
    """An api process on a free port, ready for requests: ``python -m autotuner.api.testing`` (in-memory
    cache holding ``objects``), or ``module="autotuner.api"`` for the production entry point."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="autotuner-api-")
    objects_path = os.path.join(workdir, "objects.json")
    with open(objects_path, "w") as f:
        json.dump(objects or {}, f)
    log_path = os.path.join(workdir, "api.log")
    full_env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "AUTOTUNER_STREAM_KEY": stream_key,
        "AUTOTUNER_STREAM_BLOCK_MS": "500",
        "AUTOTUNER_REDIS_RETRY_MAX_SECONDS": "0.5",
        "AUTOTUNER_SHUTDOWN_GRACE_SECONDS": "1",
        **(env or {}),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                *(["--objects", objects_path] if module.endswith("testing") else []),
            ],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ApiServer(port, process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"api exited with {process.returncode}:\n{server.log()}")
        try:
            if server.get("/healthz")[0] == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"api not serving after {timeout}s:\n{server.log()}")
        time.sleep(0.05)


@dataclass
class StreamClient:
    """A WebSocket client that keeps every message it reads, split into events and control messages."""

    connection: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> StreamClient:
        return cls(await websockets.connect(url, open_timeout=10, **kwargs))

    async def next(self, within: float = 10.0, *, skip: Iterable[str] = ("heartbeat",)) -> dict[str, Any]:
        skipped = set(skip)
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no message within {within}s; got so far: {self.messages[-5:]}")
            import asyncio

            raw = await asyncio.wait_for(self.connection.recv(), remaining)
            message = json.loads(raw)
            self.messages.append(message)
            if message.get("type") not in skipped:
                return message

    async def expect(self, kind: str, within: float = 10.0) -> dict[str, Any]:
        message = await self.next(within)
        assert message["type"] == kind, f"expected {kind}, got {message}"
        return message

    async def until(self, kind: str, within: float = 10.0) -> dict[str, Any]:
        """The next message of type ``kind``; the ones before it are kept in ``messages``."""
        deadline = time.monotonic() + within
        while (message := await self.next(max(0.01, deadline - time.monotonic())))["type"] != kind:
            pass
        return message

    async def events(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        """The next ``count`` events (control messages in between are kept in ``messages``)."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + within
        while len(found) < count:
            message = await self.next(max(0.01, deadline - time.monotonic()))
            if message["type"] == "event":
                found.append(message["event"])
        return found

    @property
    def last_id(self) -> str | None:
        ids = [m["event"]["id"] for m in self.messages if m.get("type") == "event"]
        return ids[-1] if ids else None

    async def close(self) -> None:
        await self.connection.close()

    def drop(self) -> None:
        """Cut the TCP connection without a closing handshake, as a network failure would."""
        self.connection.transport.abort()


async def close_code(url: str, **kwargs: Any) -> tuple[int | None, str]:
    """Connect and read until the server closes; the close code and reason."""
    async with websockets.connect(url, open_timeout=10, **kwargs) as connection:
        try:
            while True:
                await connection.recv()
        except websockets.ConnectionClosed as closed:
            rcvd = closed.rcvd
            return (rcvd.code, rcvd.reason) if rcvd else (None, "")
