# BLIP VQA on Triton: build traced artifacts, serve them, ask questions, test.
# Variables: TARGET=cpu|gpu|neuron  LAYOUT=ensemble|colocated  MODEL=random-tiny|random-base|<dir>|<hub id>|s3://<bucket>/<prefix>  FORCE=1  FP16=1
#            STATIC_SHAPES=1 FAST_RESIZE=1 NEURON_COMPILER_ARGS INSTANCES NEURON_CORES_PER_INSTANCE INTRA_OP_THREADS
#            MAX_QUEUE_DELAY_US STEP_QUEUE_DELAY_US *_BUCKETS (build-artifacts)  HEAL_INTERVAL_S LOG_JSON=1 (serve)
#            KEEP_VERSIONS (build-artifacts)  MODEL_VERSION MODEL_VERSION_FILE (serve, model-version)
#            HOST_TYPE=inf2.xlarge|g5.xlarge|local|... (plan)  LISTEN_ADDRESS=127.0.0.1|0.0.0.0 (serve, api)
#            HTTP_PORT GRPC_PORT METRICS_PORT (serve)  API_CONFIG API_PORT API_METRICS_PORT INSECURE_DEV=1 (api)
#            BENCH_MODEL BENCH_SECONDS BENCH_FRAMES (bench)  SLO_MS RATE PERF_INSTANCES PERF_CONCURRENCY URL GRPC_URL HOST_TYPE (perf)
#            SOAK_SECONDS (soak)
#            PYTEST_ARGS

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TARGET ?= cpu
MODEL ?= random-tiny
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
# HOST (before HOST_TYPE and LISTEN_ADDRESS) still works where it meant one thing: plan's host type, serve's address.
HOST_TYPE ?= $(or $(HOST),local)
LISTEN_ADDRESS ?= $(or $(HOST),127.0.0.1)
API_CONFIG ?= client/api.toml
IMAGE ?= client/samples/chelsea.png
Q ?= Is there a cat?
BENCH_MODEL ?= random-base
# The commands read their defaults from BLIP_<NAME> (blip_contract.env): each variable goes to them under that name.
BLIP_VARIABLES := TARGET LAYOUT MODEL FORCE FP16 STATIC_SHAPES FAST_RESIZE NEURON_COMPILER_ARGS INSTANCES \
	NEURON_CORES_PER_INSTANCE INTRA_OP_THREADS MAX_QUEUE_DELAY_US STEP_QUEUE_DELAY_US \
	QUESTION_BUCKETS IMAGE_BATCH_BUCKETS QUESTION_BATCH_BUCKETS \
	HOST_TYPE LISTEN_ADDRESS HTTP_PORT GRPC_PORT METRICS_PORT HEAL_INTERVAL_S SUPERVISOR_METRICS_PORT \
	API_PORT API_METRICS_PORT INSECURE_DEV TRITON_URL LOG_LEVEL LOG_JSON \
	BENCH_SECONDS BENCH_FRAMES BENCH_LAYOUTS BENCH_OMP_VARIANTS NAIVE_FRAMES NEIGHBOUR_FRAMES \
	SLO_MS RATE PERF_INSTANCES PERF_LAYOUTS PERF_CONCURRENCY GPU_CHECK_BUDGET_S MODEL_VERSION MODEL_VERSION_FILE KEEP_VERSIONS
$(foreach name,$(BLIP_VARIABLES),$(eval export BLIP_$(name) = $$($(name))))

.DEFAULT_GOAL := help
.PHONY: help install install-dev lock k8s-render images-check plan capacity cost build-artifacts serve model-version api openapi env-reference ask demo bench bench-events bench-pixels bench-host perf soak gpu-check gpu-check-carry test test-unit test-integration compat-check mutate lint format clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# `make install`: the serving stack and the embedded Triton, every pin and hash from requirements/fleet-cpu.lock
# (torch's CPU build from PyTorch's CPU index, or the wheel in pip's find-links), then the project, editable.
$(BIN)/.installed: pyproject.toml requirements/fleet-cpu.lock
	$(PYTHON) -m venv $(VENV)
	$(PYTHON) tools/locks.py install cpu --python $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# `make install-dev`: tests and tools on top (requirements/dev.lock); `make test` and CI take this path.
$(BIN)/.installed-dev: $(BIN)/.installed requirements/dev.lock
	$(PYTHON) tools/locks.py install dev --python $(BIN)/python
	touch $@

# checkov (Kubernetes manifest checks in the tests) pins its own dependencies: it gets a venv of its own.
TOOLS ?= .venv-tools
$(TOOLS)/.installed: Makefile
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30
	touch $@

install: $(BIN)/.installed ## Create .venv for serving and the demo: pinned, hashed (requirements/fleet-cpu.lock), torch's CPU build

install-dev: $(BIN)/.installed-dev $(TOOLS)/.installed ## install, plus tests and tools (requirements/dev.lock) and .venv-tools (checkov)

lock: install-dev ## Resolve requirements/*.lock (hashes) for every image and environment of docker/images.toml
	$(BIN)/python tools/locks.py write

plan: install ## Placement for a host type (HOST_TYPE=inf2.xlarge|g5.xlarge|local|...): layout, instances, cores -> artifacts/plan-<target>.json
	$(BIN)/python -m blip_serving.placement --host-type $(HOST_TYPE)

build-artifacts: install ## Trace, verify and write artifacts/$(TARGET) + configs (every layout) for MODEL
	$(BIN)/python -m blip_build --target $(TARGET) --model $(MODEL)

serve: install ## Run Triton for TARGET and LAYOUT (default: the plan's) on LISTEN_ADDRESS (HTTP_PORT, GRPC_PORT, METRICS_PORT)
	$(BIN)/python -m blip_serving.serve --target $(TARGET) --listen-address $(LISTEN_ADDRESS)

model-version: install ## Serve VERSION from now on: every make serve reading MODEL_VERSION_FILE switches live (rollback: the old VERSION)
	$(BIN)/python -m blip_serving.serve --target $(TARGET) --set-model-version $(VERSION)

api: install ## Run the API tier (router + FastAPI) on LISTEN_ADDRESS:API_PORT for the fleets in API_CONFIG
	$(BIN)/python -m blip_api --config $(API_CONFIG)

openapi: install ## Write docs/openapi.json, the API's contract as served for client/api.toml (a test fails when they differ)
	$(BIN)/python -m blip_api --config client/api.toml --openapi > docs/openapi.json

env-reference: ## Write docs/environment.md, every BLIP_ variable the code reads (a test fails when it is not the code's)
	$(PYTHON) tools/env_reference.py

ask: install ## Ask a running server: make ask IMAGE=client/samples/chelsea.png Q="Is there a cat?"
	$(BIN)/python -m blip_client ask --image $(IMAGE) "$(Q)"

demo: ## Offline end to end: install, build random-tiny for cpu, serve, ask three questions, replay a camera through the API tier (SQLite), stop
	$(MAKE) --no-print-directory build-artifacts TARGET=cpu MODEL=$(MODEL)
	$(BIN)/python -m blip_serving.demo --target cpu --image client/samples/chelsea.png

bench: install-dev ## Floor vs served vs naive transformers, matmul limit, memory (BENCH_MODEL, default random-base); then bench-host
	$(BIN)/python -m blip_bench.bench --model $(BENCH_MODEL) --target $(TARGET)
	$(BIN)/python -m blip_bench.host --target $(TARGET)

bench-events: install-dev ## Change gate, event and webhook figures through the real API tier and a real fleet: gated share per clip, CPU per frame, store time, alert quality, nothing lost under SIGKILL -> benchmarks/results/events-cpu.json
	$(BIN)/python -m blip_bench.events

bench-pixels: install-dev ## Frames sent encoded vs as pixels resized in the API tier, one run: fleet and API CPU per frame at 1080p and 360p, inf2.xlarge ceiling, wire bytes -> benchmarks/results/pixels-cpu.json
	$(BIN)/python -m blip_bench.pixels

bench-host: install-dev ## Host CPU per camera frame by process, requests per execute, stage split, fast-resize agreement -> benchmarks/results/host-<target>.json
	$(BIN)/python -m blip_bench.host --target $(TARGET)

perf: install-dev ## perf_analyzer sweep: knee under SLO_MS, capacity for RATE; URL=host:port measures a deployed fleet as it runs (HOST_TYPE=)
	$(BIN)/python -m blip_bench.perf $(if $(URL),--url $(URL) $(if $(GRPC_URL),--grpc-url $(GRPC_URL)),--model $(BENCH_MODEL) --target $(TARGET)) $(if $(filter-out file,$(origin HOST_TYPE))$(HOST),--host-type $(HOST_TYPE))

gpu-check-carry: install-dev ## Here: pack what a GPU machine lacks (Triton, tritonclient wheels) into .gpucarry/
	benchmarks/gpu_check.sh carry

gpu-check: ## On a CUDA machine: build gpu fp32/fp16, compare with transformers, floor and served -> bench-gpu.json
	benchmarks/gpu_check.sh run $(GPU_CHECK_ARGS)

soak: install-dev ## API tier + two self-healing fleets on loopback, mixed traffic, a stub and a fleet killed (SOAK_SECONDS, default 600) -> benchmarks/results/soak-cpu.{json,png}
	$(BIN)/python -m blip_bench.soak --seconds $(or $(SOAK_SECONDS),600)

k8s-render: ## Render OVERLAY (default: every overlay) with images from REGISTRY at TAG: kubectl kustomize, images rewritten
	tools/k8s_render.sh $(or $(OVERLAY),all) $(REGISTRY) $(TAG)

images-check: install ## Build the cpu fleet and API images with buildah (local Debian base), run them, ask through the API
	tools/images_check.sh

capacity: install ## HPA per-pod target from make perf's knee x headroom -> overlays/<fleet>-autoscaling/capacity.yaml, only from that fleet's target and host type (PERF=)
	$(BIN)/python -m blip_serving.capacity capacity $(if $(PERF),--perf $(PERF))

cost: install ## $/h, $ per million frames and questions per fleet for RATE frames/s, from perf results and deploy/prices.toml
	$(BIN)/python -m blip_serving.capacity cost --rate $(or $(RATE),10)

test: install-dev ## Unit tests, then integration tests against a real Triton server
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install-dev ## Unit tests only (no server)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install-dev ## Integration tests only (real Triton server)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

compat-check: ## The stub and build on the Neuron release's torch and Python (throwaway .venv-compat, ~4 GB; not in make test)
	tools/compat_check.sh all

mutate: install-dev ## Mutation testing (mutmut) of router, supervisor, cost, manifest, placement, input checks vs the unit suite; fails under 85% killed
	$(BIN)/python tools/mutate.py

lint: install-dev ## ruff check and format check, and the import layers (import-linter contracts in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

format: install-dev ## ruff fix and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## Remove artifacts and generated configs (keeps .venv)
	rm -rf artifacts model_repository/*/configs .pytest_cache .bench .gpu-check
