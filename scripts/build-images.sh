#!/usr/bin/env bash
# Builds the two images of the stack, offline (FROM scratch: nothing is pulled):
#
#   skydns/skydns:latest    deploy/skydns.Dockerfile   static skydns binary
#   skydns/skydock:latest   deploy/skydock.Dockerfile  static skydock binary + deploy/plugins/*.js
#
# Steps:
#   1. static release binaries, in target/x86_64-unknown-linux-gnu/release (the
#      explicit --target keeps them apart from the normal target/release):
#        RUSTFLAGS="-C target-feature=+crt-static" \
#            cargo build --release --locked --target x86_64-unknown-linux-gnu -p skydns -p skydock
#      a check that both are static
#      (`file`, `ldd`); the binaries go into the images stripped;
#   2. `docker build` of each image from a temporary context that holds only the
#      binary (and the plugins), with the classic builder (no buildx here);
#   3. a size check: each image must be under 20 MB;
#   4. a smoke test: a skydns container (image defaults, -no-forward) answers
#      `dig @<container IP> skydns.local SOA`; the container is removed after.
#
# Idempotent: cargo and the docker layer cache make a second run a no-op.
#
#   scripts/build-images.sh              build, check, smoke-test
#   scripts/build-images.sh --no-smoke   skip step 4
set -euo pipefail

cd "$(dirname "$0")/.."

# The static build (also `just static`): the explicit --target keeps it
# apart from the normal target/release.
STATIC_TARGET=x86_64-unknown-linux-gnu
build_static() {
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$STATIC_TARGET" -p skydns -p skydock
}
BIN_DIR="${CARGO_TARGET_DIR:-target}/$STATIC_TARGET/release"
SKYDNS_IMAGE=skydns/skydns:latest
SKYDOCK_IMAGE=skydns/skydock:latest
MAX_BYTES=$((20 * 1000 * 1000))

smoke=1
case "${1:-}" in
    "") ;;
    --no-smoke) smoke=0 ;;
    *)
        echo "usage: $0 [--no-smoke]" >&2
        exit 2
        ;;
esac

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'build-images: %s\n' "$*" >&2
    exit 1
}

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers at /var/run/docker.sock"
command -v file >/dev/null || die "'file' is missing (apt-get install file)"

work=""
smoke_container=""
cleanup() {
    if [[ -n "$smoke_container" ]]; then
        docker rm -f "$smoke_container" >/dev/null 2>&1 || true
    fi
    if [[ -n "$work" ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
work=$(mktemp -d "${TMPDIR:-/tmp}/skydns-images.XXXXXX")

# 1. Static binaries.
say "cargo build (static, --target $STATIC_TARGET)"
build_static

for bin in skydns skydock; do
    path="$BIN_DIR/$bin"
    [[ -x "$path" ]] || die "$path was not built"
    desc=$(file -b "$path")
    case "$desc" in
        *"statically linked"* | *"static-pie linked"*) ;;
        *) die "$path is not static: $desc" ;;
    esac
    # ldd exits non-zero on a static binary ("not a dynamic executable") or
    # prints "statically linked"; any "=>" means shared libraries.
    if ldd_out=$(ldd "$path" 2>&1) && grep -q '=>' <<<"$ldd_out"; then
        die "$path links shared libraries: $ldd_out"
    fi
    say "$path: static ($(du -h "$path" | cut -f1))"
done

# 2. Images, each from a context holding only what it copies.
build_image() {
    local tag=$1 dockerfile=$2 ctx=$3 out
    say "docker build $tag"
    # The classic builder's deprecation notice is noise: show the output only on failure.
    if ! out=$(DOCKER_BUILDKIT=0 docker build --pull=false -q \
        --label org.skydns.build=1 -f "$dockerfile" -t "$tag" "$ctx" 2>&1); then
        printf '%s\n' "$out" >&2
        die "docker build of $tag failed"
    fi
}

mkdir -p "$work/skydns" "$work/skydock/plugins"
# Stripped here: the release profile keeps symbols for profiling.
strip -o "$work/skydns/skydns" "$BIN_DIR/skydns"
cp deploy/skydns.Dockerfile "$work/skydns/Dockerfile"
strip -o "$work/skydock/skydock" "$BIN_DIR/skydock"
cp deploy/plugins/*.js "$work/skydock/plugins/"
cp deploy/skydock.Dockerfile "$work/skydock/Dockerfile"
# Same modes on every run (the layer cache compares contents and modes, not mtimes).
chmod 0755 "$work/skydns/skydns" "$work/skydock/skydock"
chmod 0644 "$work/skydock/plugins/"*.js

build_image "$SKYDNS_IMAGE" "$work/skydns/Dockerfile" "$work/skydns"
build_image "$SKYDOCK_IMAGE" "$work/skydock/Dockerfile" "$work/skydock"
# Earlier builds of these tags, now without a name.
docker image prune -f --filter label=org.skydns.build=1 >/dev/null

# 3. Sizes.
for tag in "$SKYDNS_IMAGE" "$SKYDOCK_IMAGE"; do
    size=$(docker image inspect -f '{{.Size}}' "$tag")
    if ((size >= MAX_BYTES)); then
        die "$tag is $size bytes: images must stay under 20 MB"
    fi
    say "$tag: $size bytes ($((size / 1000)) kB) < 20 MB"
done

# 4. Smoke test: the image's own defaults (listen on every interface), with
#    arguments that replace CMD the way the article's `docker run` line does.
if ((smoke)); then
    command -v dig >/dev/null || die "'dig' is missing (apt-get install bind9-dnsutils), or pass --no-smoke"
    smoke_container="skydns-image-smoke-$$"
    say "smoke test: $SKYDNS_IMAGE answers DNS on its container IP"
    docker run -d --name "$smoke_container" "$SKYDNS_IMAGE" \
        -no-forward -domain skydns.local >/dev/null
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$smoke_container")
    [[ -n "$ip" ]] || die "the smoke container has no IP"
    answer=""
    for _ in $(seq 1 50); do
        if answer=$(dig @"$ip" skydns.local SOA +short +time=1 +tries=1 2>/dev/null) && [[ -n "$answer" ]]; then
            break
        fi
        answer=""
        sleep 0.2
    done
    if [[ -z "$answer" ]]; then
        docker logs "$smoke_container" >&2 || true
        die "skydns in a container did not answer 'dig @$ip skydns.local SOA'"
    fi
    say "dig @$ip skydns.local SOA: $answer"
fi
say "images ready: $SKYDNS_IMAGE $SKYDOCK_IMAGE"
