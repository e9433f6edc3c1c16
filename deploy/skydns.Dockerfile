# skydns: DNS service discovery with the SkyDNS v1 REST API.
# FROM scratch plus one static binary; nothing is pulled. Built by
# scripts/build-images.sh from a context holding only the binary.
#
#   docker run -d --name skydns skydns/skydns -nameserver 8.8.8.8:53 -domain skydns.local
#
# Arguments given to `docker run` replace CMD entirely, so the listen
# addresses are also set through skydns' environment variables (SKYDNS_DNS,
# SKYDNS): the article's command line above, which names neither -dns nor
# -http, still listens on every interface of the container. An explicit
# -dns/-http flag wins over the variables.
FROM scratch
COPY skydns /skydns
ENV SKYDNS_DNS=0.0.0.0:53 SKYDNS=0.0.0.0:8080
EXPOSE 53/udp 53/tcp 8080/tcp
ENTRYPOINT ["/skydns"]
CMD ["-dns", "0.0.0.0:53", "-http", "0.0.0.0:8080"]
