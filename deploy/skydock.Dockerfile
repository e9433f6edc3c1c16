# skydock: registers Docker containers in skydns.
# FROM scratch plus one static binary and the JavaScript plugins; nothing is
# pulled. Built by scripts/build-images.sh from a context holding only those.
#
#   docker run -d -v /var/run/docker.sock:/docker.sock --name skydock skydns/skydock \
#       -ttl 30 -environment dev -s /docker.sock -domain skydns.local -name skydns
#
# Plugins: -plugins /plugins/default.js (the built-in mapping, as a file to
# copy and edit) or -plugins /plugins/containerEnv.js (DNS_* env overrides).
FROM scratch
COPY skydock /skydock
COPY plugins/ /plugins/
ENTRYPOINT ["/skydock"]
