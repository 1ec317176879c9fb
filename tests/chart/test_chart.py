"""The Helm chart lints, renders, and installs into a real cluster with the CRDs and RBAC it promises."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

from autotuner.devtools.cluster import kubectl, tools_dir

CHART = Path(__file__).resolve().parents[2] / "charts" / "autotuner"


def _helm(*args: str, kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--kubeconfig", kubeconfig] if kubeconfig else []
    return subprocess.run([str(tools_dir() / "helm"), *args, *extra], capture_output=True, text=True)


def test_chart_lints_clean() -> None:
    result = _helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_without_bundled_redis_requires_a_url() -> None:
    result = _helm("template", "t", str(CHART), "--set", "redis.enabled=false")
    assert result.returncode != 0
    assert "redis.url is required" in result.stderr


def test_chart_installs_operator_api_redis_and_rbac(kubeconfig: str) -> None:
    namespace = f"chart-{uuid.uuid4().hex[:8]}"
    release = f"at{uuid.uuid4().hex[:6]}"
    installed = _helm(
        "install", release, str(CHART), "-n", namespace, "--create-namespace", kubeconfig=kubeconfig
    )
    try:
        assert installed.returncode == 0, installed.stderr
        deployments = json.loads(kubectl(kubeconfig, "get", "deploy", "-n", namespace, "-o", "json").stdout)
        names = {d["metadata"]["name"] for d in deployments["items"]}
        assert names == {f"{release}-autotuner-operator", f"{release}-autotuner-api"}
        kubectl(kubeconfig, "get", "crd", "autotunetasks.autotuner.io", "experiments.autotuner.io")
        # The operator's ServiceAccount may manage experiments and engines; the api's may only read tasks.
        operator_sa = f"system:serviceaccount:{namespace}:{release}-autotuner-operator"
        api_sa = f"system:serviceaccount:{namespace}:{release}-autotuner-api"
        for verb, resource, who, allowed in [
            ("create", "experiments.autotuner.io", operator_sa, "yes"),
            ("create", "deployments.apps", operator_sa, "yes"),
            ("patch", "autotunetasks.autotuner.io/status", operator_sa, "yes"),
            ("list", "autotunetasks.autotuner.io", api_sa, "yes"),
            ("create", "tokenreviews.authentication.k8s.io", api_sa, "yes"),
            ("delete", "autotunetasks.autotuner.io", api_sa, "no"),
        ]:
            answer = kubectl(
                kubeconfig, "auth", "can-i", verb, resource, "--as", who, "-A", check=False
            ).stdout.strip()
            assert answer == allowed, (verb, resource, who, answer)
    finally:
        _helm("uninstall", release, "-n", namespace, kubeconfig=kubeconfig)
        kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False)
