"""`make cluster`, `make cluster-down` and `make redis` do what the README promises."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import redis
from autotuner.devtools.cluster import LocalCluster, kubectl


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_cluster_up_reuses_a_running_cluster(kubeconfig: str) -> None:
    cluster = LocalCluster(Path(kubeconfig).parent)
    marker = f"reuse-{uuid.uuid4().hex[:8]}"
    kubectl(kubeconfig, "create", "namespace", marker)
    try:
        cluster.up()
        assert kubectl(kubeconfig, "get", "namespace", marker, check=False).returncode == 0, (
            "the cluster was recreated"
        )
        nodes = kubectl(
            kubeconfig, "get", "nodes", "-o", "jsonpath={.items[*].status.allocatable.nvidia\\.com/gpu}"
        )
        assert nodes.stdout.split() == ["8", "8", "8", "8"]
    finally:
        kubectl(kubeconfig, "delete", "namespace", marker, "--wait=false", check=False)


def test_cluster_down_stops_the_cluster_and_frees_its_port(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "state")
    cluster.up()
    try:
        port = cluster.apiserver_port()
        assert port is not None and cluster.is_running() and not _refuses(port)
    finally:
        cluster.down()
    assert _refuses(port), f"port {port} still answers after down"
    assert not cluster.kubeconfig.exists()


def test_make_redis_starts_a_server_and_writes_its_url(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "autotuner.devtools.redis_server", "--state-dir", str(tmp_path)]
    started = subprocess.run([*command, "start"], capture_output=True, text=True, check=True, timeout=30)
    url = (tmp_path / "redis.url").read_text().strip()
    try:
        assert started.stdout.strip() == url and url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert client.config_get("appendonly")["appendonly"] == "no", "nothing is persisted"
        again = subprocess.run([*command, "start"], capture_output=True, text=True, check=True, timeout=30)
        assert again.stdout.strip() == url, "a second start reuses the running server"
    finally:
        subprocess.run([*command, "stop"], check=True, timeout=30)
    assert _refuses(urlsplit(url).port or 6379)
    assert not (tmp_path / "redis.url").exists()
