"""SIMULATION TOOLING - the local executor: makes pods "run" on a KWOK cluster by running their
commands on THIS machine.

KWOK plays the kubelet but runs no container. For pods labelled ``autotuner.io/local-exec: "true"``
(the operator adds it when ``AUTOTUNER_LOCAL_EXEC=true``), this process does what a kubelet would:

- engine pods (``autotuner.io/role: engine``): starts ``autotuner-sim`` locally with the pod's engine
  flags (SGLang and vLLM command lines are mapped to the simulator with ``--runtime sglang|vllm``), on a
  free loopback port, with ``--time-scale`` (default 0.02); once it answers ``/health`` the pod becomes
  Ready. If it exits (e.g. the simulator's out-of-memory refusal of an over-committed memory fraction),
  the pod shows what a kubelet shows for a crashed Deployment container: waiting CrashLoopBackOff,
  ``lastState.terminated`` {exitCode, reason OOMKilled or Error, message: the output's tail}.
  Deleting the pod stops the simulator.
- benchmark pods (``autotuner.io/role: benchmark``): runs ``autotuner-runner`` locally with the pod's
  arguments, its ``--url http://SERVICE.NS.svc:PORT`` pointed at the local simulator behind that Service;
  the runner's exit code and its compact JSON result become the container's ``state.terminated`` and
  the pod Succeeds or Fails.

It hands results to KWOK through ``autotuner.io/exec-*`` annotations that the Stages in
hack/cluster/stages/local-exec-*.yaml copy into the pod's status. Test hooks on a pod
(``autotuner.io/sim-fault: never-ready | crash | oom | image-pull``) are played by those Stages alone.

SAFETY: it refuses to start unless every node carries ``kwok.x-k8s.io/node=fake``, and never runs a
pod bound to a node without it. Never point it at a cluster with real kubelets.

    python -m autotuner.devtools.executor --kubeconfig .local/kubeconfig [--namespace NS]

or in-process: ``async with LocalExecutor(kubeconfig, namespace=ns): ...``.
"""

from autotuner.devtools.executor.core import (
    FAULT_ANNOTATION,
    LOCAL_EXEC_LABEL,
    ROLE_LABEL,
    ExecutorOptions,
    LocalExecutor,
    NotAKwokClusterError,
)

__all__ = [
    "FAULT_ANNOTATION",
    "LOCAL_EXEC_LABEL",
    "ROLE_LABEL",
    "ExecutorOptions",
    "LocalExecutor",
    "NotAKwokClusterError",
]
