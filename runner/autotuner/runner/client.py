"""One streaming request to an OpenAI-compatible server, timed token by token.

The request asks for exactly ``out`` tokens (``max_tokens`` and ``min_tokens`` = ``out``, ``ignore_eos``
true — vLLM and SGLang honour both; servers that do not know them ignore them) and for a final usage
chunk (``stream_options.include_usage``). Server-sent events are parsed one ``data:`` line at a time
(OpenAI-compatible servers put each JSON chunk on one line). Every chunk that carries text
(``choices[0].text``, ``delta.content`` or ``delta.reasoning_content``) is a token event: the first
gives the time to first token, the gaps between consecutive ones the inter-token latencies (per chunk,
as SGLang's and vLLM's ``bench_serving`` do). Output tokens come from ``usage.completion_tokens`` when
the server sends usage, else from the number of text chunks.

Every failure becomes a :class:`RequestRecord` with an error kind, never an exception:
``http`` (status other than 200), ``connection`` (refused, reset before the response), ``timeout``
(request timeout or the level's deadline), ``stream`` (cut mid-way, malformed SSE/JSON, an error
object in the stream, or no text at all).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp
import orjson


class ErrorKind(StrEnum):
    HTTP = "http"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    STREAM = "stream"
    OTHER = "other"


class Endpoint(StrEnum):
    COMPLETIONS = "completions"
    CHAT = "chat"


@dataclass
class RequestRecord:
    """What one request measured. Times are seconds; ``ttft`` is ``None`` until a token arrived."""

    input_tokens: int
    output_tokens: int = 0
    ttft: float | None = None
    e2e: float = 0.0
    itls: list[float] = field(default_factory=list)
    error: ErrorKind | None = None
    detail: str = ""
    status: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first: ``(e2e - ttft) / (output_tokens - 1)``."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


class _StreamError(Exception):
    pass


def endpoint_url(base_url: str, endpoint: Endpoint) -> str:
    """The request URL for a server base URL given with or without a trailing ``/v1``."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + ("/chat/completions" if endpoint is Endpoint.CHAT else "/completions")


def build_payload(model: str, prompt: str, output_tokens: int, endpoint: Endpoint) -> dict[str, Any]:
    """The JSON body that asks for a stream of exactly ``output_tokens`` tokens."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": output_tokens,
        "min_tokens": output_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if endpoint is Endpoint.CHAT:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body


def _chunk_text(chunk: dict[str, Any]) -> bool:
    """Whether a parsed chunk carries generated text."""
    choices = chunk.get("choices")
    if not choices:
        return False
    first = choices[0]
    if not isinstance(first, dict):
        raise _StreamError("choices[0] is not an object")
    if first.get("text"):
        return True
    delta = first.get("delta")
    return isinstance(delta, dict) and bool(delta.get("content") or delta.get("reasoning_content"))


async def send_request(
    session: aiohttp.ClientSession,
    url: str,
    payload: bytes,
    input_tokens: int,
    deadline: float,
) -> RequestRecord:
    """Send one streaming request and time it; give up at ``deadline`` (a ``time.perf_counter`` value).

    Never raises (except on cancellation of the calling task): every failure is in the record.
    """
    rec = RequestRecord(input_tokens=input_tokens)
    start = time.perf_counter()
    last = start
    chunks = 0
    usage_tokens: int | None = None
    done = finished = False
    phase = "connect"
    try:
        async with asyncio.timeout(max(0.0, deadline - start)):
            async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as resp:
                rec.status = resp.status
                if resp.status != 200:
                    body = await resp.content.read(300)
                    rec.error, rec.detail = (
                        ErrorKind.HTTP,
                        f"HTTP {resp.status}: {body.decode(errors='replace')}",
                    )
                    return rec
                phase = "stream"
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue  # blank separators, ``event:``/``id:`` fields and ``:`` comments
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError as exc:
                        raise _StreamError(f"malformed SSE data: {data[:80]!r}") from exc
                    if not isinstance(chunk, dict):
                        raise _StreamError(f"SSE data is not a JSON object: {data[:80]!r}")
                    if "error" in chunk:
                        raise _StreamError(f"server error in stream: {str(chunk['error'])[:200]}")
                    if _chunk_text(chunk):
                        now = time.perf_counter()
                        if chunks == 0:
                            rec.ttft = now - start
                        else:
                            rec.itls.append(now - last)
                        last = now
                        chunks += 1
                    choices = chunk.get("choices") or []
                    if choices and choices[0].get("finish_reason"):
                        finished = True
                    usage = chunk.get("usage")
                    if isinstance(usage, dict):
                        if isinstance(usage.get("completion_tokens"), int):
                            usage_tokens = usage["completion_tokens"]
                        if isinstance(usage.get("prompt_tokens"), int):
                            rec.input_tokens = usage["prompt_tokens"]
        rec.e2e = time.perf_counter() - start
        if not (done or finished):
            raise _StreamError("stream ended before [DONE]")
        if chunks == 0:
            raise _StreamError("stream carried no tokens")
        rec.output_tokens = usage_tokens if usage_tokens is not None and usage_tokens > 0 else chunks
    except TimeoutError:
        rec.error, rec.detail = (
            ErrorKind.TIMEOUT,
            f"no complete response after {time.perf_counter() - start:.1f}s",
        )
    except _StreamError as exc:
        rec.error, rec.detail = ErrorKind.STREAM, str(exc)
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        kind = ErrorKind.STREAM if phase == "stream" else ErrorKind.CONNECTION
        rec.error, rec.detail = kind, f"{type(exc).__name__}: {exc}"
    except (aiohttp.ClientConnectionError, OSError) as exc:
        rec.error, rec.detail = ErrorKind.CONNECTION, f"{type(exc).__name__}: {exc}"
    except ValueError as exc:  # aiohttp's "Line is too long" and similar protocol violations
        rec.error, rec.detail = ErrorKind.STREAM, f"{type(exc).__name__}: {exc}"
    except aiohttp.ClientError as exc:
        rec.error, rec.detail = ErrorKind.OTHER, f"{type(exc).__name__}: {exc}"
    if rec.error is not None:
        rec.e2e = time.perf_counter() - start
        rec.detail = rec.detail[:300]
    return rec
