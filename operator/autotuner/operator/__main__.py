"""``autotuner-operator``: run the operator (Kopf) with the settings from the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging

import kopf
from autotuner.operator.settings import OperatorSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="autotuner-operator",
        description="Reconcile AutotuneTasks and Experiments. Configuration comes from the environment: "
        "KUBECONFIG, REDIS_URL, AUTOTUNER_NAMESPACE, AUTOTUNER_LOCAL_EXEC, ... (see README).",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    settings = OperatorSettings()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # Kopf logs every watch-event handler call ("Handler 'pod_event' succeeded") at INFO.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from autotuner.operator import main as handlers  # registers the handlers with Kopf

    del handlers
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(
        kopf.operator(
            standalone=not settings.peering,
            clusterwide=settings.namespace is None,
            namespaces=[settings.namespace] if settings.namespace else [],
            liveness_endpoint=None,
        )
    )


if __name__ == "__main__":
    main()
