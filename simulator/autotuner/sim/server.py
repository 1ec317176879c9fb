"""The OpenAI-compatible HTTP front of the simulated engine (aiohttp, one asyncio process).

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions`` (streaming SSE or not),
``GET /v1/models``, ``GET /health`` (and SGLang's ``/health_generate``), ``GET /metrics``
(Prometheus text, vLLM- and SGLang-style names), ``GET /sim/info`` (the simulator's own settings).

Tokenizer approximation (there is no tokenizer): a prompt has one token per whitespace-separated
word, plus one per further 10 characters of a long word; token-id prompts count exactly. Chat
messages add 4 tokens each and 3 for the assistant header, as Llama-3-style templates do. The
simulator never samples an end-of-sequence token: every request generates exactly ``max_tokens``
tokens (finish_reason ``length``), so ``ignore_eos`` is accepted and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from autotuner.sim.builder import EngineInfo, build_engine
from autotuner.sim.config import SimConfig
from autotuner.sim.engine import Engine, RequestRejected, SimRequest, Status

logger = logging.getLogger("autotuner.sim")

OWNER = "autotuner-simulator"
_OUTPUT_WORDS = (
    " This", " is", " a", " simulated", " response", " from", " the", " autotuner", " engine",
    " simulator", ",", " not", " a", " real", " model", ".",
)  # fmt: skip
ENGINE_KEY = web.AppKey("engine", Engine)
INFO_KEY = web.AppKey("info", EngineInfo)
CONFIG_KEY = web.AppKey("config", SimConfig)
READY_AT_KEY = web.AppKey("ready_at", float)


def count_text_tokens(text: str) -> int:
    return sum(1 + (len(word) - 1) // 10 for word in text.split())


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


def error_response(message: str, *, status: int = 400, param: str | None = None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return web.json_response(body, status=status)


@dataclass
class ParsedRequest:
    chat: bool
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool


def _int_field(body: dict[str, Any], name: str, default: int | None, minimum: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(f"'{name}' must be an integer >= {minimum}, got {value!r}", name)
    return value


def _bool_field(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be a boolean, got {value!r}", name)
    return value


def _prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return count_text_tokens(prompt)
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        return len(prompt)
    if isinstance(prompt, list) and len(prompt) == 1:
        return _prompt_tokens(prompt[0])
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, (str, list)) for p in prompt):
        raise BadRequest(
            "batched prompts are not supported by the simulator; send one prompt per request", "prompt"
        )
    raise BadRequest(
        "'prompt' must be a string, a list of token ids, or a one-element list of either", "prompt"
    )


def _message_tokens(messages: Any) -> int:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list", "messages")
    total = 3
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a string 'role'", "messages")
        content = message.get("content")
        if isinstance(content, str):
            total += count_text_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if (
                    not isinstance(part, dict)
                    or part.get("type") != "text"
                    or not isinstance(part.get("text"), str)
                ):
                    raise BadRequest(f"messages[{i}].content parts must be text parts", "messages")
                total += count_text_tokens(part["text"])
        elif content is not None:
            raise BadRequest(f"messages[{i}].content must be a string or a list of text parts", "messages")
        total += 4
    return total


def parse_request(body: Any, *, chat: bool, served_name: str, default_max_tokens: int) -> ParsedRequest:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != served_name:
        raise BadRequest(f"The model `{model}` does not exist.", "model", status=404)
    prompt_tokens = _message_tokens(body.get("messages")) if chat else _prompt_tokens(body.get("prompt"))
    names = ("max_completion_tokens", "max_tokens") if chat else ("max_tokens",)
    max_tokens: int | None = None
    for name in names:
        max_tokens = max_tokens or _int_field(body, name, None, 1)
    max_tokens = max_tokens or default_max_tokens
    min_tokens = _int_field(body, "min_tokens", 0, 0) or 0
    if min_tokens > max_tokens:
        raise BadRequest(f"min_tokens ({min_tokens}) must be <= max_tokens ({max_tokens})", "min_tokens")
    n = _int_field(body, "n", 1, 1)
    if n != 1:
        raise BadRequest("only n=1 is supported by the simulator", "n")
    _bool_field(body, "ignore_eos")
    stream = _bool_field(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object", "stream_options")
    include_usage = bool(options and options.get("include_usage"))
    return ParsedRequest(chat, prompt_tokens, max_tokens, stream, include_usage)


def _usage(req: SimRequest) -> dict[str, int]:
    return {
        "prompt_tokens": req.prompt_tokens,
        "completion_tokens": req.generated,
        "total_tokens": req.prompt_tokens + req.generated,
    }


def _choice(parsed: ParsedRequest, text: str, finish: str | None, *, first: bool = False) -> dict[str, Any]:
    if not parsed.chat:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    delta: dict[str, Any] = {"content": text}
    if first:
        delta["role"] = "assistant"
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


class _Watcher:
    """Bridges the engine's callbacks to the handler: wakes it whenever the request changes."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()

    def __call__(self, req: SimRequest) -> None:
        self.changed.set()

    async def wait(self) -> None:
        await self.changed.wait()
        self.changed.clear()


async def _generate(request: web.Request, *, chat: bool) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    config = request.app[CONFIG_KEY]
    if time.monotonic() < request.app[READY_AT_KEY]:
        return error_response("the model is still loading", status=503)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error_response("the request body is not valid JSON")
    try:
        parsed = parse_request(
            body, chat=chat, served_name=config.name, default_max_tokens=config.default_max_tokens
        )
    except BadRequest as exc:
        return error_response(str(exc), status=exc.status, param=exc.param)
    watcher = _Watcher()
    try:
        req = engine.submit(parsed.prompt_tokens, parsed.max_tokens, watcher)
    except RequestRejected as exc:
        return error_response(str(exc), param="max_tokens")
    rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    obj = "chat.completion" if chat else "text_completion"
    try:
        if parsed.stream:
            return await _stream(request, req, watcher, parsed, rid, created, obj, config.name)
        while not req.done:
            await watcher.wait()
        if req.status is not Status.FINISHED:
            return error_response(req.error or "the request was aborted", status=500)
        text = "".join(_OUTPUT_WORDS[i % len(_OUTPUT_WORDS)] for i in range(req.generated))
        choice: dict[str, Any]
        if chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length",
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        body_out = {
            "id": rid,
            "object": obj,
            "created": created,
            "model": config.name,
            "choices": [choice],
            "usage": _usage(req),
        }
        return web.json_response(body_out)
    finally:
        engine.abort(req)


async def _stream(
    request: web.Request,
    req: SimRequest,
    watcher: _Watcher,
    parsed: ParsedRequest,
    rid: str,
    created: int,
    obj: str,
    model: str,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    chunk_obj = f"{obj}.chunk" if parsed.chat else obj

    def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        payload: dict[str, Any] = {"id": rid, "object": chunk_obj, "created": created, "model": model}
        payload["choices"] = choices
        if usage is not None:
            payload["usage"] = usage
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    try:
        await _write_stream(response, req, watcher, parsed, event)
    except ConnectionResetError:
        # The client went away mid-stream (benchmarks close at the end of a level); the caller aborts it.
        logger.debug("client closed the stream of %s", rid)
    return response


async def _write_stream(
    response: web.StreamResponse,
    req: SimRequest,
    watcher: _Watcher,
    parsed: ParsedRequest,
    event: Callable[..., bytes],
) -> None:
    sent = 0
    while True:
        await watcher.wait()
        out = bytearray()
        while sent < req.generated:
            last = req.status is Status.FINISHED and sent == req.generated - 1
            word = _OUTPUT_WORDS[sent % len(_OUTPUT_WORDS)]
            out += event([_choice(parsed, word, "length" if last else None, first=sent == 0)])
            sent += 1
        if req.status is Status.FAILED:
            error = {"error": {"message": req.error, "type": "server_error", "code": 500}}
            out += b"data: " + json.dumps(error).encode() + b"\n\n"
        if req.done and parsed.include_usage and req.status is Status.FINISHED:
            out += event([], _usage(req))
        if req.done:
            out += b"data: [DONE]\n\n"
        if out:
            await response.write(bytes(out))
        if req.done:
            break
    await response.write_eof()


async def completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=False)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=True)


async def models(request: web.Request) -> web.Response:
    info = request.app[INFO_KEY]
    model = {
        "id": info.model,
        "object": "model",
        "created": 0,
        "owned_by": OWNER,
        "root": request.app[CONFIG_KEY].model,
        "max_model_len": info.max_model_len,
    }
    return web.json_response({"object": "list", "data": [model]})


async def health(request: web.Request) -> web.Response:
    if time.monotonic() < request.app[READY_AT_KEY]:
        return web.Response(status=503, text="loading")
    return web.Response(status=200, text="")


async def sim_info(request: web.Request) -> web.Response:
    return web.json_response({"simulator": True, **asdict(request.app[INFO_KEY])})


def metrics_text(engine: Engine, info: EngineInfo) -> str:
    s = engine.stats
    escaped = info.model.replace("\\", "\\\\").replace('"', '\\"')
    label = f'{{model_name="{escaped}"}}'
    running = len(engine.running)
    waiting = len(engine.waiting)
    usage = engine.kv_used / engine.capacity
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, value: float, suffix: str = "") -> None:
        if not suffix:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name}{suffix}{label} {value}")

    metric("vllm:num_requests_running", "gauge", "Requests in the running batch.", running)
    metric("vllm:num_requests_waiting", "gauge", "Requests waiting to be scheduled.", waiting)
    metric("vllm:gpu_cache_usage_perc", "gauge", "KV-cache usage, 1 = full.", usage)
    metric("vllm:num_preemptions_total", "counter", "Preempted (recomputed) requests.", s.preemptions)
    metric("vllm:prompt_tokens_total", "counter", "Prefilled prompt tokens.", s.prompt_tokens)
    metric("vllm:generation_tokens_total", "counter", "Generated tokens.", s.generation_tokens)
    metric("vllm:request_success_total", "counter", "Finished requests.", s.requests_finished)
    for name, help_, total, n in (
        ("vllm:time_to_first_token_seconds", "Time to first token (simulated s).", s.ttft_sum, s.ttft_count),
        (
            "vllm:time_per_output_token_seconds",
            "Time per output token (simulated s).",
            s.tpot_sum,
            s.tpot_count,
        ),
        ("vllm:e2e_request_latency_seconds", "End-to-end latency (simulated s).", s.e2e_sum, s.e2e_count),
    ):
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} summary")
        lines.append(f"{name}_sum{label} {total}")
        lines.append(f"{name}_count{label} {n}")
    metric("sglang:num_running_reqs", "gauge", "Requests in the running batch.", running)
    metric("sglang:num_queue_reqs", "gauge", "Requests waiting in the queue.", waiting)
    metric("sglang:token_usage", "gauge", "KV-cache token usage, 1 = full.", usage)
    metric("sglang:num_used_tokens", "gauge", "KV-cache tokens in use.", engine.kv_used)
    metric("autotuner_sim_kv_cache_capacity_tokens", "gauge", "KV-cache capacity in tokens.", engine.capacity)
    metric("autotuner_sim_num_gpus", "gauge", "GPUs the simulated engine uses (tp).", info.num_gpus)
    metric("autotuner_sim_busy_seconds_total", "counter", "Simulated seconds spent in steps.", s.busy_seconds)
    metric("autotuner_sim_steps_total", "counter", "Engine iterations run.", s.steps)
    metric(
        "autotuner_sim_requests_rejected_total",
        "counter",
        "Requests refused on arrival.",
        s.requests_rejected,
    )
    metric(
        "autotuner_sim_requests_failed_total", "counter", "Requests failed while running.", s.requests_failed
    )
    lines.append("# HELP autotuner_sim_info The simulator's performance source and hardware.")
    lines.append("# TYPE autotuner_sim_info gauge")
    lines.append(
        f'autotuner_sim_info{{model_name="{escaped}",source="{info.perf_source}",gpu="{info.gpu}",'
        f'runtime="{info.runtime}"}} 1'
    )
    return "\n".join(lines) + "\n"


async def metrics(request: web.Request) -> web.Response:
    text = metrics_text(request.app[ENGINE_KEY], request.app[INFO_KEY])
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def create_app(engine: Engine, info: EngineInfo, config: SimConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024**2)
    app[ENGINE_KEY] = engine
    app[INFO_KEY] = info
    app[CONFIG_KEY] = config
    app[READY_AT_KEY] = time.monotonic() + config.startup_delay
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/health_generate", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/sim/info", sim_info)

    async def lifecycle(app: web.Application) -> Any:
        engine.start()
        yield
        await engine.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


class SimServer:
    """A running simulator: ``port``, ``url``, ``engine``, ``info``; ``await close()`` stops it."""

    def __init__(self, runner: web.AppRunner, engine: Engine, info: EngineInfo, host: str, port: int) -> None:
        self._runner = runner
        self.engine = engine
        self.info = info
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> SimServer:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def serve(config: SimConfig, *, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    """Build the engine (``ValueError`` / ``EngineStartupError`` when it cannot start) and serve it
    on ``host:port`` (0 picks a free port) in the running event loop."""
    engine, info = build_engine(config)
    runner = web.AppRunner(create_app(engine, info, config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    return SimServer(runner, engine, info, host, bound)
