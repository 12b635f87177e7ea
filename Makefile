# Two commands on a fresh machine: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS := build/models
GRPC_PORT ?= 8500
REST_PORT ?= 8501

.PHONY: serve demo test test-real-node real-node lint lint-docker protos protos-check k8s-bins store-emulators chart-crds cluster bench fuzz clean

$(STAMP): pyproject.toml
	@echo ">> creating virtualenv $(VENV) and installing berth[server,operator,dev]"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server,operator,dev]'
	touch $(STAMP)

$(MODELS)/.exported: $(STAMP) examples/export_models.py
	@echo ">> exporting example SavedModels into $(MODELS)"
	$(BIN)/python examples/export_models.py $(MODELS)
	touch $@

serve: $(MODELS)/.exported
	@echo ">> serving $(MODELS) on gRPC :$(GRPC_PORT) and REST :$(REST_PORT) (Ctrl-C stops)"
	@echo "   curl -d '{\"instances\": [1.0, 2.0, 5.0]}' localhost:$(REST_PORT)/v1/models/half_plus_two:predict"
	@echo "   curl localhost:$(REST_PORT)/v1/models/half_plus_two"
	@echo "   $(BIN)/python examples/grpc_client.py --server=localhost:$(GRPC_PORT)"
	$(BIN)/berth-server --port=$(GRPC_PORT) --rest_api_port=$(REST_PORT) \
		--model_config_file=$(MODELS)/models.config --model_config_file_poll_wait_seconds=5

demo: $(MODELS)/.exported
	$(BIN)/python examples/demo.py --models=$(MODELS)

protos: $(STAMP)
	$(BIN)/python -m berth_server.protos.generate

protos-check: $(STAMP)
	$(BIN)/python -m berth_server.protos.generate --check

lint: $(STAMP)
	@echo ">> ruff + mypy + import-linter (the server's layers, pyproject.toml)"
	$(BIN)/ruff check server operator tests examples bench
	$(BIN)/mypy
	$(BIN)/lint-imports

lint-docker: $(STAMP)
	@echo ">> hadolint Dockerfile.server Dockerfile.operator"
	$(BIN)/hadolint Dockerfile.server Dockerfile.operator

# The chart carries a copy of the CRD (Helm reads no file outside the chart); tests/deploy fails on drift.
chart-crds:
	cp deploy/crds/modeldeployments.serving.berth.dev.yaml deploy/helm/berth/files/crds/

# A local control plane (as in the tests) with the chart installed, the operator running and an
# example applied; prints the kubectl commands to try and stays in the foreground until Ctrl-C.
cluster: $(STAMP) k8s-bins
	PYTHONPATH=tests:tests/deploy $(BIN)/python tools/dev_cluster.py

k8s-bins:
	@echo ">> control-plane, kubectl and helm binaries (built once, cached under ~/.cache/berth)"
	tools/build-k8s-bins.sh

store-emulators:
	@echo ">> moto (S3), fake-gcs-server and Azurite for the object-store tests (cached under ~/.cache/berth)"
	PYTHON=$(PYTHON) tools/build-store-emulators.sh

# The real-pod tier: containerd, kubelet and kube-proxy, Traefik as its Gateway API
# implementation, and the two images built from the Dockerfiles with buildah (cached).
real-node: k8s-bins
	@echo ">> a real node, Traefik, and the server and operator images (cached under ~/.cache/berth)"
	tools/build-real-node.sh
	@# Traefik's compile (CPU) runs beside the image builds (mostly downloads and disk).
	tools/build-traefik.sh & traefik=$$!; tools/build-images.sh; images=$$?; \
		wait $$traefik && exit $$images

# Its scenarios run in a network namespace of their own: nothing they start is reachable from,
# or reaches, anything outside it.
test-real-node: $(STAMP) real-node
	@echo ">> pytest tests/real_node (real pods, inside network namespace berth-real-node)"
	tools/in-netns.sh berth-real-node $(BIN)/pytest -q -ra tests/real_node

test: $(STAMP) lint lint-docker protos-check k8s-bins store-emulators
	@echo ">> pytest"
	$(BIN)/pytest -q -ra
	$(MAKE) test-real-node

fuzz: $(STAMP)
	@echo ">> fuzzing REST and gRPC with 120,000 generated inputs (about 20 minutes)"
	BERTH_FUZZ_EXAMPLES=40000 $(BIN)/pytest -q -p no:cacheprovider -o timeout=0 tests/server/test_fuzz.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
