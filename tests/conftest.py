"""Session fixtures: real services for the tests that need them.

A cluster comes from ``KUBECONFIG`` when set, else the local KWOK cluster is started; Redis from
``REDIS_URL`` when set, else a redis-server on a free loopback port. When one cannot be had the
dependent tests fail with the reason: they never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from autotuner.devtools.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[str]:
    """The cluster in ``KUBECONFIG``, else the local KWOK cluster (started here, and stopped if we started it)."""
    if path := os.environ.get("KUBECONFIG"):
        yield path
        return
    from autotuner.devtools.cluster import REPO, LocalCluster

    cluster = LocalCluster(REPO / ".local")
    was_running = cluster.is_running()
    cluster.up()  # raises with kwokctl's output when the cluster cannot start: the tests fail, never skip
    try:
        yield str(cluster.kubeconfig)
    finally:
        if not was_running and os.environ.get("AUTOTUNER_KEEP_CLUSTER") != "1":
            cluster.down()


@pytest.fixture(scope="session")
def crds(kubeconfig: str) -> str:
    """The cluster with this checkout's CRDs installed; yields the kubeconfig path."""
    from autotuner.devtools.cluster import apply_crds

    apply_crds(kubeconfig)
    return kubeconfig
