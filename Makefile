# Autotuner — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCAL := .local
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv and install the project with its dev extras (skipped when up to date)

.PHONY: tools
tools: venv ## Build the pinned Kubernetes, etcd, KWOK and helm binaries (once; cached outside the repo)
	$(PY) -m autotuner.devtools.cluster tools

.PHONY: cluster
cluster: venv ## Start the local cluster (apiserver, etcd, controller-manager, scheduler, KWOK); kubeconfig in .local/kubeconfig
	$(PY) -m autotuner.devtools.cluster up

.PHONY: cluster-down
cluster-down: venv ## Stop the local cluster and free its ports
	$(PY) -m autotuner.devtools.cluster down

.PHONY: kind
kind: ## Alternative for machines with a Docker engine: a kind cluster (not used by the tests here)
	@command -v kind >/dev/null || { echo "kind is not installed: go install sigs.k8s.io/kind@v0.30.0"; exit 1; }
	kind create cluster --name autotuner --kubeconfig $(LOCAL)/kubeconfig
	@echo "export KUBECONFIG=$(LOCAL)/kubeconfig   # real kubelets: run real engine images, no local executor"

.PHONY: redis
redis: venv ## Start redis-server on a free 127.0.0.1 port (nothing persisted); URL in .local/redis.url
	$(PY) -m autotuner.devtools.redis_server start

.PHONY: redis-down
redis-down: venv ## Stop the redis-server started by `make redis`
	$(PY) -m autotuner.devtools.redis_server stop

.PHONY: crds
crds: venv ## Generate crds/*.yaml from the typed models
	$(PY) -m autotuner.core.crd.render

.PHONY: lint
lint: venv ## ruff and mypy (strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy core operator api runner simulator devtools

.PHONY: test
test: venv tools ## The whole test suite; starts the cluster and Redis it needs
	$(PY) -m autotuner.core.crd.render --check
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: bench
bench: venv ## Performance harness: prints tables and writes them under bench/results/
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b $(BENCH_ARGS); done

.PHONY: demo
demo: venv tools ## Local cluster + Redis + CRDs + operator + api, an example task run to completion (Ctrl-C stops all)
	$(PY) -m autotuner.devtools.demo

.PHONY: clean
clean: ## Remove local state (.local) and the venv; the cached binaries stay
	-$(PY) -m autotuner.devtools.cluster down
	rm -rf $(LOCAL) $(VENV)
