#!/bin/sh
# Writes redis.conf and sentinel.conf for this pod into /etc/redis-run.
# The master is whatever a running Sentinel says it is; with no Sentinel up
# yet (first start) it is redis-0. Hostnames, not pod IPs, are announced so
# a restarted pod keeps its identity.
set -eu
ordinal="${POD_NAME##*-}"
self="${POD_NAME}.${SERVICE_NAME}"
master=""
for i in 0 1 2; do
  peer="redis-$i.${SERVICE_NAME}"
  [ "$peer" = "$self" ] && continue
  answer="$(timeout 3 redis-cli -h "$peer" -p 26379 --raw sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | head -n 1 || true)"
  case "$answer" in
    ""|*ERR*|*rror*) ;;
    *) master="$answer"; break ;;
  esac
done
if [ -z "$master" ]; then
  if [ "$ordinal" = "0" ]; then master="$self"; else master="redis-0.${SERVICE_NAME}"; fi
fi
echo "pod $self: master is $master"

{
  echo "dir /data"
  echo "appendonly yes"
  echo "replica-announce-ip $self"
  if [ "$master" != "$self" ]; then echo "replicaof $master 6379"; fi
} > /etc/redis-run/redis.conf

{
  echo "port 26379"
  echo "dir /tmp"
  echo "sentinel resolve-hostnames yes"
  echo "sentinel announce-hostnames yes"
  echo "sentinel announce-ip $self"
  echo "sentinel monitor $MASTER_NAME $master 6379 2"
  echo "sentinel down-after-milliseconds $MASTER_NAME 5000"
  echo "sentinel failover-timeout $MASTER_NAME 60000"
  echo "sentinel parallel-syncs $MASTER_NAME 1"
} > /etc/redis-run/sentinel.conf
