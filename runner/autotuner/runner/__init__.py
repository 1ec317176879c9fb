"""The benchmark runner (``autotuner-runner``): load generation against OpenAI-compatible servers.

The operator only needs :mod:`autotuner.runner.result` (``RunnerResult``), which imports no HTTP client.
"""
