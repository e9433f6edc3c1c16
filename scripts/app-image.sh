#!/usr/bin/env bash
# Builds the stack's example app, offline, FROM the local busybox test image
# (scripts/docker-test-image.sh builds it from Debian's busybox-static):
#
#   skydns-test/cool-api:v1   busybox httpd on 8080 serving /www; /www/version = "v1"
#   skydns-test/cool-api:v2   the same with "v2"
#
# Each has a HEALTHCHECK (wget of 127.0.0.1:8080/version every second), so
# skydock registers a replica only once it serves. Docker sends SIGTERM to
# PID 1 on `docker stop`; httpd as PID 1 installs no handler, so the kernel
# ignores it and the replica keeps serving through its whole stop grace period
# (the drain: skydock has removed it from skydns on the kill event), then
# SIGKILL ends it.
#
# Only this script makes skydns-test/cool-api (labelled org.skydns.app=1);
# docker-test-image.sh's images have other names, so what a test sees does
# not depend on which script ran first.
#
# Idempotent: images carrying the label are kept.
#
#   scripts/app-image.sh           build what is missing
#   scripts/app-image.sh --force   rebuild both
set -euo pipefail

cd "$(dirname "$0")/.."

BASE=skydns-test/busybox:latest
REPO=skydns-test/cool-api
VERSIONS=(v1 v2)
LABEL=org.skydns.app

force=0
case "${1:-}" in
    "") ;;
    --force) force=1 ;;
    *)
        echo "usage: $0 [--force]" >&2
        exit 2
        ;;
esac

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'app-image: %s\n' "$*" >&2
    exit 1
}

docker info >/dev/null 2>&1 || die "no Docker engine answers at /var/run/docker.sock"
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    say "$BASE is missing: scripts/docker-test-image.sh"
    scripts/docker-test-image.sh
fi

# docker-test-image.sh prunes unnamed images labelled skydns-test=1 (which
# the base carries) while holding this lock: hold it too, so that prune cannot
# remove this build's intermediate images; the LABEL step comes first and
# relabels them anyway.
exec 9>"${TMPDIR:-/tmp}/skydns-docker-test-image.lock"
flock 9

work=""
cleanup() {
    if [[ -n "$work" ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT

is_app() {
    [[ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)" == 1 ]]
}

for v in "${VERSIONS[@]}"; do
    tag="$REPO:$v"
    if ((!force)) && is_app "$tag"; then
        say "$tag exists; not rebuilt"
        continue
    fi
    [[ -n "$work" ]] || work=$(mktemp -d "${TMPDIR:-/tmp}/skydns-app-image.XXXXXX")
    ctx="$work/$v"
    mkdir -p "$ctx/www"
    printf '%s\n' "$v" >"$ctx/www/version"
    printf 'cool-api %s\n' "$v" >"$ctx/www/index.html"
    cat >"$ctx/Dockerfile" <<EOF
FROM $BASE
LABEL skydns-test=app $LABEL=1 org.skydns.app.version=$v
COPY www/ /www/
EXPOSE 8080/tcp
HEALTHCHECK --interval=1s --timeout=1s --start-period=5s --retries=2 \\
    CMD ["/bin/wget","-q","-O","/dev/null","http://127.0.0.1:8080/version"]
CMD ["/bin/httpd","-f","-p","8080","-h","/www"]
EOF
    # The classic builder (no buildx here); its deprecation notice is noise.
    if ! out=$(DOCKER_BUILDKIT=0 docker build --pull=false -q -t "$tag" "$ctx" 2>&1); then
        printf '%s\n' "$out" >&2
        die "docker build of $tag failed"
    fi
    say "built $tag"
done
# Earlier builds, now without a name.
docker image prune -f --filter "label=$LABEL=1" >/dev/null
