"""Fixtures for the simulator tests: real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from autotuner.sim import SimConfig, SimServer, serve

ServerFactory = Callable[..., AbstractAsyncContextManager[SimServer]]


@pytest.fixture
def sim_server(tmp_path: Path) -> ServerFactory:
    """``async with sim_server(model=..., **settings) as server`` runs a simulator in-process."""

    @asynccontextmanager
    async def start(**settings: Any) -> AsyncIterator[SimServer]:
        settings.setdefault("model", "Qwen/Qwen3-8B")
        settings.setdefault("table_cache", tmp_path / "tables")
        server = await serve(SimConfig(**settings))
        try:
            yield server
        finally:
            await server.close()

    return start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session
