#!/usr/bin/env bash
# Builds skydns/etcd:latest (deploy/etcd.Dockerfile) offline from Debian's
# etcd-server and etcd-client packages (installed if missing): the etcd and
# etcdctl binaries plus the shared libraries `ldd` says they need, in a
# FROM scratch image. For deploy/docker-compose.etcd.yml.
#
#   scripts/etcd-image.sh
set -euo pipefail

cd "$(dirname "$0")/.."
TAG=skydns/etcd:latest

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    echo "installing etcd-server etcd-client (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends etcd-server etcd-client
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/skydns-etcd-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/usr/bin" "$work/rootfs/data"
for bin in etcd etcdctl; do
    path=$(command -v "$bin")
    cp "$path" "$work/rootfs/usr/bin/$bin"
    # Every library it links, at the path the loader looks for it.
    for lib in $(ldd "$path" | grep -o '/[^ ]*'); do
        mkdir -p "$work/rootfs$(dirname "$lib")"
        cp -L "$lib" "$work/rootfs$lib"
    done
done
cp deploy/etcd.Dockerfile "$work/Dockerfile"
DOCKER_BUILDKIT=0 docker build --pull=false -q -t "$TAG" "$work" >/dev/null
version=$(docker run --rm --entrypoint /usr/bin/etcd "$TAG" --version)
echo "${version%%$'\n'*}"
echo "built $TAG"
