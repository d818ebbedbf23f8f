# The entry points a user and CI share. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BASE_IMAGE ?= debian:trixie-slim
# Image builds behind a TLS-intercepting proxy need its CA; the host's bundle when present.
BUILD_CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
export BUILD_CA_BUNDLE BASE_IMAGE
# testcontainers' reaper image cannot be pulled here; every test cleans up after itself.
export TESTCONTAINERS_RYUK_DISABLED ?= true
PYTEST_ARGS ?=

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/pytest: requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements-dev.lock
	@touch $@

.PHONY: venv
venv: $(BIN)/pytest ## Create the dev virtualenv from the hash-locked requirements

.PHONY: lock
lock: ## Re-lock dependencies (hashes, for Python 3.11 and the image's 3.13)
	uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -o requirements.lock -q
	uv pip compile pyproject.toml --group dev --universal --python-version 3.11 --generate-hashes -o requirements-dev.lock -q

.PHONY: base-image
base-image: ## Make debian:trixie-slim: pull it, or build it from Debian's packages
	@docker image inspect $(BASE_IMAGE) >/dev/null 2>&1 \
	  || docker pull $(BASE_IMAGE) 2>/dev/null \
	  || base/build.sh $(BASE_IMAGE)

.PHONY: images
images: base-image ## Build every image of the stack
	docker compose build

.PHONY: up
up: images ## Start the stack and wait until every service is healthy
	docker compose up -d --wait

.PHONY: down
down: ## Stop the stack (volumes kept)
	docker compose down

.PHONY: lint
lint: venv ## ruff, formatting and mypy
	$(BIN)/ruff check app tests
	$(BIN)/ruff format --check app tests
	cd app && ../$(BIN)/mypy --config-file ../pyproject.toml .

.PHONY: test
test: venv lint images ## Every test suite: unit, images, Kubernetes, and the compose stack end to end
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: prune
prune: ## Remove dangling images and build cache left by rebuilds
	docker image prune -f
	docker builder prune -f --filter until=24h
