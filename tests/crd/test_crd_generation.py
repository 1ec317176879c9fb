"""The CRDs in crds/ are generated from the typed models and stay in sync with them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from autotuner.core.crd.render import render_all

REPO = Path(__file__).resolve().parents[2]


def test_crd_yaml_in_repository_and_chart_matches_the_models() -> None:
    for folder in ("crds", "charts/autotuner/crds"):
        for name, text in render_all().items():
            assert (REPO / folder / name).read_text() == text, f"{folder}/{name} is stale: run `make crds`"


def test_crd_check_command_reports_a_stale_file(tmp_path: Path) -> None:
    for name, text in render_all().items():
        (tmp_path / name).write_text(text)
    stale = next(iter(render_all()))
    (tmp_path / stale).write_text("# edited by hand\n")
    result = subprocess.run(
        [sys.executable, "-m", "autotuner.core.crd.render", "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert stale in result.stderr and "make crds" in result.stderr


def test_schemas_are_structural_without_open_spec_or_status() -> None:
    import yaml

    for text in render_all().values():
        schema = yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            node = schema["properties"][part]
            assert node["type"] == "object"
            assert "x-kubernetes-preserve-unknown-fields" not in node
            assert node["properties"], part
