# The one-command entry points; see README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCENARIO ?= ok
# docker compose v2 when present, else docker-compose v1.
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.DEFAULT_GOAL := help
.PHONY: help install lock up down logs up-cluster down-cluster dev stop status order fare docs history stuck parked redrive dead-letters bench bench-short bench-profile bench-soak bench-peers test test-unit lint

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

install: $(VENV)/.installed  ## create .venv and install the project with its test tools, from requirements-test.lock

# Everything from PyPI comes from the lock, each file checked against its sha256 (pip and
# setuptools included); the project itself goes on last, without dependencies and without
# build isolation, so that its build backend is the locked setuptools too.
$(VENV)/.installed: requirements-test.lock requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements-test.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $@

lock:  ## regenerate requirements.lock and requirements-test.lock from pyproject.toml (ARGS=--upgrade)
	scripts/lock.sh $(ARGS)

up: install  ## the whole system in Docker: RabbitMQ (UI on 15672), the five services, the saga history (8080)
	@$(BIN)/python scripts/ensure_env.py
	@$(BIN)/python -m tools.broker definitions --out .run/rabbitmq/definitions.json
	@$(BIN)/python -m tools.database sql --out .run/postgres
	$(COMPOSE) up -d --build
	@$(PYTHON) scripts/wait_healthy.py --compose "$(COMPOSE)"

down: install  ## stop the Docker stack and delete its volumes
	@$(BIN)/python scripts/ensure_env.py
	$(COMPOSE) down -v --remove-orphans

# The cluster (docker-compose.cluster.yml over docker-compose.yml): a project of its own,
# so that it never touches `make up`'s stack. CLUSTER_FILES lets a test add a file.
SAGA_CLUSTER_PROJECT ?= saga-cluster
CLUSTER_FILES ?= -f docker-compose.yml -f docker-compose.cluster.yml
CLUSTER := $(COMPOSE) -p $(SAGA_CLUSTER_PROJECT) $(CLUSTER_FILES)

up-cluster: install  ## the same on a three-node RabbitMQ cluster, two replicas of every service and of the history
	@$(BIN)/python scripts/ensure_env.py
	@$(BIN)/python -m tools.broker definitions --out .run/rabbitmq/definitions.json
	@$(BIN)/python -m tools.database sql --out .run/postgres
	$(CLUSTER) up -d --build
	@$(PYTHON) scripts/wait_healthy.py --compose "$(CLUSTER)" --timeout 600

down-cluster: install  ## stop the cluster stack and delete its volumes
	@$(BIN)/python scripts/ensure_env.py
	$(CLUSTER) down -v --remove-orphans

logs: install  ## follow the Docker stack's logs
	@$(BIN)/python scripts/ensure_env.py
	$(COMPOSE) logs -f

dev: install  ## the five services and the saga history as local processes (SAGA_FAULTS=seed)
	@bash scripts/dev.sh start

stop:  ## stop the processes `make dev` started
	@bash scripts/dev.sh stop

status:  ## are the `make dev` processes up?
	@bash scripts/dev.sh status

order: install  ## place a sample order: make order SCENARIO=ok|1|11|2|22|3|33
	@$(BIN)/python -m saga_log order --scenario $(SCENARIO)

fare: install  ## submit a sample fare: make fare SCENARIO=ok|fail_auth|fail_charge|fail_credit|fail_refund
	@$(BIN)/python -m saga_log fare --scenario $(SCENARIO)

test: install  ## every test: unit, integration, end-to-end, Docker (skipped with a reason if no engine)
	$(BIN)/python -m pytest -ra

test-unit: install  ## the fast tests only
	$(BIN)/python -m pytest -ra tests/unit

docs: install  ## regenerate docs/asyncapi and docs/sagas from the saga declarations (tests check they are current)
	$(BIN)/python -m tools.docs

history: install  ## the saga history: make history [TYPE=fare] [STATUS=failed]; make history ID=<saga id>
	@if [ -n "$(ID)" ]; then $(BIN)/python -m saga_log show $(ID) $(if $(TYPE),--type $(TYPE)); \
	else $(BIN)/python -m saga_log list $(if $(TYPE),--type $(TYPE)) $(if $(STATUS),--status $(STATUS)); fi

stuck: install  ## running sagas with no event for longer than the deadline
	@$(BIN)/python -m saga_log stuck

parked: install  ## messages parked for an operator (retries spent, failed compensations)
	@$(BIN)/python -m saga_log parked

redrive: install  ## send a saga's parked messages back once the cause is fixed: make redrive ID=<saga id>
	@test -n "$(ID)" || { echo "usage: make redrive ID=<order_id or fareId>  (or python -m saga_log redrive --all)"; exit 2; }
	@$(BIN)/python -m saga_log redrive --saga-id $(ID)

dead-letters: install  ## messages that can never be valid, with the reason
	@$(BIN)/python -m saga_log dead-letters

bench: install  ## the benchmark: services as processes, closed and open loop, raw ceiling (~4 min)
	$(BIN)/python -m bench

bench-short: install  ## the same in about two minutes (CI runs it; it asserts nothing about speed)
	$(BIN)/python -m bench --short

bench-profile: install  ## the closed loop with py-spy on every service: where the CPU goes
	$(BIN)/python -m bench --profile

bench-soak: install  ## ten minutes of load, a line a minute: throughput and memory stay flat?
	$(BIN)/python -m bench --soak 600

bench-peers: install  ## the same saga on this project, Restate and DBOS back to back, one table (~6 min; ARGS=--short)
	$(BIN)/python -m bench.peers $(ARGS)

lint: install  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy contracts saga_log services tools
