"""`make demo` runs the whole system on this machine and takes the example task to completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_example_task_to_success_and_serves_it_over_the_api(kubeconfig: str) -> None:
    env = {**os.environ, "AUTOTUNER_KEEP_CLUSTER": "1"}
    env.pop("KUBECONFIG", None)  # the demo is about the local cluster
    demo = subprocess.Popen(
        [sys.executable, "-m", "autotuner.devtools.demo", "--until-done"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    api_phases: list[str] = []
    url_file = REPO / ".local" / "api.url"
    deadline = time.monotonic() + 300
    try:
        while demo.poll() is None and time.monotonic() < deadline:
            if url_file.exists():
                api = url_file.read_text().strip()
                try:
                    with urllib.request.urlopen(
                        f"{api}/api/v1/namespaces/autotuner-demo/tasks", timeout=5
                    ) as r:
                        body = json.loads(r.read())
                    items = body["items"] if isinstance(body, dict) else body
                    api_phases += [(t.get("status") or {}).get("phase", "") for t in items]
                except OSError:
                    pass
            time.sleep(1)
        output = demo.communicate(timeout=60)[0]
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output[-3000:]
    assert "get att,atx -n autotuner-demo -w" in output
    assert "Succeeded  progress 10/10" in output
    assert "Running" in api_phases, "the api served the task while it ran"
    assert not url_file.exists(), "the demo removes .local/api.url when it stops"
