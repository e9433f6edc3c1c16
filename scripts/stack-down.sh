#!/usr/bin/env bash
# Stops and removes the stack's containers and its network (project
# "skystack"; images are kept). The replicas drain through their stop grace
# period (15 s), so this takes about that long.
#
#   scripts/stack-down.sh
set -euo pipefail

cd "$(dirname "$0")/.."

PROJECT=${STACK_PROJECT:-skystack}
docker-compose -f deploy/docker-compose.yml -p "$PROJECT" down --remove-orphans
