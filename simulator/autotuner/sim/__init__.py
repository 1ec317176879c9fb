"""Engine simulator: an OpenAI-compatible server that behaves like SGLang or vLLM on a GPU.

Library use (in-process)::

    from autotuner.sim import SimConfig, serve

    server = await serve(SimConfig(model="Qwen/Qwen3-8B", gpu="h200_sxm", time_scale=0.05))
    ...  # talk to server.url
    await server.close()

Subprocess use: ``autotuner-sim --port 0 --model NAME ...`` prints ``listening on URL`` when ready.
"""

from autotuner.sim.builder import EngineInfo, build_engine
from autotuner.sim.config import SimConfig
from autotuner.sim.memory import EngineStartupError
from autotuner.sim.server import SimServer, serve

__all__ = ["EngineInfo", "EngineStartupError", "SimConfig", "SimServer", "build_engine", "serve"]
