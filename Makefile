# The entry points a user and CI share. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The runtime image's Python (Debian trixie's python3): the tests, mypy and the lock use the same
# minor version, so what passes here is what runs there (tests/images checks the image).
IMAGE_PYTHON := 3.13
# The runtime web image's ceiling, MB uncompressed (`docker image inspect`): tests/images holds
# the image to it. Its breakdown: docs/BENCHMARKS.md.
WEB_IMAGE_MAX_MB := 150
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell bin/find-python $(IMAGE_PYTHON))
endif
VENV ?= .venv
BIN := $(VENV)/bin
BASE_IMAGE ?= debian:trixie-slim
# Image builds behind a TLS-intercepting proxy need its CA; the host's bundle when present.
BUILD_CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
export BUILD_CA_BUNDLE BASE_IMAGE
# testcontainers' reaper image cannot be pulled here; every test cleans up after itself.
export TESTCONTAINERS_RYUK_DISABLED ?= true
# The slowest tests at the end of every run: where the CI time goes (budget: 40 minutes).
PYTEST_ARGS ?= --durations=30

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# A venv of another Python (an older checkout's) is replaced, not reused.
$(VENV)/.python-$(IMAGE_PYTHON):
	@found=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	  test "$$found" = "$(IMAGE_PYTHON)" || { \
	  echo "make venv: PYTHON=$(PYTHON) is Python '$$found', not the image's $(IMAGE_PYTHON)" \
	  "(make prereqs says how to get it)" >&2; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	@touch $@

$(BIN)/pytest: requirements-dev.lock $(VENV)/.python-$(IMAGE_PYTHON)
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements-dev.lock
	@touch $@

.PHONY: venv
venv: $(BIN)/pytest ## Create the dev virtualenv from the hash-locked requirements

# The OTLP/HTTP exporter declares googleapis-common-protos but imports only protobuf: left out,
# as weight in the web image for nothing (docs/ARCHITECTURE.md); the tracing stack test exports
# through it.
LOCK := $(BIN)/uv pip compile --native-tls pyproject.toml --universal --python-version $(IMAGE_PYTHON) --generate-hashes -q \
  --no-emit-package googleapis-common-protos

.PHONY: lock
lock: venv ## Re-lock dependencies (hashes, for the image's Python)
	$(LOCK) --group image -o requirements.lock
	$(LOCK) --group dev -o requirements-dev.lock
	$(LOCK) --group image --group flower -o requirements-flower.lock
# demo-shop: begin
	$(LOCK) --group image --group bench -o requirements-bench.lock
# demo-shop: end

.PHONY: base-image
base-image: ## Make debian:trixie-slim: pull it, or build it from Debian's packages
	@docker image inspect $(BASE_IMAGE) >/dev/null 2>&1 \
	  || docker pull $(BASE_IMAGE) 2>/dev/null \
	  || base/build.sh $(BASE_IMAGE)

.PHONY: images
images: base-image ## Build every image of the stack, the monitoring profile's included
	docker compose --profile monitoring build

.PHONY: up
up: images ## Start the stack and wait until every service is healthy
	docker compose up -d --wait

.PHONY: down
down: ## Stop the stack (volumes kept)
	docker compose down

# Development mode (docker-compose.dev.yml, README "Develop"): the Django containers run as this
# user, so the bind-mounted ./app stays theirs to edit and files written in a container are theirs.
DEV_COMPOSE := docker compose -f docker-compose.yml -f docker-compose.dev.yml
DEV_UID ?= $(shell id -u)
DEV_GID ?= $(shell id -g)

.PHONY: dev
dev: base-image ## Development mode: ./app bind-mounted, reload on save, DEBUG + Debug Toolbar on :8000
	DEV_UID=$(DEV_UID) DEV_GID=$(DEV_GID) $(DEV_COMPOSE) up --build

.PHONY: dev-down
dev-down: ## Stop development mode (volumes kept; `make dev-down ARGS=-v` removes them)
	$(DEV_COMPOSE) down $(ARGS)

# --- TLS and backups: docker compose picks up COMPOSE_PROJECT_NAME (and the other COMPOSE_*
# variables) from the environment, so `COMPOSE_PROJECT_NAME=djstack-x make backup` works on
# another project. DB_NAME as in .env.example.
COMPOSE ?= docker compose
DB_NAME ?= app
BACKUP_DIR ?= backups
TLS_DIR ?= tls

.PHONY: tls-dev-cert
tls-dev-cert: ## Self-signed localhost certificate in $(TLS_DIR)/ for docker-compose.tls.yml (never commit it)
	@mkdir -p $(TLS_DIR) && chmod 0755 $(TLS_DIR)
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
	  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	  -keyout $(TLS_DIR)/tls.key -out $(TLS_DIR)/tls.crt 2>/dev/null
	@# Nginx runs as UID 10002 in its container: a development key must be readable by it.
	@chmod 0644 $(TLS_DIR)/tls.crt $(TLS_DIR)/tls.key
	@echo "$(TLS_DIR)/tls.crt (trust it, e.g. curl --cacert $(TLS_DIR)/tls.crt https://localhost:8443/)"

.PHONY: backup
backup: ## Consistent dump of the primary (pg_dump, one snapshot) to $(BACKUP_DIR)/<UTC time>.dump
	@mkdir -p $(BACKUP_DIR)
	@file=$(BACKUP_DIR)/$$(date -u +%Y%m%dT%H%M%SZ).dump; \
	  $(COMPOSE) exec -T db-primary pg_dump -U postgres --format=custom $(DB_NAME) > $$file.partial \
	  && mv $$file.partial $$file && echo $$file \
	  || { rm -f $$file.partial; echo "backup failed" >&2; exit 1; }

.PHONY: restore
restore: ## Restore FILE=backups/<time>.dump into the running stack's primary (replaces the app's tables)
	@test -n "$(FILE)" -a -s "$(FILE)" || { echo "usage: make restore FILE=backups/<time>.dump" >&2; exit 1; }
	@# One transaction: either the whole dump is in, or nothing changed. Objects are dropped and
	@# re-created as the app's role, which owns them; the replica follows by streaming.
	$(COMPOSE) exec -T db-primary pg_restore -U postgres --dbname=$(DB_NAME) --clean --if-exists \
	  --no-owner --role=$${DB_USER:-app} --single-transaction --exit-on-error < $(FILE)
	@# The cache instance's copies of the replaced rows go too: it would serve them until they
	@# expired, and a versioned copy would refuse the restored rows' older versions.
	$(COMPOSE) exec -T redis-cache sh -c \
	  'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli --no-auth-warning FLUSHALL'

# The scripts run with the image's Python (tomllib: 3.11+), not whichever python3 their shebang
# finds first on PATH.
.PHONY: rename
rename: ## Rename the project everywhere: make rename NAME=<name> (FORCE=1: on a dirty tree)
	@$(PYTHON) bin/rename $(if $(FORCE),--force) "$(NAME)"

# demo-shop: begin (bin/remove-demo deletes itself and this target with the demo)
# venv: its ruff settles the blank lines the removal leaves, so make lint passes after it.
.PHONY: remove-demo
remove-demo: venv ## Remove the demo shop and its reports, bench and tests (FORCE=1: on a dirty tree, or over edited demo blocks)
	@$(PYTHON) bin/remove-demo $(if $(FORCE),--force)
# demo-shop: end

LINT_PATHS := app tests
# demo-shop: begin
LINT_PATHS += bench
# demo-shop: end

.PHONY: lint
lint: venv ## ruff, formatting, mypy and the layer contracts (docs/ARCHITECTURE.md)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	cd app && $(abspath $(BIN))/mypy --config-file ../pyproject.toml .
	@# The bench's and the fault tests' Django code, kept out of app/ (and the runtime image):
	@# checked as strictly, each on its own path beside app/.
# demo-shop: begin
	cd bench/django && MYPYPATH=.:../../app $(abspath $(BIN))/mypy --explicit-package-bases \
	  --config-file ../../pyproject.toml .
# demo-shop: end
	cd tests/stack/faultapp && MYPYPATH=.:../../../app $(abspath $(BIN))/mypy --explicit-package-bases \
	  --config-file ../../../pyproject.toml .
	cd app && $(abspath $(BIN))/lint-imports ../pyproject.toml --no-cache

.PHONY: prereqs
prereqs: ## Check what make test needs on this machine (the image's Python, docker compose, kubectl, open files)
	@PYTHON=$(PYTHON) PYTHON_ORIGIN="$(origin PYTHON)" REQUIRED_PYTHON=$(IMAGE_PYTHON) bin/check-prereqs

.PHONY: test
test: prereqs venv lint images ## Every test suite: unit, images, Kubernetes, and the compose stack end to end
	$(BIN)/pytest $(PYTEST_ARGS)

# demo-shop: begin (the bench drives the demo shop's API; bin/remove-demo deletes it)
.PHONY: bench
bench: base-image ## Benchmarks on this machine (own project, port 28080): docs/BENCHMARKS.md; BENCH_QUICK=1: < 5 min
	bench/ensure-tools.sh
	ulimit -n 20000 && $(PYTHON) bench/run.py; status=$$?; \
	  $$( /usr/bin/python3 -c 'import matplotlib' 2>/dev/null && echo /usr/bin/python3 || echo $(PYTHON) ) bench/report.py; \
	  exit $$status

.PHONY: profile
profile: ## py-spy on web (and the email worker, placing orders) under bench load: docs/benchmarks/profile.md
	bench/ensure-tools.sh
	ulimit -n 20000 && $(PYTHON) bench/profile.py

.PHONY: bench-quick
bench-quick: ## make bench, quick: one round, fewer configurations and shorter runs
	$(MAKE) bench BENCH_QUICK=1

.PHONY: soak
soak: venv base-image ## Soak: SOAK_SECONDS (600) of reads, writes, reports with max_requests 50; docs/SOAK.md (not CI)
	$(BIN)/python bench/soak.py
# demo-shop: end

.PHONY: reliability-report
reliability-report: venv ## docs/RELIABILITY.md from the fault suite's last run (build/reliability.json)
	$(BIN)/python -m tests.stack.reliability

.PHONY: prune
prune: ## Remove dangling images and build cache left by rebuilds
	docker image prune -f
	docker builder prune -f --filter until=24h
