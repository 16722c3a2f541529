#!/usr/bin/env bash
# Installs what `go test ./deploy/` needs to check the deployment files
# offline, where missing (Debian packages; root for apt-get):
#   docker-compose  validates docker-compose.yml (`docker-compose config`, no daemon needed)
#   promtool        validates deploy/prometheus/alerts.yml (package prometheus)
# kubectl (with kustomize) renders deploy/k8s; it is not packaged by Debian
# and must already be on the machine.
set -euo pipefail
missing=()
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v promtool >/dev/null || missing+=(prometheus)
if ((${#missing[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v kubectl >/dev/null || { echo "deploy-deps: kubectl not found; install it (it renders deploy/k8s offline)" >&2; exit 1; }
