# The project's verbs. Everything runs from the venv that `make venv` builds (cached under ~/.cache/elastic-training).
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/elastic-training
VENV ?= $(or $(ELASTIC_TRAINING_VENV),$(CACHE)/venv)
PY := $(VENV)/bin/python
HELM = $(shell bash hack/build-controlplane.sh helm 2>/dev/null)/helm
export PATH := $(VENV)/bin:$(PATH)
PYTEST_ARGS ?=

.PHONY: help venv controlplane lint fmt crds check-generated test test-unit test-trainer test-integration \
        cluster-up cluster-down demo bench-sim bench-rescale bench-sweep bench-scale bench-drain bench-plan chaos chart

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

venv: ## create/refresh the Python environment (pip cache makes it fast after the first time)
	bash hack/ensure-venv.sh "$(VENV)"

controlplane: ## build etcd, kube-*, kubectl, kwok, helm from pinned Go modules (cached)
	bash hack/build-controlplane.sh

lint: ## ruff, mypy --strict, import contract, generated-file drift
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	cd $(CURDIR) && $(VENV)/bin/lint-imports
	$(MAKE) --no-print-directory check-generated
	$(PY) hack/sync_chart.py --check
	$(HELM) lint --strict charts/elastic-training-operator

fmt: ## format and autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

crds: ## regenerate crds/*.yaml and docs/api.md from the pydantic models
	$(PY) -m elastic_operator.api.crdgen --out crds --docs docs/api.md

chart: crds ## copy generated CRDs into the Helm chart
	$(PY) hack/sync_chart.py

check-generated: ## fail when committed generated files differ from what the models generate
	$(PY) hack/check_generated.py

test: lint ## the whole suite: lint, unit, trainer (real torch), integration (real control plane)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit:
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-trainer:
	$(PY) -m pytest tests/trainer $(PYTEST_ARGS)

test-integration:
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

cluster-up: ## start the local control plane (etcd, apiserver, scheduler, controller-manager, kwok) on loopback
	$(PY) -m hack.devcluster up

cluster-down: ## stop it and remove its state
	$(PY) -m hack.devcluster down

demo: ## the whole story on one machine
	$(PY) -m hack.demo

bench-sim: ## scheduling policy vs baselines on the Pollux workloads (simulator)
	$(PY) -m bench.sim.run

bench-rescale: ## rescale pauses: ours vs torchrun's own elastic mode
	$(PY) -m bench.rescale.run

bench-sweep: ## ASHA vs random search on real digits and MNIST-1D training
	$(PY) -m bench.sweep.run
	$(PY) -m bench.sweep.run --example examples/sweep-mnist1d.yaml --name sweep-mnist1d --seeds $(shell seq 0 15)

bench-drain: ## 50 jobs on 8 kwok nodes: time until all Succeeded
	$(PY) -m bench.drain.run

bench-plan: ## plan() speed: 1,000 queued jobs on 1,000 nodes
	$(PY) -m bench.plan_speed

bench-scale: ## 1,000 kwok nodes, 2,000 jobs
	$(PY) -m bench.scale.run

chaos: ## seeded fault injection with invariant checks
	$(PY) -m bench.chaos.run
