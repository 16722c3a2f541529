#!/usr/bin/env bash
# `make test`: unit tests (with the race detector) and the black-box
# integration tests in test/, which start real clusters on free ports
# against the Redis, MariaDB and etcd that scripts/deps.sh brought up.
set -euo pipefail
cd "$(dirname "$0")/.."
# Services under test are built with -race too unless PUSHGW_TEST_RACE=0.
export PUSHGW_TEST_RACE="${PUSHGW_TEST_RACE:-1}"
go test -race -count=1 -timeout 15m ./internal/... ./pkg/... ./services/... ./cmd/... ./loadtest/...
go test -count=1 -timeout 25m ./test/
# The deployment files (compose, k8s overlays, dashboard, alerts) against
# the code; scripts/deploy-deps.sh installs docker-compose and promtool.
bash scripts/deploy-deps.sh
go test -count=1 -timeout 8m ./deploy/
# The short fault run (the full one is `make faults`), on its own so it
# does not share the two cores with the integration tests above.
go test -count=1 -timeout 8m ./test/faults/
