#!/usr/bin/env bash
# Builds the local Docker images the skydock integration tests run, without
# pulling anything (this machine cannot reach a registry):
#
#   skydns-test/busybox:latest        Debian's busybox-static, `docker import`ed;
#                                     CMD: busybox httpd on 8080, EXPOSE 8080/tcp
#   localhost:5000/team/cool-api:v2   the same image, registry + repository + tag
#                                     (for the image-name cleaning: → cool-api)
#   skydns-test/healthy:latest        FROM skydns-test/busybox:latest plus
#                                     HEALTHCHECK `test -f /tmp/healthy` every 1 s
#
# Idempotent: an image that exists is left alone; run it as often as you like
# (the tests run it once per test process). Concurrent runs are serialised
# with flock. The only network traffic is `apt-get download busybox-static`
# (and `apt-get update` if that fails), and only while the base image is
# missing.
#
#   scripts/docker-test-image.sh            build what is missing
#   scripts/docker-test-image.sh --force    rebuild everything
#
# Exits 1 with one line if no Docker engine answers.
set -euo pipefail

BASE=skydns-test/busybox:latest
ALIASES=(localhost:5000/team/cool-api:v2)
HEALTHY=skydns-test/healthy:latest
# Applets reachable as /bin/<name> in the image.
APPLETS=(sh httpd sleep echo cat true false wget nc env test touch rm ls mkdir ps kill hostname)

force=0
case "${1:-}" in
    "") ;;
    --force) force=1 ;;
    *)
        echo "usage: $0 [--force]" >&2
        exit 2
        ;;
esac

if ! docker info >/dev/null 2>&1; then
    echo "docker engine not reachable at /var/run/docker.sock: Docker tests cannot run"
    exit 1
fi

# One build at a time (parallel test processes may all call this).
exec 9>"${TMPDIR:-/tmp}/skydns-docker-test-image.lock"
flock 9

have_image() {
    docker image inspect "$1" >/dev/null 2>&1
}

work=""
cleanup() {
    if [[ -n "$work" ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT

workdir() {
    if [[ -z "$work" ]]; then
        work=$(mktemp -d "${TMPDIR:-/tmp}/skydns-test-image.XXXXXX")
        # apt's _apt user downloads into a subdirectory: let it through.
        chmod 0755 "$work"
    fi
}

build_base() {
    workdir
    local dl="$work/download"
    mkdir -p "$dl"
    # apt's _apt user must be able to write the download directory.
    chmod 0777 "$dl"
    echo "downloading busybox-static with apt-get"
    if ! (cd "$dl" && apt-get download -q busybox-static); then
        echo "apt-get download failed; running apt-get update and retrying"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        (cd "$dl" && apt-get download -q busybox-static)
    fi
    local deb
    deb=$(find "$dl" -maxdepth 1 -name 'busybox-static_*.deb' | head -n 1)
    [[ -n "$deb" ]] || {
        echo "apt-get download busybox-static produced no .deb" >&2
        exit 1
    }
    dpkg-deb -x "$deb" "$work/deb"
    [[ -x "$work/deb/bin/busybox" ]] || {
        echo "$deb has no bin/busybox" >&2
        exit 1
    }

    local root="$work/rootfs"
    mkdir -p "$root"/{bin,etc,proc,sys,dev,root,var/www}
    mkdir -p -m 1777 "$root/tmp"
    install -m 0755 "$work/deb/bin/busybox" "$root/bin/busybox"
    local a
    for a in "${APPLETS[@]}"; do
        ln -s busybox "$root/bin/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    echo "skydns test image" >"$root/index.html"

    tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
    docker import \
        --change 'CMD ["/bin/httpd","-f","-p","8080","-h","/"]' \
        --change 'EXPOSE 8080/tcp' \
        --change 'ENV PATH=/bin' \
        --change 'LABEL skydns-test=1' \
        --message 'skydns test image: Debian busybox-static' \
        "$work/rootfs.tar" "$BASE" >/dev/null
    echo "built $BASE"
}

build_healthy() {
    workdir
    local ctx="$work/healthy"
    mkdir -p "$ctx"
    cat >"$ctx/Dockerfile" <<EOF
FROM $BASE
HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD ["/bin/sh","-c","test -f /tmp/healthy"]
EOF
    # The classic builder: it needs no buildx plugin and builds offline from a
    # local FROM image.
    # Its deprecation notice is noise: show the output only when it fails.
    local out
    if ! out=$(DOCKER_BUILDKIT=0 docker build --pull=false -q -t "$HEALTHY" "$ctx" 2>&1); then
        echo "$out" >&2
        echo "docker build of $HEALTHY failed" >&2
        exit 1
    fi
    echo "built $HEALTHY"
}

if ((force)) || ! have_image "$BASE"; then
    build_base
    # A new base: everything derived from it is rebuilt.
    force=1
fi
for name in "${ALIASES[@]}"; do
    if ((force)) || ! have_image "$name"; then
        docker tag "$BASE" "$name"
        echo "tagged $name"
    fi
done
if ((force)) || ! have_image "$HEALTHY"; then
    build_healthy
fi
# Images a --force rebuild left without a name.
docker image prune -f --filter label=skydns-test=1 >/dev/null
