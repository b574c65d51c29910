#!/usr/bin/env bash
# `make dev`: the five services and the saga history as separate local processes against
# the local PostgreSQL and RabbitMQ (127.0.0.1:5432 and :5672). As administrators it
# makes the broker users (RABBITMQ_ADMIN, default guest through the management API) and
# each service's database with its roles (PG_ADMIN_URL, default postgres); the services
# then run as those, listening on 127.0.0.1 only. The secrets come from .env (written if
# missing), SAGA_HTTP_TOKEN among them: the pages and APIs ask for it here too.
set -euo pipefail
cd "$(dirname "$0")/.."
run=.run
services=(order payment inventory fare accounting saga_log)
declare -A ports=([order]=${ORDER_HTTP_PORT:-8000} [payment]=${PAYMENT_HTTP_PORT:-8001} [inventory]=${INVENTORY_HTTP_PORT:-8002} [fare]=${FARE_HTTP_PORT:-8003} [accounting]=${ACCOUNTING_HTTP_PORT:-8004} [saga_log]=${SAGA_LOG_HTTP_PORT:-8080})
declare -A modules=([order]=services.order [payment]=services.payment [inventory]=services.inventory [fare]=services.fare [accounting]=services.accounting [saga_log]=saga_log.recorder)
export SAGA_FAULTS=${SAGA_FAULTS:-seed}

running() { [[ -f $run/$1.pid ]] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

start() {
  mkdir -p "$run"
  # The secrets (card keys, a password per broker user) from .env, written if missing.
  .venv/bin/python scripts/ensure_env.py
  set -a
  # shellcheck disable=SC1091
  . ./.env
  set +a
  # The broker users, permissions and topology the saga declarations make, on the local
  # RabbitMQ (through its management API, as an administrator: RABBITMQ_ADMIN).
  .venv/bin/python -m tools.broker apply --vhost / || exit 1
  local host=${SAGA_DEV_AMQP_HOST:-127.0.0.1:5672}
  for s in "${services[@]}"; do
    local role=${s^^}
    local password_variable="RABBITMQ_PASSWORD_${role}"
    export "${role}_AMQP_URL=amqp://${s}:${!password_variable}@${host}/"
  done
  # Each service's database and its two roles on the local PostgreSQL (as the superuser
  # PG_ADMIN_URL names): it migrates as <service>_owner and runs as <service>_app.
  .venv/bin/python -m tools.database provision || exit 1
  local pg=${SAGA_DEV_PG_HOST:-127.0.0.1:5432}
  declare -A databases=([order]=orders [payment]=payments [inventory]=inventory [fare]=fares [accounting]=accounting [saga_log]=saga_log)
  for s in "${services[@]}"; do
    local role=${s^^}
    local app="DB_PASSWORD_${role}_APP" owner="DB_PASSWORD_${role}_OWNER"
    export "${role}_DATABASE_URL=postgresql://${s}_app:${!app}@${pg}/${databases[$s]}"
    export "${role}_MIGRATION_DATABASE_URL=postgresql://${s}_owner:${!owner}@${pg}/${databases[$s]}"
  done
  for s in "${services[@]}"; do
    if running "$s"; then echo "$s: already running (pid $(cat "$run/$s.pid"))"; continue; fi
    nohup .venv/bin/python -m "${modules[$s]}" >>"$run/$s.log" 2>&1 &
    echo $! >"$run/$s.pid"
  done
  for s in "${services[@]}"; do
    port=${ports[$s]}
    for _ in $(seq 120); do
      if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
      if ! running "$s"; then
        echo "$s: exited during start. Last lines of $run/$s.log:" >&2
        tail -n 20 "$run/$s.log" >&2
        echo "Is PostgreSQL up (pg_isready -h 127.0.0.1) and RabbitMQ (rabbitmq-diagnostics ping)?" >&2
        exit 1
      fi
      sleep 0.5
    done
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 || { echo "$s: no /health on port $port after 60 s; see $run/$s.log" >&2; exit 1; }
    echo "$s: up on http://127.0.0.1:$port (pid $(cat "$run/$s.pid"), log $run/$s.log)"
  done
  echo "SAGA_FAULTS=$SAGA_FAULTS. Place an order: make order SCENARIO=ok   Submit a fare: make fare SCENARIO=ok   Stop: make stop"
  echo "Saga history: http://127.0.0.1:${ports[saga_log]}/   (make history, make stuck)"
}

stop() {
  for s in "${services[@]}"; do
    if running "$s"; then
      kill "$(cat "$run/$s.pid")" && echo "$s: stopped"
    fi
    rm -f "$run/$s.pid"
  done
}

status() {
  for s in "${services[@]}"; do
    if running "$s"; then echo "$s: running (pid $(cat "$run/$s.pid"))"; else echo "$s: not running"; fi
  done
}

"${1:-start}"
