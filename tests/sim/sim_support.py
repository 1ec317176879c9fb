"""Helpers shared by the simulator tests."""

from __future__ import annotations


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text to {name: value}, labels dropped (the simulator exports one series each)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{", 1)[0]] = float(value)
    return values
