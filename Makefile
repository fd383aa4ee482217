# Flywheel: `make run` (the main job on the embedded local default) and `make test`.
# Every target that needs Python depends on .venv, which builds itself from requirements.lock.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The `flywheel` command (flywheel_cli/; the console script of the same name once installed).
FLYWHEEL := $(PY) -m flywheel_cli
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
# kfp.local starts each task with the `python3` on PATH: put the venv first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null; $(PY) -m pip install -q "uv==$(UV_VERSION)"; }
	$(UV) pip install -q --python $(PY) -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps --config-settings editable_mode=compat -e .
	@touch $@

.PHONY: setup
setup: $(VENV)/.installed system-deps ## Build .venv from requirements.lock and install Debian packages (idempotent).

.PHONY: system-deps
system-deps: ## Install Debian packages the tests need (prometheus, promtool, alertmanager; protoc and MariaDB for KFP's backend; containerd, runc, CNI plugins, iptables and gcc for the kubelet node) if missing.
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null \
	  && command -v protoc >/dev/null && command -v mariadbd >/dev/null \
	  && command -v containerd >/dev/null && command -v runc >/dev/null && command -v iptables >/dev/null \
	  && command -v gcc >/dev/null && [ -x /usr/lib/cni/bridge ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager \
	    protobuf-compiler mariadb-server containerd runc containernetworking-plugins iptables gcc libc6-dev >/dev/null; }

.PHONY: lock
lock: $(VENV)/.installed ## Regenerate requirements.lock from pyproject.toml with uv pip compile.
	$(UV) pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

.PHONY: test
test: ## Run the whole test suite (sets itself up first; the test control plane builds in the background meanwhile; installs and starts a Docker engine for the container tests). Prints each stage's time.
	@t0=$$(date +%s); \
	$(MAKE) --no-print-directory setup tools feast mlmd browser-deps || exit 1; \
	echo "== set-up (virtual environments, Debian packages): $$(( $$(date +%s) - t0 )) s"; \
	$(PY) -m controlplane build --background; \
	docker/engine.sh $(PY) -m pytest -q tests; status=$$?; \
	echo "== make test: $$(( $$(date +%s) - t0 )) s in all (the time per test folder is above)"; exit $$status

# --- browser for the report tests (tests/browser) -----------------------------------------
.PHONY: browser-deps
browser-deps: ## Install Debian's chromium (headless, for the HTML report tests) if missing.
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=120 \
	    --no-install-recommends chromium >/dev/null; }
# --- end of browser for the report tests --------------------------------------------------

.PHONY: test-fast
test-fast: $(VENV)/.installed feast mlmd ## The tests without whole-pipeline runs (kfp.local), for quick iterations (about 6 min; builds .venv-feast and .venv-mlmd for the tests that run in them).
	$(PY) -m pytest -q -m "not slow" tests

# --- data and training pipeline -----------------------------------------------------------
DATA ?=
LABEL ?=
KFP_HOST ?=
MODEL_REPOSITORY ?=
IMAGE ?= ghcr.io/flywheel-mlops/flywheel-component:0.1.0
CRON ?= 0 0 3 * * *
TO ?=
SET ?=
PACKAGE ?=
MODEL ?=
FORCE ?=
VERBOSE ?=
WAIT ?=
FEATURES ?=
# PARAMS=file.yaml: the settings file run, trigger and loop read instead of params.yaml.
PARAMS ?=
# FEATURES=1: each span is built from the feature store (ingest.features: a point-in-time join of
# the area aggregates, featurestore/), with a schema inferred for the wider table, into a model of
# its own so the default model's versions are not compared with a model of other inputs.
FEATURE_SETS = $(if $(FEATURES),ingest.features=true schema.curated= push.model_name=taxi_tips_features)
RUN_FLAGS = $(if $(PARAMS),--params '$(PARAMS)') $(foreach kv,$(FEATURE_SETS) $(SET),--set '$(kv)') $(if $(FORCE),--force) $(if $(VERBOSE),--verbose)

RUNNER ?= subprocess
# RUNNER=docker runs every task in the component image (kfp.local DockerRunner): the image is
# built or refreshed first, and both steps run with an engine at hand (docker/engine.sh).
RUN_IN := $(if $(filter docker,$(RUNNER)),docker/engine.sh,)

.PHONY: run
run: $(VENV)/.installed ## Main job: data (dvc repro), pipeline on span 1 then span 2, summary. Own file: DATA=f.csv LABEL=col [MODEL=name] [SET="train.epochs=20 ..."] [FORCE=1] [VERBOSE=1] [RUNNER=subprocess|docker] [FEATURES=1: spans from the feature store]
ifeq ($(DATA),)
	$(MAKE) --no-print-directory data
	$(if $(FEATURES),$(MAKE) --no-print-directory feast-apply)
else
	@test -n "$(LABEL)" || { echo "error: give the label column: make run DATA=$(DATA) LABEL=<column>" >&2; exit 2; }
endif
ifeq ($(RUNNER),docker)
	docker/engine.sh $(PY) docker/build.py component
endif
	$(RUN_IN) $(FLYWHEEL) run $(if $(DATA),--data "$(DATA)" --label "$(LABEL)" $(if $(MODEL),--model-name "$(MODEL)")) $(RUN_FLAGS) --runner $(RUNNER)

DEMO_DIR := build/readme-demo
.PHONY: readme-demo
readme-demo: $(VENV)/.installed ## `make run` on the default data into a fresh repository ($(DEMO_DIR)/), then README.md's demo block rewritten from its summary (CHECK=1: only compare the decisions, exit 1 when they differ) [RUNNER=subprocess|docker]
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	set -o pipefail; $(MAKE) --no-print-directory run RUNNER=$(RUNNER) SET="push.model_repository=$(CURDIR)/$(DEMO_DIR)/model_repository $(SET)" 2>&1 | tee $(DEMO_DIR)/run.log
	$(PY) -m pipelines.readme_demo $(DEMO_DIR)/run.log README.md --repository $(CURDIR)/$(DEMO_DIR)/model_repository $(if $(CHECK),--check)

SINCE ?=
UNTIL ?=
N ?=
FILE ?=

.PHONY: span
span: $(VENV)/.installed ## Next span from the serving logs: predictions joined with feedback, PII redacted, `dvc add`ed under data/log_spans/; prints the counts [MODEL=name] [SINCE=YYYY-MM-DD] [UNTIL=YYYY-MM-DD]
	$(FLYWHEEL) span $(if $(MODEL),--model-name "$(MODEL)") $(if $(SINCE),--since "$(SINCE)") $(if $(UNTIL),--until "$(UNTIL)")

.PHONY: label-export
label-export: $(VENV)/.installed ## Unlabeled logged predictions, least confident first, as Label Studio tasks and CSV in runs/labels/ [N=rows] [MODEL=name]
	$(FLYWHEEL) labels export $(if $(MODEL),--model-name "$(MODEL)") $(if $(N),--limit "$(N)")

.PHONY: label-import
label-import: $(VENV)/.installed ## Raters' labels into the feedback log: FILE=Label Studio JSON export or CSV (request_id,label[,row]) [MODEL=name]
	@test -n "$(FILE)" || { echo "error: give the file: make label-import FILE=export.json|labels.csv" >&2; exit 2; }
	$(FLYWHEEL) labels import --file "$(FILE)" $(if $(MODEL),--model-name "$(MODEL)")

TRIGGER_PORT ?= 9095
DATA_SPANS ?= $(shell $(PY) -c "from flywheel import params; print(params.load().data.output_dir)" 2>/dev/null)

.PHONY: trigger
trigger: $(VENV)/.installed ## Run the retraining trigger on loopback: Alertmanager webhook at http://127.0.0.1:9095/api/v1/alerts (TRIGGER_PORT); runs here with kfp.local, or on KFP with SET="trigger.kfp_host=URL" [MODEL=name] [SET="k=v ..."]
	$(FLYWHEEL) trigger --port $(TRIGGER_PORT) $(if $(PARAMS),--params '$(PARAMS)') $(if $(MODEL),--model-name "$(MODEL)") $(foreach kv,$(SET),--set '$(kv)')

.PHONY: loop
loop: $(VENV)/.installed ## The whole flywheel on loopback (<= 6 min; `make run` first when nothing is pushed): serve the first pushed version (a copy), drifted traffic + feedback, Prometheus + Alertmanager fire, the trigger retrains on the logs' span; stage times and runs/loop/<time>/timeline.png [MODEL=name] [SET="loop.traffic_rows=3000 ..."]
	@test -f $(DATA_SPANS)/span-003.csv || $(MAKE) --no-print-directory data
	@ls -d $(SERVE_REPOSITORY)/$(SERVE_MODEL)/[0-9]* >/dev/null 2>&1 || $(MAKE) --no-print-directory run
	$(FLYWHEEL) loop $(if $(PARAMS),--params '$(PARAMS)') $(if $(MODEL),--model-name "$(MODEL)") $(foreach kv,$(SET),--set '$(kv)')

VERSION ?=

.PHONY: lineage
lineage: $(VENV)/.installed ## Where the served model (or VERSION=n) came from: data, code, settings, trigger, back through the versions it replaced; a picture in runs/lineage.png [MODEL=name] [REPOSITORY=path, e.g. the one `make loop` printed]
	$(FLYWHEEL) lineage $(if $(MODEL),--model-name "$(MODEL)") $(if $(VERSION),--version "$(VERSION)") $(if $(REPOSITORY),--model-repository "$(REPOSITORY)")

.PHONY: compile
compile: $(VENV)/.installed ## Compile pipelines/training_pipeline.yaml and pipelines/batch_pipeline.yaml (IMAGE=name:tag sets the component image, VOLUME=claim:/path mounts a PersistentVolumeClaim in every step; with either, under build/).
	$(FLYWHEEL) compile --image "$(IMAGE)" $(if $(VOLUME),--volume "$(VOLUME)") $(if $(or $(VOLUME),$(filter-out ghcr.io/flywheel-mlops/flywheel-component:0.1.0,$(IMAGE))),--output build/training_pipeline.yaml)
	$(FLYWHEEL) compile --pipeline batch --image "$(IMAGE)" $(if $(VOLUME),--volume "$(VOLUME)") $(if $(or $(VOLUME),$(filter-out ghcr.io/flywheel-mlops/flywheel-component:0.1.0,$(IMAGE))),--output build/batch_pipeline.yaml)

BATCH_RUNNER ?= inprocess
REV ?=

.PHONY: batch
batch: $(VENV)/.installed ## Offline predictions: score DATA (file, folder, glob, or DVC path with REV=) with the served version (or VERSION=n) of MODEL; report, predictions, lineage under <repository>/<model>/batch/ [BATCH_RUNNER=inprocess|subprocess|docker] [SET="batch.key_column=id ..."]
	@test -n "$(DATA)" || { echo "usage: make batch DATA=path.csv [MODEL=name] [VERSION=n] [REV=git-rev] [SET=\"batch.key=value\"]" >&2; exit 2; }
	$(FLYWHEEL) batch "$(DATA)" $(if $(MODEL),--model-name "$(MODEL)") $(if $(VERSION),--version "$(VERSION)") $(if $(REV),--data-rev "$(REV)") $(foreach kv,$(SET),--set '$(kv)') --runner $(BATCH_RUNNER) $(if $(VERBOSE),--verbose)

.PHONY: submit
submit: $(VENV)/.installed ## Submit one run to Kubeflow: KFP_HOST=url MODEL_REPOSITORY=gs://… [DATA=path as the cluster sees it] [PACKAGE=yaml] [SET="k=v …"] [SERVICE_ACCOUNT=flywheel-pipeline] [WAIT=1: wait, print the summary]
	@test -n "$(KFP_HOST)" -a -n "$(MODEL_REPOSITORY)" || { echo "error: KFP_HOST and MODEL_REPOSITORY are required" >&2; exit 2; }
	$(FLYWHEEL) submit --host "$(KFP_HOST)" --model-repository "$(MODEL_REPOSITORY)" $(if $(SERVICE_ACCOUNT),--service-account "$(SERVICE_ACCOUNT)") $(if $(DATA),--data "$(DATA)") $(if $(PACKAGE),--package "$(PACKAGE)") $(foreach kv,$(SET),--set '$(kv)') $(if $(WAIT),--wait)

.PHONY: schedule
schedule: $(VENV)/.installed ## Create a recurring run: KFP_HOST=url MODEL_REPOSITORY=gs://… [CRON="0 0 3 * * *"] [PACKAGE=yaml] [SET="k=v …"] [SERVICE_ACCOUNT=flywheel-pipeline]
	@test -n "$(KFP_HOST)" -a -n "$(MODEL_REPOSITORY)" || { echo "error: KFP_HOST and MODEL_REPOSITORY are required" >&2; exit 2; }
	$(FLYWHEEL) schedule --host "$(KFP_HOST)" --model-repository "$(MODEL_REPOSITORY)" $(if $(SERVICE_ACCOUNT),--service-account "$(SERVICE_ACCOUNT)") --cron "$(CRON)" $(if $(DATA),--data "$(DATA)") $(if $(PACKAGE),--package "$(PACKAGE)") $(foreach kv,$(SET),--set '$(kv)')

.PHONY: rollback
rollback: $(VENV)/.installed ## Make an earlier version production again (moves the `production` label; nothing is copied): TO=<version>
	@test -n "$(TO)" || { echo "error: give the version: make rollback TO=1" >&2; exit 2; }
	$(FLYWHEEL) rollback --to "$(TO)"

QUICK ?=

.PHONY: bench-drift
bench-drift: $(VENV)/.installed ## Drift rule vs TFDV thresholds: detection, false alarms, false blocks, resolution; joint drift (255 s on 2 shared cores; QUICK=1 80 s).
	$(PY) benchmarks/bench_drift.py $(if $(QUICK),--quick)

.PHONY: bench-report
bench-report: $(VENV)/.installed ## HTML report size and render time vs the drift rule's time at 10/100/1000 features (+ Chromium load time when installed; ~30 s).
	$(PY) benchmarks/bench_report.py $(if $(shell command -v chromium),--browser)

FAIRNESS_SIZES ?= 500,10000,100000,1000000
FAIRNESS_SEEDS ?= 50

.PHONY: bench-models
bench-models: $(VENV)/.installed ## The chosen model on 12 public tables shipped in PyPI packages (344 to 336,776 rows; every task) vs LightGBM defaults and the linear baseline on the same split; training time, peak RSS (~15 min).
	$(PY) -W ignore benchmarks/bench_models.py

.PHONY: bench-fairness
bench-fairness: $(VENV)/.installed ## Fairness gate's false-alarm rate and power over seeds and slice counts; assessment cost by test rows, capped vs uncapped bootstrap: [FAIRNESS_SIZES=500,10000] [FAIRNESS_SEEDS=50] (~15 min).
	$(PY) benchmarks/bench_fairness.py --sizes $(FAIRNESS_SIZES) --seeds $(FAIRNESS_SEEDS)

.PHONY: bench-pipeline
bench-pipeline: $(VENV)/.installed ## Per-step wall time and orchestration overhead of the pipeline at 10k and 100k rows.
	$(PY) benchmarks/bench_pipeline.py

.PHONY: bench-releases
bench-releases: $(VENV)/.installed ## Infra validation time and p50/p99 at 50 and 200 req/s; CBPE estimated vs realised accuracy under no, covariate and concept shift (~2 min).
	$(PY) benchmarks/bench_releases.py

BATCH_SIZES ?= 100000,1000000

.PHONY: bench-batch
bench-batch: $(VENV)/.installed ## Batch scoring rows/s and peak RSS vs in-memory scoring, lookup vs online latency through the sidecar [BATCH_SIZES=100000,1000000] (~10 min).
	$(PY) benchmarks/bench_batch.py --sizes $(BATCH_SIZES)

PREVIOUS ?=
SCHEMA ?=
SIZES ?= 10000,100000,1000000

.PHONY: data
data: $(VENV)/.installed ## Generate the default data spans with DVC (dvc repro generate -> data/spans/span-NNN.csv; knobs in params.yaml data:).
	$(VENV)/bin/dvc repro generate

.PHONY: validate
validate: $(VENV)/.installed ## Ingest+statistics+schema+validate a file, print the anomaly report and the HTML report's path: DATA=f.csv LABEL=col [PREVIOUS=old.csv] [SCHEMA=s.pbtxt]
	@test -n "$(DATA)" -a -n "$(LABEL)" || { echo "usage: make validate DATA=path.csv LABEL=col [PREVIOUS=old.csv] [SCHEMA=schema.pbtxt]" >&2; exit 2; }
	$(FLYWHEEL) validate "$(DATA)" --label "$(LABEL)" $(if $(PREVIOUS),--previous "$(PREVIOUS)") $(if $(SCHEMA),--schema "$(SCHEMA)")

ACCEPT ?=

.PHONY: schema-update
schema-update: $(VENV)/.installed ## Propose (and with ACCEPT=f1,f2|all write) the curated schema's changes for new data: DATA=f.csv [LABEL=col] [PREVIOUS=old.csv] [SCHEMA=s.pbtxt]
	@test -n "$(DATA)" || { echo "usage: make schema-update DATA=path.csv [LABEL=col] [PREVIOUS=old.csv] [SCHEMA=schema.pbtxt] [ACCEPT=f1,f2|all]" >&2; exit 2; }
	$(FLYWHEEL) schema-update "$(DATA)" $(if $(LABEL),--label "$(LABEL)") $(if $(PREVIOUS),--previous "$(PREVIOUS)") $(if $(SCHEMA),--schema "$(SCHEMA)") $(if $(ACCEPT),--accept "$(ACCEPT)")

.PHONY: test-data
test-data: $(VENV)/.installed ## Run only the data component tests (tests/data_components).
	$(PY) -m pytest -q tests/data_components

.PHONY: bench-data
bench-data: $(VENV)/.installed ## Rows/s and peak memory of ingest, statistics, validate: [SIZES=10000,100000,1000000]
	$(PY) benchmarks/bench_data.py --sizes $(SIZES)

SCALE_SIZES ?= 1000000,10000000
TRAIN_SIZES ?= 1000000,5000000
PATHS ?= in_memory,streaming,beam

.PHONY: bench-scale
bench-scale: $(VENV)/.installed ## Data steps per path (in_memory, streaming, beam) and streamed training: rows/s, per worker, peak RSS, agreement: [SCALE_SIZES=1000000,10000000] [TRAIN_SIZES=1000000,5000000] [PATHS=...] (defaults: ~30 min, 4 GB of /tmp)
	$(PY) benchmarks/bench_scale.py --sizes $(SCALE_SIZES) --train-sizes "$(TRAIN_SIZES)" --paths $(PATHS)

# --- serving and monitoring sidecar -------------------------------------------------------
SERVE_REPOSITORY ?= $(shell $(PY) -c "from flywheel import params; print(params.load().push.model_repository)" 2>/dev/null)
SERVE_MODEL ?= $(shell $(PY) -c "from flywheel import params; print(params.load().push.model_name)" 2>/dev/null)
SIDECAR_PORT ?= 8080
REST_PORT ?= 8501
GRPC_PORT ?= 8500
FEATURE_SERVER ?=

.PHONY: serve
serve: $(VENV)/.installed ## Serve the labelled versions (production, canary, shadow; without labels the newest) on loopback: dev model server (REST 8501, gRPC 8500) + sidecar on 8080 (vars REST_PORT GRPC_PORT SIDECAR_PORT SERVE_REPOSITORY SERVE_MODEL FEATURE_SERVER=http://127.0.0.1:6566 for entity features; default params.yaml push:). Ctrl-C stops both cleanly.
	$(FLYWHEEL) serve --rest-port $(REST_PORT) --grpc-port $(GRPC_PORT) --port $(SIDECAR_PORT) \
	  --model-repository "$(SERVE_REPOSITORY)" --model-name "$(SERVE_MODEL)" $(if $(FEATURE_SERVER),--feature-server $(FEATURE_SERVER))

METRICS_URL ?= http://127.0.0.1:$(SIDECAR_PORT)/metrics
VERSION ?=

.PHONY: live-report
live-report: $(VENV)/.installed ## Drift report of the sidecar's live window as one HTML page (path printed): [METRICS_URL=http://127.0.0.1:8080/metrics] [VERSION=N] (SERVE_REPOSITORY SERVE_MODEL)
	$(FLYWHEEL) live-report --metrics "$(METRICS_URL)" --model-repository "$(SERVE_REPOSITORY)" \
	  --model-name "$(SERVE_MODEL)" $(if $(VERSION),--version "$(VERSION)")

BENCH_SECONDS ?= 10

.PHONY: bench-sidecar
bench-sidecar: $(VENV)/.installed ## Sidecar vs direct with Poisson arrivals over 16 connections at 100/500/1000 req/s, CPU per request, capacity per core with wrk (installed from Debian if missing); a real version trained by the pipeline's steps (~6 min).
	@command -v wrk >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	$(PY) benchmarks/bench_sidecar.py --rates 100 500 1000 --seconds $(BENCH_SECONDS) --repeats 3


# --- images and container tests (docker/build.py, docker/engine.sh, tests/containers) -------
# Images: docker/Dockerfile, one file with three targets, built with the local Docker engine
# (docker/engine.sh installs and starts one when needed). The pipeline compiles against the
# image given at compile time (`flywheel compile --image $(REGISTRY)/flywheel-component:$(IMAGE_TAG)`).
REGISTRY ?= ghcr.io/flywheel-mlops
IMAGE_TAG ?= 0.1.0
DOCKER ?= docker
IMAGE_TARGETS := component component-gpu sidecar

.PHONY: images
images: $(VENV)/.installed ## Build the component and sidecar images here, print their sizes (REGISTRY, IMAGE_TAG; base built with debootstrap when it cannot be pulled).
	docker/engine.sh $(PY) docker/build.py --registry $(REGISTRY) --tag $(IMAGE_TAG) component sidecar

.PHONY: images-gpu
images-gpu: $(VENV)/.installed ## Also build component-gpu: downloads the CUDA/cuDNN wheels once (several GB), so not part of `make test`.
	docker/engine.sh $(PY) docker/build.py --registry $(REGISTRY) --tag $(IMAGE_TAG) component sidecar component-gpu

.PHONY: container-test
container-test: $(VENV)/.installed ## Build the images and run the container tests on them (tests/containers).
	docker/engine.sh $(PY) -m pytest -q tests/containers

# --- cluster: registry, manifests, alerts, dashboards -----------------------------------------
OVERLAY ?= dev
OVERLAY_NAMESPACE = $(if $(filter dev,$(OVERLAY)),flywheel-dev,flywheel)
KUSTOMIZE_BUILD := kubectl kustomize
TOOLS_VENV := .venv-tools

.PHONY: push-images
push-images: images-gpu ## Push the three images to REGISTRY (needs `docker login`), then run `make pin-digests`.
	@for t in $(IMAGE_TARGETS); do $(DOCKER) push $(REGISTRY)/flywheel-$$t:$(IMAGE_TAG) || exit 1; done

.PHONY: pin-digests
pin-digests: $(VENV)/.installed ## Write registry digests of every pinned image into manifests and Dockerfile (needs crane; RESOLVER).
	$(PY) docker/pin_digests.py $(if $(RESOLVER),--resolver "$(RESOLVER)")

.PHONY: gpu-lock
gpu-lock: $(VENV)/.installed ## Recompile docker/requirements-gpu.lock (CUDA wheels on top of requirements.lock).
	@test -x $(UV) || { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null; $(PY) -m pip install -q "uv==$(UV_VERSION)"; }
	cd docker && ../$(UV) pip compile -q requirements-gpu.txt --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements-gpu.lock

.PHONY: sidecar-lock
sidecar-lock: $(VENV)/.installed ## Recompile docker/requirements-sidecar.lock (the sidecar image's deps, pinned to requirements.lock).
	@test -x $(UV) || { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null; $(PY) -m pip install -q "uv==$(UV_VERSION)"; }
	cd docker && ../$(UV) pip compile -q requirements-sidecar.txt --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements-sidecar.lock

$(TOOLS_VENV)/.installed: requirements-tools.lock | $(VENV)/.installed
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	@test -x $(UV) || { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null; $(PY) -m pip install -q "uv==$(UV_VERSION)"; }
	$(UV) pip install -q --python $(TOOLS_VENV)/bin/python -r requirements-tools.lock
	@touch $@

.PHONY: tools
tools: $(TOOLS_VENV)/.installed ## Build .venv-tools/ (checkov, mkdocs) from requirements-tools.lock; its pins clash with the main lock.

.PHONY: tools-lock
tools-lock: $(VENV)/.installed ## Recompile requirements-tools.lock from requirements-tools.txt.
	@test -x $(UV) || { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null; $(PY) -m pip install -q "uv==$(UV_VERSION)"; }
	$(UV) pip compile -q requirements-tools.txt --python-version 3.11 -o requirements-tools.lock

.PHONY: docs
docs: $(TOOLS_VENV)/.installed ## Build the documentation site (mkdocs.yml, docs/) with `mkdocs build --strict` into build/site/.
	$(TOOLS_VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

# --- feature store (featurestore/): Feast in its own environment ---------------------------
# Feast needs numpy>=2 and pyarrow>=16, TFDV numpy 1.26 and pyarrow 10: one process each (see
# featurestore/__init__.py for the boundary).
FEAST_VENV := .venv-feast
FEAST_PY := $(FEAST_VENV)/bin/python

$(FEAST_VENV)/.installed: featurestore/requirements.lock | $(VENV)/.installed
	@test -x $(FEAST_PY) || $(PYTHON) -m venv $(FEAST_VENV)
	$(UV) pip install -q --python $(FEAST_PY) -r featurestore/requirements.lock
	@touch $@

.PHONY: feast
feast: $(FEAST_VENV)/.installed ## Build .venv-feast/ (Feast) from featurestore/requirements.lock; its pins clash with the main lock.

# --- ML Metadata's service for the KFP backend on the test control plane (tests/controlplane) ---
MLMD_VENV := .venv-mlmd
MLMD_PY := $(MLMD_VENV)/bin/python

$(MLMD_VENV)/.installed: controlplane/mlmd/requirements.lock | $(VENV)/.installed
	@test -x $(MLMD_PY) || $(PYTHON) -m venv $(MLMD_VENV)
	$(UV) pip install -q --python $(MLMD_PY) -r controlplane/mlmd/requirements.lock
	@touch $@

.PHONY: mlmd mlmd-lock
mlmd: $(MLMD_VENV)/.installed ## Build .venv-mlmd/ (ML Metadata's store and gRPC) from controlplane/mlmd/requirements.lock.

mlmd-lock: $(VENV)/.installed ## Recompile controlplane/mlmd/requirements.lock from controlplane/mlmd/requirements.txt.
	$(UV) pip compile -q controlplane/mlmd/requirements.txt --python-version 3.11 -o controlplane/mlmd/requirements.lock

.PHONY: feast-lock
feast-lock: $(VENV)/.installed ## Recompile featurestore/requirements.lock from featurestore/requirements.txt.
	$(UV) pip compile -q featurestore/requirements.txt --python-version 3.11 -o featurestore/requirements.lock

.PHONY: feast-apply
feast-apply: feast ## The area aggregates from the spans (make data first), `feast apply` of featurestore/repo, then materialise to the online store.
	@test -f $(DATA_SPANS)/span-001.csv || $(MAKE) --no-print-directory data
	$(FEAST_PY) -m featurestore generate --spans "$(DATA_SPANS)"
	cd featurestore/repo && ../../$(FEAST_VENV)/bin/feast apply
	$(FEAST_PY) -m featurestore materialize

.PHONY: feast-materialize
feast-materialize: feast ## Load the feature views' new rows into the online store (what the CronJob runs on a cluster).
	$(FEAST_PY) -m featurestore materialize

FEAST_PORT ?= 6566
.PHONY: feast-serve
feast-serve: feast ## Feast's HTTP feature server on 127.0.0.1:6566 (FEAST_PORT), which the sidecar asks by entity key.
	cd featurestore/repo && ../../$(FEAST_VENV)/bin/feast serve --host 127.0.0.1 --port $(FEAST_PORT)
.PHONY: bench-online-features
bench-online-features: $(VENV)/.installed feast ## Added latency of serving by entity key: sidecar + Feast feature server vs rows carrying the features, p50/p99 on loopback (~3 min).
	$(PY) benchmarks/bench_online_features.py
# --- end of feature store -------------------------------------------------------------------

.PHONY: manifests-check
manifests-check: $(VENV)/.installed tools ## Build every overlay; kubernetes-validate (strict, 1.32), wiring checks, checkov, image locks.
	$(PY) -m pytest -q tests/cluster/test_manifests_validate.py tests/cluster/test_serving_wiring.py \
	  tests/cluster/test_checkov.py tests/cluster/test_image_locks.py

.PHONY: alerts-check
alerts-check: ## promtool check rules + promtool test rules on monitoring/rules/.
	cd monitoring/rules && promtool check rules flywheel-alerts.rules.yml && promtool test rules flywheel-alerts.test.yml

.PHONY: monitoring-config
monitoring-config: $(VENV)/.installed ## Render alert/recording rules, the PrometheusRule and the Grafana dashboards from params.yaml (monitoring: and drift:).
	$(FLYWHEEL) monitoring-config

.PHONY: deploy
deploy: $(VENV)/.installed ## Apply an overlay with kubectl to the current KUBECONFIG context (OVERLAY=dev|prod|gpu) and wait for rollout; ALLOW_PLACEHOLDER_DIGESTS=fake-nodes on a kwok-only test cluster.
	@$(PY) docker/pin_digests.py --check || { [ "$(ALLOW_PLACEHOLDER_DIGESTS)" = fake-nodes ] && $(PY) -m controlplane fake-nodes-only; } \
	  || { echo "refusing to deploy placeholder digests: run make pin-digests" >&2; exit 1; }
	$(KUSTOMIZE_BUILD) manifests/overlays/$(OVERLAY) | kubectl apply --server-side -f -
	@# The feedback token: generated once, when the Secret holds none (manifests/base/sidecar-token-secret.yaml).
	@kubectl -n $(OVERLAY_NAMESPACE) get secret flywheel-sidecar-token -o jsonpath='{.data.token}' | grep -q . \
	  || kubectl -n $(OVERLAY_NAMESPACE) create secret generic flywheel-sidecar-token \
	       --from-literal=token="$$($(PY) -c 'import secrets; print(secrets.token_hex(32))')" --dry-run=client -o yaml \
	     | kubectl apply --server-side --field-manager=flywheel-token -f -
	kubectl -n $(OVERLAY_NAMESPACE) rollout status deployment/flywheel-serving --timeout=600s

.PHONY: dashboards-png
dashboards-png: $(VENV)/.installed ## Render dashboards to build/dashboards/*.png: from PROMETHEUS_URL if set, else from the live test's real sidecar + Prometheus.
	@mkdir -p build/dashboards
	@if [ -n "$(PROMETHEUS_URL)" ]; then \
	  for d in drift serving; do $(PY) monitoring/dashboards/render_png.py --prometheus "$(PROMETHEUS_URL)" --since $(or $(SINCE),1h) \
	    --dashboard monitoring/dashboards/flywheel-$$d.json --out build/dashboards/flywheel-$$d.png || exit 1; done; \
	else \
	  FLYWHEEL_PNG_DIR=$(CURDIR)/build/dashboards $(PY) -m pytest -q tests/cluster/test_dashboards_live.py -k render; \
	fi

.PHONY: cluster-test
cluster-test: $(VENV)/.installed tools ## Run all cluster checks (tests/cluster).
	$(PY) -m pytest -q tests/cluster


# --- test control plane: Kubernetes built from its Go modules, on loopback (controlplane/) -----
.PHONY: controlplane-build
controlplane-build: $(VENV)/.installed ## Build or reuse etcd, kube-apiserver, -controller-manager, -scheduler, kubectl, kubelet, kube-proxy, kwok, prometheus-adapter and KFP's compiler (cache: ~/.cache/flywheel/controlplane).
	$(PY) -m controlplane build

.PHONY: controlplane-up
controlplane-up: $(VENV)/.installed ## Start the control plane on 127.0.0.1 (detached, kwok nodes, CRDs); prints the KUBECONFIG and PATH to use.
	$(PY) -m controlplane up

.PHONY: controlplane-down
controlplane-down: $(VENV)/.installed ## Stop the processes controlplane-up started.
	$(PY) -m controlplane down

.PHONY: kfp-workflow
kfp-workflow: $(VENV)/.installed ## The Argo Workflow KFP's API server (2.14.3, its own code) makes of a run of PACKAGE (default: the committed training pipeline), or its refusal.
	$(PY) -m controlplane kfp-compile $(or $(PACKAGE),pipelines/training_pipeline.yaml)

.PHONY: test-kfp
test-kfp: $(VENV)/.installed ## Run only the tests of the pipelines against KFP's backend: its compiler and API server on the control plane (tests/controlplane/test_kfp_backend.py), and a run on the real node (tests/node/test_kfp_run.py; root).
	docker/engine.sh $(PY) -m pytest -q tests/controlplane/test_kfp_backend.py tests/node/test_kfp_run.py

.PHONY: node-test
node-test: $(VENV)/.installed ## Run only the real-pod tests: the control plane with a kubelet node, containerd and a CNI bridge (tests/node; root; builds the control plane and the sidecar image when missing).
	docker/engine.sh $(PY) -m pytest -q tests/node

.PHONY: controlplane-test
controlplane-test: $(VENV)/.installed ## Run only the tests against the control plane (tests/controlplane; builds it first when missing).
	$(PY) -m pytest -q tests/controlplane
