"""Serve the api with an in-memory resource cache loaded from a JSON file — for the test suite and
bench/, which have no cluster. Not a production mode: ``autotuner-api`` always watches Kubernetes.

    python -m autotuner.api.testing --objects objects.json   # {"autotunetasks": [...], "experiments": [...]}

Settings come from the environment exactly as for ``autotuner-api``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson
from autotuner.api.__main__ import run
from autotuner.api.app import create_app
from autotuner.api.cache import Kind, MemoryCache
from autotuner.api.observability import configure_logging
from autotuner.api.settings import Settings
from pydantic import ValidationError


def load_cache(path: Path | None) -> MemoryCache:
    cache = MemoryCache()
    if path is not None:
        data = orjson.loads(path.read_bytes())
        for kind in Kind:
            cache.replace(kind, list(data.get(kind.value, [])))
    return cache


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=Path, help="JSON file of autotunetasks and experiments")
    args = parser.parse_args()
    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(f"invalid settings:\n{error}")
    configure_logging(settings.log_level)
    run(settings, create_app(settings, cache=load_cache(args.objects)))


if __name__ == "__main__":
    main()
