"""The typed source of truth for the autotuner.io/v1alpha1 custom resources.

`make crds` renders these models into crds/*.yaml (see :mod:`autotuner.core.crd.render`).
"""

GROUP = "autotuner.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "autotuner"

# Experiments are named "<task>-<index:04d>" and their benchmark Jobs "<experiment>-bench"; both must stay
# DNS-1035 labels (at most 63 characters).
TASK_NAME_MAX = 40
EXPERIMENT_NAME_MAX = 56
