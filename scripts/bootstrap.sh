#!/usr/bin/env bash
# `npm start` set-up on a fresh Debian machine with Node 20: npm dependencies, a running Docker
# engine. The runtime image and the embedded ClickHouse (chDB) are made by `skiff up` itself.
set -euo pipefail
cd "$(dirname "$0")/.."
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then echo "skiff: Node 20 or newer is required (found $(node --version))" >&2; exit 1; fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "skiff: installing npm dependencies (npm ci)..."
  npm ci --no-audit --no-fund
fi
bash scripts/start-docker.sh
