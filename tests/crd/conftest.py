from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from autotuner.devtools.cluster import kubectl


@pytest.fixture
def namespace(crds: str) -> Iterator[str]:
    name = f"crd-{uuid.uuid4().hex[:8]}"
    kubectl(crds, "create", "namespace", name)
    try:
        yield name
    finally:
        kubectl(crds, "delete", "namespace", name, "--wait=false", check=False)
