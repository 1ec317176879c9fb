"""The local Kubernetes cluster: real kube-apiserver, etcd, controller-manager and scheduler, KWOK as the kubelet.

`make cluster` (``python -m autotuner.devtools.cluster up``) builds the pinned binaries once
(hack/cluster/build-tools.sh, cached outside the repository), starts the cluster with kwokctl's binary
runtime, adds fake GPU nodes and writes the admin kubeconfig to ``.local/kubeconfig``. A second call
reuses the running cluster. ``down`` stops it and frees its ports.

Pods are never run: KWOK moves them through their lifecycle with the Stage objects in hack/cluster/stages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from autotuner.devtools.ports import wait_until_closed

REPO = Path(__file__).resolve().parents[3]
HACK = REPO / "hack" / "cluster"
CLUSTER_NAME = "autotuner"
GPU_NODES = 4
GPUS_PER_NODE = 8


def _versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (HACK / "versions.env").read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.strip().startswith("#")}


def tools_dir() -> Path:
    base = os.environ.get("AUTOTUNER_TOOLS_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "autotuner" / "tools"
    )
    return Path(base) / f"bin-k8s-{_versions()['K8S_VERSION']}"


def ensure_tools() -> Path:
    """Builds the binaries that are missing (a no-op when all exist) and returns their folder."""
    needed = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "etcd",
        "kwok",
        "kwokctl",
        "helm",
    ]
    bin_dir = tools_dir()
    if not all((bin_dir / b).exists() for b in needed):
        subprocess.run(["bash", str(HACK / "build-tools.sh")], check=True, stdout=sys.stderr)
    return bin_dir


def kubectl(
    kubeconfig: Path | str, *args: str, input_: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs the pinned kubectl (the one built with the cluster, inside the version-skew window)."""
    return subprocess.run(
        [str(tools_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=input_,
        text=True,
        capture_output=True,
        check=check,
    )


def apply_crds(kubeconfig: Path | str) -> None:
    """Installs the generated CRDs (server-side apply) and waits until the API server serves them."""
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/autotunetasks.autotuner.io",
        "crd/experiments.autotuner.io",
    )


@dataclass
class LocalCluster:
    state_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def workdir(self) -> Path:
        return self.state_dir / "kwok"

    def _env(self) -> dict[str, str]:
        bin_dir = tools_dir()
        return {**os.environ, "KWOK_WORKDIR": str(self.workdir), "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def kubectl(
        self, *args: str, input_: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return kubectl(self.kubeconfig, *args, input_=input_, check=check)

    def is_running(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        result = self.kubectl("get", "--raw", "/readyz", "--request-timeout=3s", check=False)
        return result.returncode == 0 and result.stdout.strip() == "ok"

    def up(self) -> float:
        """Starts the cluster (or reuses the running one); returns the seconds it took."""
        started = time.monotonic()
        bin_dir = ensure_tools()
        if self.is_running():
            self.apply_nodes()
            return time.monotonic() - started
        self.down()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "kwok-stages.yaml"
        config.write_text("\n---\n".join(p.read_text() for p in sorted((HACK / "stages").glob("*.yaml"))))
        cmd = [
            str(bin_dir / "kwokctl"),
            "--name",
            CLUSTER_NAME,
            "--config",
            str(config),
            "create",
            "cluster",
            "--runtime",
            "binary",
            "--kubeconfig",
            str(self.kubeconfig),
            "--kube-apiserver-binary",
            str(bin_dir / "kube-apiserver"),
            "--kube-controller-manager-binary",
            str(bin_dir / "kube-controller-manager"),
            "--kube-scheduler-binary",
            str(bin_dir / "kube-scheduler"),
            "--kwok-controller-binary",
            str(bin_dir / "kwok"),
            "--etcd-binary",
            str(bin_dir / "etcd"),
            "--disable-qps-limits",
            "--wait",
            "2m",
            "--timeout",
            "5m",
        ]
        result = subprocess.run(cmd, env=self._env(), text=True, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"kwokctl create cluster failed:\n{result.stdout}\n{result.stderr}")
        self.apply_nodes()
        return time.monotonic() - started

    def apply_nodes(self) -> None:
        """Fake nodes that advertise GPUs, so engine pods requesting nvidia.com/gpu schedule."""
        nodes = []
        for index in range(GPU_NODES):
            name = f"gpu-node-{index}"
            resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": str(GPUS_PER_NODE)}
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                        },
                    },
                    "spec": {},
                    "status": {"capacity": resources, "allocatable": resources},
                }
            )
        self.kubectl(
            "apply", "-f", "-", input_=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes})
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = self.kubectl("get", "nodes", "-o", "json").stdout
            ready = [
                n
                for n in json.loads(out)["items"]
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            ]
            if len(ready) >= GPU_NODES:
                return
            time.sleep(0.5)
        raise RuntimeError("fake GPU nodes did not become Ready within 60s")

    def apiserver_port(self) -> int | None:
        if not self.kubeconfig.exists():
            return None
        server = yaml.safe_load(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        return urlsplit(str(server)).port

    def down(self) -> None:
        """Stops the cluster; returns once its API server's port is free again."""
        port = self.apiserver_port()
        kwokctl = tools_dir() / "kwokctl"
        if kwokctl.exists() and self.workdir.exists():
            subprocess.run(
                [
                    str(kwokctl),
                    "--name",
                    CLUSTER_NAME,
                    "delete",
                    "cluster",
                    "--kubeconfig",
                    str(self.kubeconfig),
                ],
                env=self._env(),
                capture_output=True,
                text=True,
            )
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)
        if port is not None:
            wait_until_closed(port)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "tools"])
    parser.add_argument("--state-dir", type=Path, default=REPO / ".local")
    args = parser.parse_args()
    cluster = LocalCluster(args.state_dir.resolve())
    if args.command == "tools":
        print(ensure_tools())
    elif args.command == "up":
        seconds = cluster.up()
        print(f"cluster ready in {seconds:.1f}s; export KUBECONFIG={cluster.kubeconfig}")
    elif args.command == "down":
        cluster.down()
        print("cluster stopped")
    else:
        running = cluster.is_running()
        print("running" if running else "not running")
        sys.exit(0 if running else 1)


if __name__ == "__main__":
    main()
