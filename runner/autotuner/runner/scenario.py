"""Traffic scenarios in genai-bench's notation and the synthetic prompts that realise them.

Supported scenarios (whitespace is ignored, lengths are tokens):

- ``D(in,out)`` — deterministic: every request has ``in`` input and ``out`` output tokens.
- ``N(mean_in,sd_in)/(mean_out,sd_out)`` — normal: lengths drawn from two normal distributions,
  rounded and clipped to at least 1 token.
- ``U(min_in,max_in)/(min_out,max_out)`` — uniform integers in the closed ranges.

Tokenizer approximation: the runner has no tokenizer (it would need the model's files). A prompt of
``n`` tokens is ``n`` words drawn at random from a list of short, common English words, separated by
spaces. Byte-pair tokenizers of current LLMs (Llama 3, Qwen, Mistral, GPT) encode each such
" word" as one token, so the prompt is within a few percent of ``n`` tokens. Chat requests add the
model's chat template (typically 5-30 tokens) on top. When the server reports ``usage.prompt_tokens``
the runner uses that exact count instead of the requested one. Words are drawn afresh for every
request so that a prefix cache cannot serve one prompt for all.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Short, frequent English words: each is a single token with a leading space in common BPE vocabularies.
_WORDS: tuple[str, ...] = tuple(
    [
        "the",
        "of",
        "and",
        "to",
        "in",
        "is",
        "it",
        "you",
        "that",
        "he",
        "was",
        "for",
        "on",
        "are",
        "as",
        "with",
        "his",
        "they",
        "at",
        "be",
        "this",
        "have",
        "from",
        "or",
        "one",
        "had",
        "by",
        "word",
        "but",
        "not",
        "what",
        "all",
        "were",
        "we",
        "when",
        "your",
        "can",
        "said",
        "there",
        "use",
        "an",
        "each",
        "which",
        "she",
        "do",
        "how",
        "their",
        "if",
        "will",
        "up",
        "other",
        "about",
        "out",
        "many",
        "then",
        "them",
        "these",
        "so",
        "some",
        "her",
        "would",
        "make",
        "like",
        "him",
        "into",
        "time",
        "has",
        "look",
        "two",
        "more",
        "write",
        "go",
        "see",
        "number",
        "no",
        "way",
        "could",
        "people",
        "my",
        "than",
        "first",
        "water",
        "been",
        "call",
        "who",
        "oil",
        "its",
        "now",
        "find",
        "long",
        "down",
        "day",
        "did",
        "get",
        "come",
        "made",
        "may",
        "part",
        "over",
        "new",
        "sound",
        "take",
        "only",
        "little",
        "work",
        "know",
        "place",
        "year",
        "live",
        "me",
        "back",
        "give",
        "most",
        "very",
        "after",
        "thing",
        "our",
        "just",
        "name",
        "good",
        "sentence",
        "man",
        "think",
        "say",
        "great",
        "where",
        "help",
        "through",
        "much",
        "before",
        "line",
        "right",
        "too",
        "mean",
        "old",
        "any",
        "same",
        "tell",
        "boy",
        "follow",
        "came",
        "want",
        "show",
        "also",
        "around",
        "form",
        "three",
        "small",
        "set",
        "put",
        "end",
        "does",
        "another",
        "well",
        "large",
        "must",
        "big",
        "even",
        "such",
        "because",
        "turn",
        "here",
        "why",
        "ask",
        "went",
        "men",
        "read",
        "need",
        "land",
        "different",
        "home",
        "us",
        "move",
        "try",
        "kind",
        "hand",
        "picture",
        "again",
        "change",
        "off",
        "play",
        "spell",
        "air",
        "away",
        "animal",
        "house",
        "point",
        "page",
        "letter",
        "mother",
        "answer",
        "found",
        "study",
        "still",
        "learn",
        "should",
        "world",
        "high",
    ]
)

_INT = r"(\d+)"
_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_D_RE = re.compile(rf"D\({_INT},{_INT}\)")
_N_RE = re.compile(rf"N\({_NUM},{_NUM}\)/\({_NUM},{_NUM}\)")
_U_RE = re.compile(rf"U\({_INT},{_INT}\)/\({_INT},{_INT}\)")

SCENARIO_HELP = "D(in,out), N(mean_in,sd_in)/(mean_out,sd_out) or U(min_in,max_in)/(min_out,max_out)"

MAX_TOKENS = 1_000_000
"""Largest token length a scenario may ask for; beyond it the string is surely a typo."""


class ScenarioError(ValueError):
    """A scenario string that cannot be parsed; the message says what is wrong and what is expected."""


@dataclass(frozen=True)
class Scenario:
    """A parsed traffic scenario: how to draw (input, output) token lengths for each request."""

    text: str
    """The scenario as written by the user (whitespace removed), e.g. ``D(256,64)``."""
    kind: str
    """``D`` (deterministic), ``N`` (normal) or ``U`` (uniform)."""
    input_a: float
    """Input length (D), mean (N) or minimum (U)."""
    input_b: float
    """Unused (D), standard deviation (N) or maximum (U) of the input length."""
    output_a: float
    output_b: float

    def sample(self, rng: random.Random) -> tuple[int, int]:
        """Draw one request's (input tokens, output tokens), each at least 1."""
        if self.kind == "D":
            return int(self.input_a), int(self.output_a)
        if self.kind == "N":
            return (
                max(1, round(rng.gauss(self.input_a, self.input_b))),
                max(1, round(rng.gauss(self.output_a, self.output_b))),
            )
        return (
            rng.randint(int(self.input_a), int(self.input_b)),
            rng.randint(int(self.output_a), int(self.output_b)),
        )

    @property
    def mean_input(self) -> float:
        return self.input_a if self.kind != "U" else (self.input_a + self.input_b) / 2

    @property
    def mean_output(self) -> float:
        return self.output_a if self.kind != "U" else (self.output_a + self.output_b) / 2


def _check_len(value: float, what: str, text: str) -> None:
    if value > MAX_TOKENS:
        raise ScenarioError(f"scenario {text!r}: {what} {value:g} exceeds the limit of {MAX_TOKENS} tokens")


def parse_scenario(text: str) -> Scenario:
    """Parse a genai-bench traffic scenario string; raise :class:`ScenarioError` with the reason."""
    compact = re.sub(r"\s+", "", text)
    if not compact:
        raise ScenarioError(f"empty scenario: expected {SCENARIO_HELP}")
    if m := _D_RE.fullmatch(compact):
        n_in, n_out = int(m[1]), int(m[2])
        if n_in < 1 or n_out < 1:
            raise ScenarioError(f"scenario {compact!r}: input and output lengths must be at least 1 token")
        _check_len(n_in, "input length", compact)
        _check_len(n_out, "output length", compact)
        return Scenario(compact, "D", n_in, 0, n_out, 0)
    if m := _N_RE.fullmatch(compact):
        mi, si, mo, so = (float(g) for g in m.groups())
        if mi < 1 or mo < 1:
            raise ScenarioError(f"scenario {compact!r}: mean lengths must be at least 1 token")
        _check_len(mi + 4 * si, "input mean + 4 sd", compact)
        _check_len(mo + 4 * so, "output mean + 4 sd", compact)
        return Scenario(compact, "N", mi, si, mo, so)
    if m := _U_RE.fullmatch(compact):
        lo_i, hi_i, lo_o, hi_o = (int(g) for g in m.groups())
        if min(lo_i, lo_o) < 1:
            raise ScenarioError(f"scenario {compact!r}: minimum lengths must be at least 1 token")
        if lo_i > hi_i or lo_o > hi_o:
            raise ScenarioError(f"scenario {compact!r}: a minimum is larger than its maximum")
        _check_len(hi_i, "input maximum", compact)
        _check_len(hi_o, "output maximum", compact)
        return Scenario(compact, "U", lo_i, hi_i, lo_o, hi_o)
    raise ScenarioError(f"cannot parse scenario {text!r}: expected {SCENARIO_HELP}")


def synthetic_prompt(n_tokens: int, rng: random.Random) -> str:
    """A prompt of about ``n_tokens`` tokens (see the module docstring for the approximation)."""
    return " ".join(rng.choices(_WORDS, k=n_tokens))
