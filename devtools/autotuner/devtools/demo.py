"""`make demo`: the whole system on this machine, an example task run to completion.

Starts (or reuses) the local KWOK cluster, installs the CRDs, starts Redis, the local executor (which
really runs the simulator and the benchmark runner for the pods KWOK pretends to run), the operator and
the api with the dashboard, applies examples/simulator-quickstart.yaml and follows it to the end.
Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

from autotuner.devtools.cluster import REPO, LocalCluster, apply_crds, kubectl, tools_dir
from autotuner.devtools.ports import free_port, wait_for_port
from autotuner.devtools.redis_server import RedisServer

NAMESPACE = "autotuner-demo"
EXAMPLE = REPO / "examples" / "simulator-quickstart.yaml"
BIN = Path(sys.executable).parent


class Processes:
    """Child processes started by the demo, stopped in reverse order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(args, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        self.children.append((name, process))
        return process

    def check(self) -> None:
        for name, process in self.children:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {self.log_dir / name}.log")

    def stop(self) -> None:
        for _, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for _, process in reversed(self.children):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def _task_status(kubeconfig: Path) -> dict[str, object]:
    out = kubectl(
        kubeconfig, "get", "att", "simulator-quickstart", "-n", NAMESPACE, "-o", "json", check=False
    )
    return dict(json.loads(out.stdout).get("status", {})) if out.returncode == 0 else {}


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--until-done", action="store_true", help="exit when the task ends (0 if it succeeded)"
    )
    args = parser.parse_args()
    state = REPO / ".local"
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(state)
    started_cluster = not cluster.is_running()
    print("starting the local cluster (kube-apiserver, etcd, controller-manager, scheduler, KWOK)...")
    cluster.up()
    # `timeout`, systemd and CI stop with SIGTERM: clean up exactly as for Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    apply_crds(cluster.kubeconfig)
    redis = RedisServer(appendonly=True, data_dir=state / "demo-redis")
    redis.data_dir.mkdir(exist_ok=True)
    redis.start()
    processes = Processes(logs)
    env = {
        "KUBECONFIG": str(cluster.kubeconfig),
        "REDIS_URL": redis.url,
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    api_port = free_port()
    exit_code = 0
    try:
        # Scoped to the demo's namespace, so a demo never touches other work on the same cluster.
        executor = [
            sys.executable,
            "-m",
            "autotuner.devtools.executor",
            "--kubeconfig",
            str(cluster.kubeconfig),
        ]
        processes.start(
            "executor", [*executor, "--namespace", NAMESPACE, "--log-dir", str(logs / "pods")], env
        )
        metrics_port = free_port()
        operator_env = {
            **env,
            "AUTOTUNER_LOCAL_EXEC": "true",
            "AUTOTUNER_NAMESPACE": NAMESPACE,
            "AUTOTUNER_METRICS_PORT": str(metrics_port),
        }
        processes.start("operator", [str(BIN / "autotuner-operator")], operator_env)
        processes.start(
            "api",
            [str(BIN / "autotuner-api")],
            {**env, "HOST": "127.0.0.1", "PORT": str(api_port), "AUTOTUNER_AUTH": "none"},
        )
        wait_for_port(api_port, timeout=30)
        api_url = f"http://127.0.0.1:{api_port}"
        (state / "api.url").write_text(api_url + "\n")
        kubectl(cluster.kubeconfig, "create", "namespace", NAMESPACE, check=False)
        kubectl(
            cluster.kubeconfig,
            "delete",
            "att",
            "simulator-quickstart",
            "-n",
            NAMESPACE,
            "--wait=true",
            check=False,
        )
        kubectl(cluster.kubeconfig, "apply", "-n", NAMESPACE, "-f", str(EXAMPLE))
        kubectl_bin = tools_dir() / "kubectl"
        print(f"\n  dashboard:  {api_url}/   (api base URL written to .local/api.url)")
        print(f"  watch:      {kubectl_bin} --kubeconfig {cluster.kubeconfig} get att,atx -n {NAMESPACE} -w")
        print(f"  operator metrics: http://127.0.0.1:{metrics_port}/metrics")
        print(f"  logs:       {logs}/\n")
        last = ""
        while True:
            processes.check()
            status = _task_status(cluster.kubeconfig)
            line = f"  {status.get('phase', 'Pending')}  progress {status.get('progress', '-')}  best {status.get('bestObjective', '-')}"
            if line != last:
                print(line, flush=True)
                last = line
            if status.get("phase") in {"Succeeded", "Failed"} and args.until_done:
                exit_code = 0 if status["phase"] == "Succeeded" else 1
                break
            if status.get("phase") in {"Succeeded", "Failed"}:
                print(
                    "\nthe task has finished; the system keeps running for you to explore. Ctrl-C stops it."
                )
                while True:
                    processes.check()
                    time.sleep(2)
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping...")
        exit_code = 130
    finally:
        processes.stop()
        redis.stop()
        (state / "api.url").unlink(missing_ok=True)
        if started_cluster and os.environ.get("AUTOTUNER_KEEP_CLUSTER") != "1":
            cluster.down()  # a cluster that was already running stays, with whatever else runs on it
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
