# etcd for deploy/docker-compose.etcd.yml: Debian's etcd-server binary (and
# etcdctl) with the two libraries they link, FROM scratch; nothing is pulled.
# Built by scripts/etcd-image.sh from a context holding only those files.
FROM scratch
COPY rootfs/ /
EXPOSE 2379/tcp 2380/tcp
ENTRYPOINT ["/usr/bin/etcd"]
