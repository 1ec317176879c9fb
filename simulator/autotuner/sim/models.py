"""Model shapes: what the simulator needs to know about a dense decoder-only transformer.

A model is found, in order: from ``--model-config`` (a Hugging Face ``config.json``, or a JSON
object with the fields of :class:`ModelShape`), from the built-in catalogue below, from the dense
model configs bundled with AIConfigurator (when installed), and finally from a guess for unknown
names: a Llama-like shape sized from the ``<N>B`` in the name (8B when the name has none). The
simulator logs which one it used.

Names are matched loosely: the organisation, ``Meta-`` prefix and ``-Instruct``/``-Chat``/``-it``
suffixes are ignored, so ``meta-llama/Llama-3.1-8B-Instruct`` and ``Meta-Llama-3.1-8B`` are the
same shape.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelShape:
    """The architecture numbers of a dense decoder-only transformer (Hugging Face config names)."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 32768
    aic_id: str | None = None
    """The model's id in AIConfigurator's bundled configs, when it has measured data for it."""

    @property
    def num_params(self) -> int:
        """Parameter count: embeddings, attention and gated-MLP projections, norms."""
        attn = self.hidden_size * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)
        mlp = 3 * self.hidden_size * self.intermediate_size
        per_layer = attn + mlp + 2 * self.hidden_size
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embeddings + self.hidden_size

    def kv_bytes_per_token(self, kv_dtype_bytes: float) -> float:
        """Bytes of K and V cache one token takes across all layers (whole model, not per GPU)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * kv_dtype_bytes


def _m(
    name: str,
    layers: int,
    hidden: int,
    heads: int,
    kv: int,
    inter: int,
    vocab: int,
    *,
    tied: bool = False,
    max_pos: int,
    aic: str | None = None,
    head_dim: int = 128,
) -> ModelShape:
    return ModelShape(name, layers, hidden, heads, kv, head_dim, inter, vocab, tied, max_pos, aic)


CATALOGUE: tuple[ModelShape, ...] = (
    _m("meta-llama/Llama-3.2-1B", 16, 2048, 32, 8, 8192, 128256, tied=True, max_pos=131072, head_dim=64),
    _m("meta-llama/Llama-3.2-3B", 28, 3072, 24, 8, 8192, 128256, tied=True, max_pos=131072),
    _m(
        "meta-llama/Llama-3.1-8B",
        32,
        4096,
        32,
        8,
        14336,
        128256,
        max_pos=131072,
        aic="meta-llama/Meta-Llama-3.1-8B",
    ),
    _m(
        "meta-llama/Llama-3.1-70B",
        80,
        8192,
        64,
        8,
        28672,
        128256,
        max_pos=131072,
        aic="meta-llama/Meta-Llama-3.1-70B",
    ),
    _m("Qwen/Qwen3-8B", 36, 4096, 32, 8, 12288, 151936, max_pos=40960, aic="Qwen/Qwen3-8B"),
    _m("Qwen/Qwen3-32B", 64, 5120, 64, 8, 25600, 151936, max_pos=40960, aic="Qwen/Qwen3-32B"),
    _m("Qwen/Qwen2.5-7B", 28, 3584, 28, 4, 18944, 152064, max_pos=32768),
    _m("mistralai/Mistral-7B-v0.3", 32, 4096, 32, 8, 14336, 32768, max_pos=32768),
)

_SUFFIXES = re.compile(r"(-instruct|-chat|-it|-base|-hf|-v0\.\d)+$")


def normalize_name(name: str) -> str:
    """The key names are matched by: no organisation, no ``meta-`` prefix, no instruct/chat suffix."""
    key = name.strip().rstrip("/").split("/")[-1].lower()
    key = key.removeprefix("meta-")
    return _SUFFIXES.sub("", key)


class ModelConfigError(ValueError):
    """A ``--model-config`` file that cannot be used; the message says why."""


def shape_from_config(name: str, config: dict[str, Any], aic_id: str | None = None) -> ModelShape:
    """A shape from a Hugging Face ``config.json`` dict or a dict of :class:`ModelShape` fields."""
    if "num_layers" in config:
        known = {f.name for f in fields(ModelShape)}
        unknown = set(config) - known
        if unknown:
            raise ModelConfigError(f"unknown model-config fields {sorted(unknown)}; known: {sorted(known)}")
        try:
            return ModelShape(**{"name": name, **config})
        except TypeError as exc:
            raise ModelConfigError(f"model config is missing a field: {exc}") from None
    if any(k in config for k in ("num_local_experts", "num_experts", "n_routed_experts")):
        raise ModelConfigError("mixture-of-experts models are not supported by the simulator's model shapes")
    try:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return ModelShape(
            name=name,
            num_layers=int(config["num_hidden_layers"]),
            hidden_size=hidden,
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate_size=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            max_position_embeddings=int(config.get("max_position_embeddings") or 32768),
            aic_id=aic_id,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelConfigError(f"not a usable Hugging Face config ({type(exc).__name__}: {exc})") from None


def load_model_config(name: str, path: Path) -> ModelShape:
    """The shape in the JSON file at ``path`` (see :func:`shape_from_config`)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelConfigError(f"cannot read model config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"model config {path} must hold a JSON object")
    return shape_from_config(name, data)


def _aic_bundled_configs() -> dict[str, tuple[str, Path]]:
    """AIConfigurator's bundled model configs by normalised name: (its model id, file)."""
    try:
        import aiconfigurator_core
    except ImportError:
        return {}
    found: dict[str, tuple[str, Path]] = {}
    folder = Path(aiconfigurator_core.__file__).parent / "model_configs"
    for path in folder.glob("*_config.json"):
        if path.name.endswith("_hf_quant_config.json"):
            continue
        model_id = path.name.removesuffix("_config.json").replace("--", "/", 1)
        found.setdefault(normalize_name(model_id), (model_id, path))
    return found


@dataclass(frozen=True)
class ResolvedModel:
    shape: ModelShape
    origin: str
    """Where the shape came from, for the start-up log: catalogue, model-config, aiconfigurator, guess."""


def resolve_model(name: str, model_config: Path | None = None) -> ResolvedModel:
    """The shape for ``name`` (see the module docstring for the search order)."""
    key = normalize_name(name)
    aic = _aic_bundled_configs()
    aic_id = aic[key][0] if key in aic else None
    if model_config is not None:
        shape = load_model_config(name, model_config)
        return ResolvedModel(shape, f"model-config {model_config}")
    for shape in CATALOGUE:
        if normalize_name(shape.name) == key:
            return ResolvedModel(shape, "built-in catalogue")
    if aic_id is not None:
        try:
            data = json.loads(aic[key][1].read_text())
            return ResolvedModel(shape_from_config(name, data, aic_id), "aiconfigurator model config")
        except (ModelConfigError, OSError, json.JSONDecodeError):
            pass
    return ResolvedModel(guess_shape(name), "guess from the name (unknown model)")


def guess_shape(name: str) -> ModelShape:
    """A Llama-like shape with about as many parameters as the ``<N>B`` in ``name`` says (else 8B)."""
    match = re.search(r"(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", name.split("/")[-1])
    billions = float(match.group(1)) if match else 8.0
    billions = min(max(billions, 0.1), 1000.0)
    # Grow a Llama-3-proportioned shape (layers = hidden/128, MLP 3.5x) until it reaches the size.
    hidden = 1024
    while True:
        layers = max(8, round(hidden / 128))
        inter = int(hidden * 3.5) // 256 * 256
        shape = ModelShape(
            name,
            layers,
            hidden,
            hidden // 128,
            max(1, min(8, hidden // 128)),
            128,
            inter,
            128256,
            False,
            32768,
        )
        if shape.num_params >= billions * 1e9 or hidden >= 32768:
            return shape
        hidden += 256
