#!/bin/sh
# The healthcheck of each node of docker-compose.cluster.yml: healthy when RabbitMQ runs on
# this node, the node sees a majority of the cluster's nodes running (itself among them)
# and it knows of no network partition. A node cut off the network (paused by
# pause_minority) or split away turns unhealthy, where `rabbitmq-diagnostics ping` would
# still pass. One CLI call: each starts an Erlang VM, the costly part of a check.
set -eu
# Bounded: on a node cut off the network the CLI cannot even reach its own node (its host
# name resolves to an address that is gone) and would wait past Docker's timeout. Into a
# file, not a pipe: the CLI runs under su, whose child would hold a pipe open after
# `timeout` has given up on it.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! timeout -k 5 25 rabbitmqctl -q cluster_status --formatter json >"$out" 2>&1; then
  echo "RabbitMQ does not answer here, or is not running (paused?):" >&2
  head -c 300 "$out" >&2
  exit 1
fi
status=$(cat "$out")
# The node names in one of the JSON document's arrays: {"disk_nodes":["rabbit@a",...],...}
names() {
  printf '%s' "$status" | sed -n "s/.*\"$1\":\[\([^]]*\)\].*/\1/p" | tr ',' '\n' | tr -d '" '
}
members=$(names disk_nodes | grep -c '@' || true)
running=$(names running_nodes | grep -c '@' || true)
if ! names running_nodes | grep -qx "rabbit@$(hostname)"; then
  echo "RabbitMQ is not running on this node (paused, or stopped)" >&2
  exit 1
fi
if [ "$running" -le $((members / 2)) ]; then
  echo "this node sees $running of $members nodes running: not a majority" >&2
  exit 1
fi
partitions=$(printf '%s' "$status" | sed -n 's/.*"partitions":\({[^}]*}\).*/\1/p')
if [ -n "$partitions" ] && [ "$partitions" != "{}" ]; then
  echo "network partition: $partitions" >&2
  exit 1
fi
