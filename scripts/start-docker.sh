#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs docker.io from Debian if missing and starts dockerd
# without a bridge (Skiff containers run with --network none and are reached over unix sockets).
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "skiff: installing Docker engine (docker.io) from Debian packages..."
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
echo "skiff: starting dockerd (no bridge, no iptables)..."
mkdir -p /var/log
as_root bash -c 'nohup dockerd --bridge=none --iptables=false --ip6tables=false >/var/log/skiff-dockerd.log 2>&1 &'
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "skiff: Docker engine is up"; exit 0; fi
  sleep 0.5
done
echo "skiff: dockerd did not come up; see /var/log/skiff-dockerd.log" >&2
exit 1
