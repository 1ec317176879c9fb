"""Pure translation of a pod's container command into the local command the executor runs.

No Kubernetes and no processes here, so every mapping is testable as a table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit, urlunsplit


class UnsupportedCommandError(ValueError):
    """The container's command has no local equivalent (a kubelet would report it as a StartError)."""


@dataclass(frozen=True)
class EngineCommand:
    """What an engine container runs, as the simulator understands it."""

    runtime: str
    """``simulator``, ``sglang`` or ``vllm``: which engine the container's command line launches."""
    args: tuple[str, ...]
    """The engine's own arguments (flags, and ``serve MODEL`` for vLLM), without the launcher."""


_OOM = re.compile(r"out of memory|OutOfMemoryError|\bOOM\b", re.IGNORECASE)


def _basename(word: str) -> str:
    return PurePosixPath(word).name


def _after_module(argv: Sequence[str], modules: Sequence[str]) -> tuple[str, ...] | None:
    """The arguments after ``python -m MODULE`` when MODULE is one of ``modules``."""
    if not argv or not _basename(argv[0]).startswith("python"):
        return None
    for index, word in enumerate(argv[:-1]):
        if word == "-m" and argv[index + 1] in modules:
            return tuple(argv[index + 2 :])
    return None


def container_argv(container: dict[str, object]) -> list[str]:
    """``command`` followed by ``args``, as the container runtime would exec them."""
    command = container.get("command") or []
    args = container.get("args") or []
    if not isinstance(command, list) or not isinstance(args, list):
        raise UnsupportedCommandError("container command and args must be lists of strings")
    return [str(word) for word in [*command, *args]]


def parse_engine(argv: Sequence[str]) -> EngineCommand:
    """Recognises the simulator, SGLang's and vLLM's launchers; anything else is unsupported."""
    if not argv:
        raise UnsupportedCommandError(
            "the engine container has no command: the local executor cannot run an image's entrypoint"
        )
    head = _basename(argv[0])
    if head == "autotuner-sim":
        return EngineCommand("simulator", tuple(argv[1:]))
    if head == "vllm" and len(argv) > 1 and argv[1] == "serve":
        return EngineCommand("vllm", tuple(argv[1:]))
    rest = _after_module(argv, ("autotuner.sim", "autotuner.sim.cli"))
    if rest is not None:
        return EngineCommand("simulator", rest)
    rest = _after_module(argv, ("sglang.launch_server",))
    if rest is not None:
        return EngineCommand("sglang", rest)
    rest = _after_module(argv, ("vllm.entrypoints.openai.api_server",))
    if rest is not None:
        return EngineCommand("vllm", rest)
    raise UnsupportedCommandError(
        f"no local equivalent for engine command {list(argv)[:4]}...: the local executor runs "
        "autotuner-sim, `python -m sglang.launch_server` and `vllm serve` command lines"
    )


def _without_flags(args: Sequence[str], flags: Sequence[str]) -> list[str]:
    """Drops ``--flag VALUE`` and ``--flag=VALUE`` for each flag (all take a value)."""
    out: list[str] = []
    skip = False
    for word in args:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if name in flags:
            skip = "=" not in word
            continue
        out.append(word)
    return out


def _has_flag(args: Sequence[str], flag: str) -> bool:
    return any(word == flag or word.startswith(flag + "=") for word in args)


def simulator_argv(
    engine: EngineCommand, *, sim_command: Sequence[str], time_scale: float, gpu: str | None = None
) -> list[str]:
    """The local simulator command: the engine's flags, on a free loopback port, scaled in time.

    The pod's ``--port``/``--host`` are replaced (many pods share port 8000; only loopback is safe);
    a ``--time-scale`` or ``--gpu`` the pod gives itself is kept.
    """
    args = _without_flags(engine.args, ("--port", "--host"))
    if engine.runtime != "simulator":
        args = _without_flags(args, ("--runtime",))
        args += ["--runtime", engine.runtime]
    if not _has_flag(args, "--time-scale"):
        args += ["--time-scale", repr(time_scale)]
    if gpu and not _has_flag(args, "--gpu"):
        args += ["--gpu", gpu]
    return [*sim_command, *args, "--host", "127.0.0.1", "--port", "0"]


# Node label values (NVIDIA GPU feature discovery's product names) -> the simulator's GPU types.
_GPU_PRODUCTS = (("H200", "h200_sxm"), ("H100", "h100_sxm"), ("B200", "b200_sxm"), ("A100", "a100_sxm"))


def simulator_gpu(product: str | None) -> str | None:
    """The simulator GPU type for a node's ``nvidia.com/gpu.product`` label, when it models it."""
    if not product:
        return None
    upper = product.upper()
    if "L40S" in upper:
        return "l40s"
    return next((gpu for key, gpu in _GPU_PRODUCTS if key in upper), None)


def runner_args(argv: Sequence[str]) -> list[str]:
    """The runner's arguments (after ``autotuner-runner`` / ``python -m autotuner.runner``)."""
    if argv and _basename(argv[0]) == "autotuner-runner":
        return list(argv[1:])
    rest = _after_module(argv, ("autotuner.runner", "autotuner.runner.cli"))
    if rest is not None:
        return list(rest)
    raise UnsupportedCommandError(
        f"no local equivalent for benchmark command {list(argv)[:4]}...: the local executor runs "
        "autotuner-runner command lines"
    )


def flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value of ``--flag VALUE`` or ``--flag=VALUE`` (the last one wins, as argparse does)."""
    value: str | None = None
    for index, word in enumerate(args):
        if word == flag and index + 1 < len(args):
            value = args[index + 1]
        elif word.startswith(flag + "="):
            value = word.split("=", 1)[1]
    return value


def with_flag(args: Sequence[str], flag: str, value: str) -> list[str]:
    """``args`` with every ``flag`` replaced by one ``flag value``."""
    return [*_without_flags(args, (flag,)), flag, value]


@dataclass(frozen=True)
class ServiceRef:
    name: str
    namespace: str


def service_of_url(url: str, default_namespace: str) -> ServiceRef | None:
    """The Service a cluster URL names (``svc``, ``svc.ns``, ``svc.ns.svc[.cluster.local]``), if any."""
    host = urlsplit(url).hostname
    if not host or re.fullmatch(r"[0-9.]+|\[?[0-9a-f:]+\]?", host):
        return None
    parts = host.split(".")
    if len(parts) == 1:
        return ServiceRef(parts[0], default_namespace)
    if len(parts) == 2 or (len(parts) >= 3 and parts[2] == "svc"):
        return ServiceRef(parts[0], parts[1])
    return None


def rebase_url(url: str, base: str) -> str:
    """``url`` with its scheme and authority replaced by ``base``'s, keeping path and query."""
    original = urlsplit(url)
    target = urlsplit(base)
    return urlunsplit((target.scheme, target.netloc, original.path, original.query, original.fragment))


def looks_out_of_memory(text: str) -> bool:
    """Whether an engine's output reports running out of (GPU) memory."""
    return bool(_OOM.search(text))


def log_tail(text: str, *, max_lines: int = 80, max_bytes: int = 2048) -> str:
    """The end of a log, bounded like a kubelet's ``FallbackToLogsOnError`` message (80 lines, 2 KiB)."""
    lines = text.rstrip("\n").splitlines()[-max_lines:]
    data = "\n".join(lines).encode()[-max_bytes:]
    return data.decode(errors="replace")


def termination_message(text: str, *, max_bytes: int = 4096) -> str:
    """A termination message bounded like a kubelet's (4 KiB; the end is kept, where results are)."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[-max_bytes:].decode(errors="replace")
