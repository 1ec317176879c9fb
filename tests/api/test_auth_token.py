"""AUTOTUNER_AUTH=token: one shared secret guards REST and streams."""

from __future__ import annotations

from collections.abc import Callable

from api_support import ApiServer, StreamClient, close_code


async def test_token_mode_admits_the_token_and_refuses_anything_else_with_401_or_4401(
    api_factory: Callable[..., ApiServer],
) -> None:
    api = api_factory(env={"AUTOTUNER_AUTH": "token", "AUTOTUNER_API_TOKEN": "s3cret"})
    good = {"Authorization": "Bearer s3cret"}
    assert api.get("/api/v1/tasks", good)[0] == 200
    assert api.get("/api/v1/tasks", {"Authorization": "Bearer wrong"})[0] == 401
    assert api.get("/api/v1/tasks")[0] == 401
    assert api.get("/healthz")[0] == 200, "probes need no token"

    client = await StreamClient.open(f"{api.ws}/api/ws/all?access_token=s3cret")
    await client.expect("snapshot")
    await client.close()
    code, reason = await close_code(f"{api.ws}/api/ws/all", additional_headers={"Authorization": "Bearer no"})
    assert (code, reason) == (4401, "invalid token")
    assert (await close_code(f"{api.ws}/api/ws/all"))[0] == 4401


def test_token_mode_without_a_token_refuses_to_start(api_factory: Callable[..., ApiServer]) -> None:
    import pytest

    with pytest.raises(RuntimeError, match="AUTOTUNER_API_TOKEN"):
        api_factory(env={"AUTOTUNER_AUTH": "token"})
