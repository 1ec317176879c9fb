"""The Kopf operator that reconciles AutotuneTasks and Experiments."""

__version__ = "0.1.0"
