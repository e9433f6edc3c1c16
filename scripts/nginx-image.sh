#!/usr/bin/env bash
# Builds a local image tagged nginx:1.22 and nginx:latest WITHOUT pulling
# anything: this machine cannot reach a registry, so the stack's test path
# uses Debian's nginx (1.22, package nginx-light) in an imported root file
# system instead of the public image. Users elsewhere just pull nginx; the
# stack's deploy/nginx.conf works with both.
#
# Steps:
#   1. apt-get install nginx-light on the host if nginx is missing (services
#      are not started: policy-rc.d denies it while this script runs);
#   2. a rootfs with the nginx binary, every shared library `ldd` lists plus
#      the dynamic loader (and glibc's NSS modules, which are dlopen()ed),
#      /etc/nginx (mime.types, ...), a default nginx.conf that serves
#      /usr/share/nginx/html and logs to stdout/stderr, /var/log/nginx
#      (access.log -> /dev/stdout, error.log -> /dev/stderr), /var/lib/nginx,
#      /run, /tmp, /etc/passwd and /etc/group (root, www-data, nobody,
#      nogroup), /etc/nsswitch.conf;
#   3. `docker import` with CMD ["nginx","-g","daemon off;"], ENTRYPOINT [], EXPOSE 80
#      (import cannot set STOPSIGNAL: compose sets stop_signal SIGQUIT);
#   4. a check: `nginx -t` inside the image, with deploy/nginx.conf mounted at
#      /etc/nginx/nginx.conf.
#
# Idempotent: an existing image (label org.skydns.local-nginx=1) is kept.
#
#   scripts/nginx-image.sh           build if missing, then check
#   scripts/nginx-image.sh --force   rebuild
set -euo pipefail

cd "$(dirname "$0")/.."

TAGS=(nginx:1.22 nginx:latest)
LABEL=org.skydns.local-nginx

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
    printf 'nginx-image: %s\n' "$*" >&2
    exit 1
}

docker info >/dev/null 2>&1 || die "no Docker engine answers at /var/run/docker.sock"

work=""
policy_added=0
cleanup() {
    if ((policy_added)); then
        rm -f /usr/sbin/policy-rc.d
    fi
    if [[ -n "$work" ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT

is_ours() {
    [[ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)" == 1 ]]
}

check_image() {
    local tag=$1 conf out
    conf="$PWD/deploy/nginx.conf"
    [[ -f "$conf" ]] || die "$conf is missing"
    # Names in the config (resolver, upstream) need not answer for `nginx -t`:
    # variables are resolved per request, and the resolver is an IP.
    if ! out=$(docker run --rm --network none \
        -v "$conf:/etc/nginx/nginx.conf:ro" "$tag" nginx -t 2>&1); then
        printf '%s\n' "$out" >&2
        die "nginx -t failed in $tag with deploy/nginx.conf"
    fi
    say "nginx -t in $tag with deploy/nginx.conf: ok"
}

have_all=1
for tag in "${TAGS[@]}"; do
    is_ours "$tag" || have_all=0
done
if ((have_all)) && ((!force)); then
    say "${TAGS[*]} exist (local build); not rebuilt"
    check_image "${TAGS[0]}"
    exit 0
fi
for tag in "${TAGS[@]}"; do
    if docker image inspect "$tag" >/dev/null 2>&1 && ! is_ours "$tag"; then
        # A real nginx image (pulled elsewhere): keep it.
        die "$tag exists and is not this script's build: remove it or keep using it"
    fi
done

# 1. nginx on the host.
if ! command -v nginx >/dev/null 2>&1; then
    say "apt-get install nginx-light"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Do not start the host's nginx service while installing.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q nginx-light; then
        apt-get update -q
        apt-get install -y -q nginx-light
    fi
fi
NGINX=$(command -v nginx) || die "nginx is still missing after apt-get install nginx-light"
NGINX=$(readlink -f "$NGINX")
version=$("$NGINX" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
say "host nginx: $NGINX ($version)"

# 2. The root file system.
work=$(mktemp -d "${TMPDIR:-/tmp}/skydns-nginx-image.XXXXXX")
root="$work/rootfs"
mkdir -p "$root"/{usr/sbin,etc,run,var/log/nginx,var/lib/nginx,var/cache/nginx,var/lock,usr/share/nginx/html,proc,sys,dev}
mkdir "$root/tmp"
chmod 1777 "$root/tmp"
install -m 0755 "$NGINX" "$root/usr/sbin/nginx"

# Debian's merged /usr: /lib and /lib64 are links into /usr; the same in the image.
for d in lib lib64; do
    if [[ -L "/$d" ]]; then
        mkdir -p "$root/usr/$d"
        ln -s "usr/$d" "$root/$d"
    fi
done
copy_lib() {
    # Copies the file $1 resolves to, at its own path, and links the name it
    # was asked for (the soname) to it when that differs.
    local src=$1 real
    [[ -e "$src" ]] || return 0
    real=$(readlink -f "$src")
    mkdir -p "$root$(dirname "$real")" "$root$(dirname "$src")"
    [[ -e "$root$real" ]] || cp -p "$real" "$root$real"
    [[ -e "$root$src" ]] || ln -s "$real" "$root$src"
}
# Shared libraries ("libx.so => /path (addr)") and the loader ("/lib64/ld-... (addr)").
while read -r lib; do
    copy_lib "$lib"
done < <(ldd "$NGINX" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
# glibc dlopen()s the NSS modules (getpwnam for `user`, getaddrinfo for names
# in the config); ldd does not list them. glibc 2.34+ has files/dns in libc;
# the stubs are harmless where present.
for lib in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2 \
    /lib/x86_64-linux-gnu/libresolv.so.2; do
    copy_lib "$lib"
done
[[ -n "$(find "$root" -name 'ld-linux*')" ]] || die "the dynamic loader was not copied"

# /etc/nginx without the host's sites and modules (the image's config loads none).
cp -a /etc/nginx "$root/etc/nginx"
rm -rf "$root/etc/nginx/sites-enabled" "$root/etc/nginx/sites-available" \
    "$root/etc/nginx/modules-enabled" "$root/etc/nginx/modules-available"
mkdir -p "$root/etc/nginx/conf.d"
cat >"$root/etc/nginx/nginx.conf" <<'EOF'
# Default configuration of the local nginx image (scripts/nginx-image.sh),
# shaped like the public image's: mount your own over /etc/nginx/nginx.conf
# or add servers in /etc/nginx/conf.d/*.conf.
user www-data;
worker_processes auto;
error_log /dev/stderr notice;
pid /run/nginx.pid;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;

    server {
        listen 80 default_server;
        root /usr/share/nginx/html;
        index index.html;
    }

    include /etc/nginx/conf.d/*.conf;
}
EOF
cat >"$root/usr/share/nginx/html/index.html" <<EOF
<!DOCTYPE html>
<html><head><title>nginx</title></head>
<body><p>nginx $version (Debian package, local image built by scripts/nginx-image.sh)</p></body></html>
EOF

# Logs to the container's output, as in the public image.
ln -s /dev/stdout "$root/var/log/nginx/access.log"
ln -s /dev/stderr "$root/var/log/nginx/error.log"

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
www-data:x:33:
nogroup:x:65534:
nobody:x:65534:
EOF
cat >"$root/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
EOF
# Docker bind-mounts /etc/hosts, /etc/hostname and /etc/resolv.conf over these.
: >"$root/etc/hosts"
: >"$root/etc/hostname"
: >"$root/etc/resolv.conf"
chown -R 33:33 "$root/var/lib/nginx" "$root/var/cache/nginx"

tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .

# 3. Import.
say "docker import ${TAGS[0]}"
docker import \
    --change 'ENTRYPOINT []' \
    --change 'CMD ["nginx","-g","daemon off;"]' \
    --change 'EXPOSE 80' \
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL $LABEL=1" \
    --change "LABEL org.skydns.nginx-version=$version" \
    --message "nginx $version from Debian's nginx-light (scripts/nginx-image.sh)" \
    "$work/rootfs.tar" "${TAGS[0]}" >/dev/null
for tag in "${TAGS[@]:1}"; do
    docker tag "${TAGS[0]}" "$tag"
done
# Earlier builds, now without a name.
docker image prune -f --filter "label=$LABEL=1" >/dev/null
say "built ${TAGS[*]}: $(docker image inspect -f '{{.Size}}' "${TAGS[0]}") bytes"

# 4. Check.
check_image "${TAGS[0]}"
