"""Traffic scenarios: genai-bench notation parsed, bad strings rejected with a reason, lengths drawn >= 1."""

from __future__ import annotations

import random

import pytest
from autotuner.runner.scenario import ScenarioError, parse_scenario, synthetic_prompt


@pytest.mark.parametrize(
    ("text", "kind", "sample"),
    [
        ("D(256,64)", "D", (256, 64)),
        (" D( 1 , 1 ) ", "D", (1, 1)),
        ("N(100,0)/(50,0)", "N", (100, 50)),
        ("N(480.5,0)/(300,0)", "N", (480, 300)),
        ("U(10,10)/(7,7)", "U", (10, 7)),
    ],
)
def test_valid_scenarios_parse_to_their_token_lengths(text: str, kind: str, sample: tuple[int, int]) -> None:
    scenario = parse_scenario(text)
    assert scenario.kind == kind
    assert scenario.sample(random.Random(0)) == sample


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty scenario"),
        ("D(256)", "cannot parse"),
        ("D(256,64", "cannot parse"),
        ("d(256,64)", "cannot parse"),
        ("D(0,64)", "at least 1 token"),
        ("D(-5,64)", "cannot parse"),
        ("D(2.5,64)", "cannot parse"),
        ("N(100,10)", "cannot parse"),
        ("N(0,10)/(50,5)", "at least 1 token"),
        ("U(20,10)/(5,6)", "larger than its maximum"),
        ("U(0,10)/(5,6)", "at least 1 token"),
        ("D(99999999,1)", "exceeds the limit"),
        ("X(1,2)", "cannot parse"),
    ],
)
def test_invalid_scenarios_are_rejected_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ScenarioError, match=reason) as info:
        parse_scenario(text)
    if reason == "cannot parse":
        assert "D(in,out)" in str(info.value), "the error must say which forms are accepted"


def test_normal_scenario_lengths_are_clipped_to_at_least_one_token() -> None:
    scenario = parse_scenario("N(2,50)/(2,50)")
    rng = random.Random(1)
    draws = [scenario.sample(rng) for _ in range(500)]
    assert min(min(d) for d in draws) == 1
    assert max(max(d) for d in draws) > 2


def test_uniform_scenario_lengths_stay_within_their_ranges() -> None:
    scenario = parse_scenario("U(10,20)/(3,4)")
    rng = random.Random(2)
    draws = [scenario.sample(rng) for _ in range(300)]
    assert {i for i, _ in draws} == set(range(10, 21))
    assert {o for _, o in draws} == {3, 4}


@pytest.mark.parametrize("n", [1, 17, 4000])
def test_synthetic_prompt_has_one_word_per_requested_token(n: int) -> None:
    prompt = synthetic_prompt(n, random.Random(n))
    assert len(prompt.split()) == n


def test_synthetic_prompts_differ_between_requests_so_a_prefix_cache_cannot_serve_them() -> None:
    rng = random.Random(0)
    assert synthetic_prompt(64, rng) != synthetic_prompt(64, rng)
