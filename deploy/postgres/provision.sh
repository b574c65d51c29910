#!/bin/sh
# The db-roles container of docker-compose.yml: give each service's database its owner
# and runtime roles (the statements tools.database wrote to .run/postgres/<service>.sql,
# with password verifiers only), then exit. Runs at every `make up`: idempotent, and a
# rotated password in .env takes effect here.
set -eu
for entry in order:order-db:orders payment:payment-db:payments inventory:inventory-db:inventory \
             fare:fare-db:fares accounting:accounting-db:accounting saga_log:saga-log-db:saga_log; do
  service=${entry%%:*}; rest=${entry#*:}; host=${rest%%:*}; database=${rest#*:}
  psql -q -v ON_ERROR_STOP=1 -h "$host" -U postgres -d "$database" -f "/provision/$service.sql"
  echo "db-roles: $database on $host has its roles ${service}_owner and ${service}_app"
done
