#!/usr/bin/env bash
# `npm test` set-up: everything the suite runs against for real — npm dependencies, the Docker
# engine, the ClickHouse server, and the offline runtime image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/start-clickhouse.sh
node --import tsx cli/bin.ts build-image
