"""The simulator speaks the OpenAI API the way SGLang and vLLM do, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.sim.conftest import ServerFactory
from tests.sim.sim_support import parse_metrics


async def read_sse(response: aiohttp.ClientResponse) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    events: list[str] = []
    async for raw in response.content:
        line = raw.decode().strip()
        if line:
            assert line.startswith("data: "), line
            events.append(line.removeprefix("data: "))
    return events


@pytest.mark.parametrize("chat", [False, True])
async def test_streaming_response_has_exactly_max_tokens_chunks_then_usage_and_done(
    sim_server: ServerFactory, http: aiohttp.ClientSession, chat: bool
) -> None:
    async with sim_server(time_scale=0.01) as server:
        body: dict[str, Any] = {
            "model": "Qwen/Qwen3-8B",
            "max_tokens": 17,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if chat:
            body["messages"] = [{"role": "user", "content": "the of and to in is it you"}]
        else:
            body["prompt"] = "the of and to in is it you"
        path = "/v1/chat/completions" if chat else "/v1/completions"
        async with http.post(server.url + path, json=body) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            events = await read_sse(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    token_chunks, usage_chunk = chunks[:-1], chunks[-1]
    assert len(token_chunks) == 17
    assert {c["object"] for c in token_chunks} == {"chat.completion.chunk" if chat else "text_completion"}
    assert len({c["id"] for c in chunks}) == 1
    finishes = [c["choices"][0]["finish_reason"] for c in token_chunks]
    assert finishes == [None] * 16 + ["length"]
    if chat:
        assert token_chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert all(c["choices"][0]["delta"]["content"] for c in token_chunks)
    else:
        assert all(c["choices"][0]["text"] for c in token_chunks)
    assert usage_chunk["choices"] == []
    prompt_tokens = 8 + (4 + 3 if chat else 0)  # chat template: 4 per message + 3
    assert usage_chunk["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 17,
        "total_tokens": prompt_tokens + 17,
    }


async def test_streaming_without_include_usage_sends_no_usage_chunk(
    sim_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async with sim_server(time_scale=0) as server:
        body = {"prompt": "hello there", "max_tokens": 3, "stream": True}
        async with http.post(server.url + "/v1/completions", json=body) as response:
            events = await read_sse(response)
    assert events[-1] == "[DONE]"
    assert [("usage" in json.loads(e)) for e in events[:-1]] == [False] * 3


@pytest.mark.parametrize("chat", [False, True])
async def test_non_streaming_response_holds_max_tokens_and_usage(
    sim_server: ServerFactory, http: aiohttp.ClientSession, chat: bool
) -> None:
    async with sim_server(time_scale=0.01) as server:
        body: dict[str, Any] = {"model": "Qwen/Qwen3-8B", "max_tokens": 9, "ignore_eos": True}
        if chat:
            body["messages"] = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        else:
            body["prompt"] = [1, 2, 3, 4, 5]
        path = "/v1/chat/completions" if chat else "/v1/completions"
        async with http.post(server.url + path, json=body) as response:
            assert response.status == 200
            data = await response.json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "length"
    assert data["object"] == ("chat.completion" if chat else "text_completion")
    assert data["usage"]["completion_tokens"] == 9
    assert data["usage"]["prompt_tokens"] == (3 + (2 + 4) + (1 + 4) if chat else 5)
    text = choice["message"]["content"] if chat else choice["text"]
    assert len(text.split()) >= 8  # one filler word per token (some are punctuation)


async def test_models_endpoint_says_the_owner_is_the_simulator(
    sim_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async with (
        sim_server(served_model_name="my-llm") as server,
        http.get(server.url + "/v1/models") as response,
    ):
        data = await response.json()
    assert data["object"] == "list"
    assert [(m["id"], m["owned_by"]) for m in data["data"]] == [("my-llm", "autotuner-simulator")]


async def test_health_answers_503_while_loading_then_200(
    sim_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async with sim_server(startup_delay=0.5) as server:
        async with http.get(server.url + "/health") as response:
            assert response.status == 503
        deadline = time.monotonic() + 10
        while True:
            async with http.get(server.url + "/health_generate") as response:
                if response.status == 200:
                    break
            assert time.monotonic() < deadline, "health never became 200"
            await asyncio.sleep(0.05)
        async with http.get(server.url + "/health") as response:
            assert response.status == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/completions", "not json", 400, "not valid JSON"),
        ("/v1/completions", [1, 2], 400, "JSON object"),
        ("/v1/completions", {"max_tokens": 4}, 400, "'prompt'"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": "ten"}, 400, "max_tokens"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 2, "min_tokens": 5}, 400, "min_tokens"),
        ("/v1/completions", {"prompt": "hi", "n": 2}, 400, "n=1"),
        ("/v1/completions", {"prompt": "hi", "stream": "yes"}, 400, "stream"),
        ("/v1/completions", {"prompt": "hi", "model": "other"}, 404, "does not exist"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 50_000}, 400, "maximum context length"),
        ("/v1/chat/completions", {"messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"messages": [{"content": "x"}]}, 400, "role"),
    ],
)
async def test_bad_requests_get_openai_style_errors(
    sim_server: ServerFactory,
    http: aiohttp.ClientSession,
    path: str,
    body: Any,
    status: int,
    needle: str,
) -> None:
    async with sim_server(time_scale=0) as server:
        data = body if isinstance(body, str) else json.dumps(body)
        async with http.post(server.url + path, data=data) as response:
            assert response.status == status
            error = (await response.json())["error"]
    assert needle in error["message"]
    assert error["code"] == status
    assert error["type"] == "invalid_request_error"


async def test_request_larger_than_the_kv_cache_is_rejected_with_a_clear_error(
    sim_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    # Qwen3-8B on an H100 at 0.23: about 6,400 tokens of KV cache.
    async with sim_server(mem_fraction=0.23, time_scale=0) as server:
        body = {"prompt": [7] * 6000, "max_tokens": 1000}
        async with http.post(server.url + "/v1/completions", json=body) as response:
            assert response.status == 400
            assert "KV cache" in (await response.json())["error"]["message"]


async def test_metrics_gauges_move_under_load_and_settle_after(
    sim_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async with sim_server(time_scale=0.2, max_running_requests=4) as server:
        body = {"prompt": "word " * 200, "max_tokens": 64, "ignore_eos": True}
        load = [asyncio.create_task(http.post(server.url + "/v1/completions", json=body)) for _ in range(10)]
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 20
        while not (seen.get("running", 0) >= 2 and seen.get("waiting", 0) >= 1 and seen.get("kv", 0) > 0):
            assert time.monotonic() < deadline, f"gauges never moved: {seen}"
            async with http.get(server.url + "/metrics") as response:
                assert response.content_type == "text/plain"
                values = parse_metrics(await response.text())
            assert values["vllm:num_requests_running"] == values["sglang:num_running_reqs"]
            assert values["vllm:num_requests_running"] <= 4
            seen["running"] = max(seen.get("running", 0), values["vllm:num_requests_running"])
            seen["waiting"] = max(seen.get("waiting", 0), values["sglang:num_queue_reqs"])
            seen["kv"] = max(seen.get("kv", 0), values["vllm:gpu_cache_usage_perc"])
            await asyncio.sleep(0.02)
        for response in await asyncio.gather(*load):
            assert response.status == 200
            response.release()
        async with http.get(server.url + "/metrics") as response:
            values = parse_metrics(await response.text())
    assert values["vllm:num_requests_running"] == 0
    assert values["vllm:num_requests_waiting"] == 0
    assert values["sglang:token_usage"] == 0
    assert values["vllm:generation_tokens_total"] == 10 * 64
    assert values["vllm:request_success_total"] == 10
    assert values["vllm:time_to_first_token_seconds_count"] == 10
