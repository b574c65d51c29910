#!/bin/sh
# The rabbitmq-cluster job of docker-compose.cluster.yml, run once the three nodes are up:
# wait until they form one cluster, give every quorum queue a replica on every node, and
# spread the queues' leaders over the nodes.
#
# Why a job: node 1 starts first, alone, and loads the definitions (tools/broker.py), so
# the quorum queues they declare get one replica (the nodes a queue is declared on are the
# cluster's members at that moment). `rabbitmq-queues grow` adds the others; quorum queues
# a service declares later, in the full cluster, get three from the start. Idempotent.
set -eu
seed=rabbit@rabbitmq-1
nodes="rabbit@rabbitmq-1 rabbit@rabbitmq-2 rabbit@rabbitmq-3"
running() {
  rabbitmqctl -q -n "$seed" cluster_status --formatter json 2>/dev/null \
    | sed -n 's/.*"running_nodes":\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | grep -c 'rabbit@' || true
}
tries=0
until [ "$(running)" -ge 3 ]; do
  tries=$((tries + 1))
  if [ "$tries" -gt 90 ]; then
    echo "rabbitmq-cluster: the three nodes did not form one cluster in 180 s" >&2
    rabbitmqctl -n "$seed" cluster_status >&2 || true
    exit 1
  fi
  sleep 2
done
echo "rabbitmq-cluster: three nodes running"
for node in $nodes; do
  rabbitmq-queues -q -n "$seed" grow "$node" all >/dev/null
done
rabbitmq-queues -q -n "$seed" rebalance quorum >/dev/null
# Every quorum queue must now have its three members (one JSON object a line).
missing=$(rabbitmqctl -q -n "$seed" list_queues name type members --formatter json \
  | tr '{' '\n' | grep '"quorum"' | while read -r queue; do
      for node in $nodes; do
        case "$queue" in *"\"$node\""*) ;; *) echo "$queue"; break ;; esac
      done
    done)
if [ -n "$missing" ]; then
  echo "rabbitmq-cluster: quorum queues without a replica on every node:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "rabbitmq-cluster: every quorum queue has a replica on each node; leaders spread"
