#!/usr/bin/env bash
# Makes sure a ClickHouse server answers on 127.0.0.1:8123 (Skiff's storage with CLICKHOUSE_URL, and
# the server half of test/storage): installs Debian's clickhouse-server if missing, starts it as the
# clickhouse user with /etc/clickhouse-server/config.xml, waits for /ping. Idempotent.
set -euo pipefail

PING_URL="${SKIFF_CLICKHOUSE_PING_URL:-http://127.0.0.1:8123/ping}"
CONFIG_FILE=/etc/clickhouse-server/config.xml
LOG_FILE=/var/log/clickhouse-server/clickhouse-server.err.log
WAIT_SECONDS=60

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ping_server() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 2 "$PING_URL" >/dev/null 2>&1
  else
    node -e "fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" "$PING_URL"
  fi
}

if ping_server; then exit 0; fi

# Two callers at once (parallel test runs) must not both start a server.
LOCK_FILE=/tmp/skiff-start-clickhouse.lock
if command -v flock >/dev/null 2>&1 && { exec 9>>"$LOCK_FILE"; } 2>/dev/null; then flock -w "$WAIT_SECONDS" 9 || true; fi
if ping_server; then exit 0; fi

if ! command -v clickhouse-server >/dev/null 2>&1; then
  echo "skiff: installing clickhouse-server from Debian packages..."
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server >/dev/null
fi

echo "skiff: preparing ClickHouse directories..."
for dir in /var/lib/clickhouse /var/lib/clickhouse/tmp /var/log/clickhouse-server; do
  as_root mkdir -p "$dir"
  as_root chown -R clickhouse:clickhouse "$dir"
done

echo "skiff: starting clickhouse-server as user clickhouse ($CONFIG_FILE)..."
as_root su -s /bin/sh clickhouse -c "clickhouse-server --config-file=$CONFIG_FILE --daemon"

for _ in $(seq 1 $((WAIT_SECONDS * 2))); do
  if ping_server; then echo "skiff: ClickHouse server is up ($PING_URL)"; exit 0; fi
  sleep 0.5
done
echo "skiff: clickhouse-server did not answer $PING_URL within ${WAIT_SECONDS}s; see $LOG_FILE" >&2
exit 1
