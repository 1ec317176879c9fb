"""Fixtures for the runner's tests: the in-test OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tests.runner.openai_server import Behaviour, OpenAIServer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def openai_server() -> Iterator[Callable[..., OpenAIServer]]:
    """Start servers with the given :class:`Behaviour` knobs; all are stopped after the test."""
    servers: list[OpenAIServer] = []

    def start(**knobs: object) -> OpenAIServer:
        server = OpenAIServer(Behaviour(**knobs)).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
