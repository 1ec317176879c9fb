"""The built-in load generator against a real streaming server on 127.0.0.1: what it measures and how
it reports each way a server can fail."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from autotuner.devtools.ports import free_port
from autotuner.runner.client import Endpoint
from autotuner.runner.loadgen import LoadConfig, RunOutcome, run_load
from autotuner.runner.scenario import parse_scenario
from autotuner.runner.stats import overall_metrics

from tests.runner.openai_server import OpenAIServer

StartServer = Callable[..., OpenAIServer]


def _quiet(_: str) -> None:
    pass


async def _run(url: str, **overrides: object) -> RunOutcome:
    settings: dict[str, object] = {
        "url": url,
        "model": "tiny",
        "scenario": parse_scenario("D(16,8)"),
        "concurrency": (1,),
        "max_requests": 8,
        "warmup": 0,
        "request_timeout": 5.0,
    } | overrides
    return await run_load(LoadConfig(**settings), progress=_quiet)  # type: ignore[arg-type]


async def test_latency_percentiles_are_ordered_and_ttft_matches_the_servers_first_token_delay(
    openai_server: StartServer,
) -> None:
    server = openai_server(first_token_delay=0.05, token_delay=0.002)
    outcome = await _run(server.url, max_requests=12)
    m = outcome.levels[0].metrics({}, 1)
    assert m["ttft_p50"] <= m["ttft_p90"] <= m["ttft_p99"]
    assert m["e2e_latency_p50"] <= m["e2e_latency_p90"] <= m["e2e_latency_p99"]
    assert 0.05 <= m["ttft_p50"] < 0.05 + 0.1
    assert m["tpot_mean"] >= 0.002
    assert m["e2e_latency_mean"] > m["ttft_mean"]
    assert m["success_rate"] == 1.0
    assert m["error_count"] == 0


async def test_token_counts_come_from_usage_and_match_the_scenario(openai_server: StartServer) -> None:
    server = openai_server()
    outcome = await _run(server.url, scenario=parse_scenario("D(40,9)"), max_requests=4)
    records = outcome.levels[0].records
    assert [(r.input_tokens, r.output_tokens) for r in records] == [(40, 9)] * 4
    assert all(len(r.itls) == 8 for r in records)


async def test_output_tokens_are_counted_from_chunks_when_the_server_sends_no_usage(
    openai_server: StartServer,
) -> None:
    server = openai_server(usage=False)
    outcome = await _run(server.url, scenario=parse_scenario("D(5,7)"), max_requests=3)
    assert [r.output_tokens for r in outcome.levels[0].records] == [7, 7, 7]
    assert all(r.input_tokens == 5 for r in outcome.levels[0].records)


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_requests_ask_for_exactly_the_output_length_on_both_endpoints(
    openai_server: StartServer, endpoint: Endpoint
) -> None:
    server = openai_server()
    outcome = await _run(
        server.url + "/v1", endpoint=endpoint, scenario=parse_scenario("D(3,6)"), max_requests=2
    )
    body = server.stats.last_body
    assert body["max_tokens"] == body["min_tokens"] == 6
    assert body["ignore_eos"] is True and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert ("messages" in body) == (endpoint is Endpoint.CHAT)
    assert all(r.ok and r.output_tokens == 6 for r in outcome.levels[0].records)


async def test_throughput_is_higher_at_concurrency_8_than_1_against_a_parallel_server(
    openai_server: StartServer,
) -> None:
    server = openai_server(first_token_delay=0.02, token_delay=0.005)
    outcome = await _run(server.url, concurrency=(1, 8), max_requests=16)
    low, high = (lv.metrics({}, 1) for lv in outcome.levels)
    assert high["output_throughput"] > 2 * low["output_throughput"]
    assert high["request_throughput"] > 2 * low["request_throughput"]
    assert server.stats.max_in_flight == 8
    overall = overall_metrics(outcome.levels, {}, 1)
    assert overall["output_throughput"] == high["output_throughput"], "overall throughput is the peak level"


async def test_goodput_counts_only_requests_that_met_every_slo(openai_server: StartServer) -> None:
    server = openai_server(first_token_delay=0.03)
    outcome = await _run(server.url, max_requests=6)
    level = outcome.levels[0]
    met = level.metrics({"ttft": 5.0, "e2e_latency": 5.0}, 1)
    missed = level.metrics({"ttft": 0.001}, 1)
    assert met["goodput"] == pytest.approx(met["request_throughput"])
    assert missed["goodput"] == 0.0
    assert level.metrics({}, 4)["output_throughput_per_gpu"] == pytest.approx(met["output_throughput"] / 4)


@pytest.mark.parametrize(
    ("knobs", "kind", "detail"),
    [
        ({"mode": "http500"}, "http", "HTTP 500"),
        ({"mode": "cut", "cut_after": 2}, "stream", ""),
        ({"mode": "malformed", "cut_after": 1}, "stream", "malformed SSE"),
        ({"mode": "truncated", "cut_after": 3}, "stream", "before [DONE]"),
    ],
)
async def test_each_server_failure_is_counted_by_kind_without_raising(
    openai_server: StartServer, knobs: dict[str, object], kind: str, detail: str
) -> None:
    server = openai_server(**knobs)
    outcome = await _run(server.url, concurrency=(1, 2), max_requests=3)
    for level in outcome.levels:
        assert len(level.records) == 3
        assert level.error_counts()[kind] == 3
        assert level.metrics({}, 1)["success_rate"] == 0.0
        assert detail in level.error_samples()[0]
    assert "ttft_p50" not in overall_metrics(outcome.levels, {}, 1), "no NaN for metrics without data"


async def test_a_stream_that_finishes_without_done_still_counts_as_success(
    openai_server: StartServer,
) -> None:
    server = openai_server(mode="no_done")
    outcome = await _run(server.url, max_requests=2)
    assert [r.output_tokens for r in outcome.levels[0].ok] == [8, 8]


async def test_a_stalled_server_yields_timeouts_within_the_level_deadline(openai_server: StartServer) -> None:
    server = openai_server(mode="stall")
    started = time.perf_counter()
    outcome = await _run(server.url, concurrency=(4,), max_requests=50, max_duration=0.5, request_timeout=30)
    assert time.perf_counter() - started < 0.5 + 2.0
    level = outcome.levels[0]
    assert level.error_counts()["timeout"] == 4, "the four in-flight requests are cut off at the deadline"
    assert not level.ok


async def test_a_stream_that_stalls_mid_way_times_out_per_request(openai_server: StartServer) -> None:
    server = openai_server(mode="stall_mid", cut_after=3)
    started = time.perf_counter()
    outcome = await _run(server.url, max_requests=2, request_timeout=0.3)
    assert time.perf_counter() - started < 2 * 0.3 + 1.5
    assert outcome.levels[0].error_counts()["timeout"] == 2


async def test_a_server_that_is_down_yields_connection_errors() -> None:
    outcome = await _run(f"http://127.0.0.1:{free_port()}", concurrency=(1, 4), max_requests=5, warmup=2)
    assert outcome.warmup_errors == 2
    for level in outcome.levels:
        assert level.error_counts()["connection"] == 5
