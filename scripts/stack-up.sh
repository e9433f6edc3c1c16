#!/usr/bin/env bash
# Brings the article's stack up (deploy/docker-compose.yml, project "skystack"),
# offline: builds whatever image is missing first, then waits until nginx
# serves the app through skydns.
#
#   scripts/stack-up.sh                 3 replicas of cool-api
#   scripts/stack-up.sh 5               5 replicas
#   REBUILD=1 scripts/stack-up.sh       rebuild skydns/skydock images first
#
# Images: skydns/skydns + skydns/skydock (scripts/build-images.sh),
# skydns-test/cool-api:v1/v2 (scripts/app-image.sh), nginx:latest
# (scripts/nginx-image.sh; a pulled public nginx image is used as it is).
# Stop it with scripts/stack-down.sh.
set -euo pipefail

cd "$(dirname "$0")/.."

PROJECT=${STACK_PROJECT:-skystack}
COMPOSE=(docker-compose -f deploy/docker-compose.yml -p "$PROJECT")
REPLICAS=${1:-3}
URL=http://127.0.0.1:8088/version
SKYDNS_IP=172.30.0.53
NAME=cool-api.production.skydns.local

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'stack-up: %s\n' "$*" >&2
    exit 1
}
have() { docker image inspect "$1" >/dev/null 2>&1; }

[[ "$REPLICAS" =~ ^[1-9][0-9]*$ ]] || die "usage: $0 [replicas]"
command -v docker-compose >/dev/null || die "docker-compose is missing (apt-get install docker-compose)"
docker info >/dev/null 2>&1 || die "no Docker engine answers at /var/run/docker.sock"

if [[ "${REBUILD:-0}" == 1 ]] || ! have skydns/skydns:latest || ! have skydns/skydock:latest; then
    scripts/build-images.sh --no-smoke
fi
if ! have skydns-test/cool-api:v1 || ! have skydns-test/cool-api:v2 ||
    [[ "$(docker image inspect -f '{{index .Config.Labels "org.skydns.app"}}' skydns-test/cool-api:v1)" != 1 ]]; then
    scripts/app-image.sh
fi
if ! have nginx:latest; then
    scripts/nginx-image.sh
fi

say "${COMPOSE[*]} up -d --scale cool-api=$REPLICAS"
"${COMPOSE[@]}" up -d --scale "cool-api=$REPLICAS"

say "waiting for $REPLICAS replicas in skydns and for nginx to serve $URL"
deadline=$((SECONDS + 60))
while :; do
    ips=$(dig @"$SKYDNS_IP" "$NAME" A +short +time=1 +tries=1 2>/dev/null | grep -c '^[0-9]' || true)
    body=$(curl -fsS --max-time 2 "$URL" 2>/dev/null || true)
    if [[ "$ips" -ge "$REPLICAS" && -n "$body" ]]; then
        break
    fi
    if ((SECONDS > deadline)); then
        "${COMPOSE[@]}" ps >&2 || true
        "${COMPOSE[@]}" logs --tail=20 skydns skydock nginx >&2 || true
        die "after 60 s: $ips of $REPLICAS replicas in skydns, nginx answered '${body}'"
    fi
    sleep 0.5
done
say "up: $NAME has $ips addresses; $URL says $body"
