#!/usr/bin/env bash
# `npm test` set-up: everything the suite runs against for real — npm dependencies, the Docker
# engine, the ClickHouse server, and the offline runtime image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/start-clickhouse.sh
# test/storage/cluster.test.ts starts its own ZooKeeper (test/storage/private-clickhouse.ts) from Debian's package.
if [ ! -f /usr/share/java/zookeeper.jar ]; then
  echo "skiff: installing zookeeper from Debian packages (for the ClickHouse cluster test)..."
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >/dev/null
fi
node --import tsx cli/bin.ts build-image
