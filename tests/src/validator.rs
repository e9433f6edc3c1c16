//! A real validating resolver in front of skydns: unbound (Debian's), on a
//! free loopback port, with skydns's zone as a stub zone and its key as the
//! trust anchor; a [`Tamper`] relay that alters answers on the way, to
//! show the validator notices; and zone keys from `dnssec-keygen`.

use std::{net::SocketAddr, path::Path, process::Stdio, sync::Arc, time::Duration};

use hickory_proto::{op::Message, rr::RecordType};
use tokio::{
    net::UdpSocket,
    process::{Child, Command},
};

use crate::dns::{dnssec_query, query_message, udp_exchange};

/// unbound validating `zone` against `trust_anchor` (a DNSKEY record's
/// text), asking `upstream` for it; stops when dropped.
pub struct Unbound {
    /// Where it answers (UDP).
    pub addr: SocketAddr,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Unbound {
    /// Starts unbound and waits until it answers. Every other name goes to
    /// a dead loopback port: nothing leaves the machine.
    pub async fn start(zone: &str, trust_anchor: &str, upstream: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_udp_port().await;
        let d = dir.path().display();
        let conf = format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  num-threads: 1\n\
  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n\
  module-config: \"validator iterator\"\n  qname-minimisation: no\n  chroot: \"\"\n  username: \"\"\n\
  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  logfile: \"\"\n  use-syslog: no\n\
  verbosity: 0\n  val-log-level: 2\n  trust-anchor: \"{trust_anchor}\"\n  local-zone: \"{zone}\" nodefault\n\
remote-control:\n  control-enable: no\n\
stub-zone:\n  name: \"{zone}\"\n  stub-addr: {}@{}\n\
forward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@9\n",
            upstream.ip(),
            upstream.port()
        );
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf).expect("write unbound.conf");
        let child = Command::new(tool("unbound"))
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start unbound: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let probe = query_message("localhost.", RecordType::A, None);
        for _ in 0..100 {
            if udp_exchange(addr, &probe).await.is_ok() {
                return Self {
                    addr,
                    _child: child,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("unbound did not answer on {addr} within 10 s");
    }

    /// A query with DO set, as a validating stub sends it.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Message {
        udp_exchange(self.addr, &dnssec_query(name, rtype))
            .await
            .unwrap_or_else(|e| panic!("unbound: {name} {rtype}: {e}"))
    }
}

/// A UDP relay to `target` that replaces the first `from` bytes in every
/// reply with `to` (same length); stops when dropped.
pub struct Tamper {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Tamper {
    /// Starts the relay.
    pub async fn start(target: SocketAddr, from: Vec<u8>, to: Vec<u8>) -> Self {
        assert_eq!(from.len(), to.len(), "a tamper keeps the length");
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let addr = socket.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, client)) = socket.recv_from(&mut buf).await {
                let Some(request) = buf.get(..n).map(<[u8]>::to_vec) else {
                    continue;
                };
                let (socket, from, to) = (Arc::clone(&socket), from.clone(), to.clone());
                tokio::spawn(async move {
                    let Ok(upstream) = UdpSocket::bind("127.0.0.1:0").await else {
                        return;
                    };
                    let mut reply = vec![0u8; 65535];
                    let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), async {
                        upstream.send_to(&request, target).await?;
                        let n = upstream.recv(&mut reply).await?;
                        reply.truncate(n);
                        std::io::Result::Ok(())
                    })
                    .await
                    else {
                        return;
                    };
                    if let Some(at) = reply.windows(from.len()).position(|w| w == from) {
                        reply.splice(at..at + from.len(), to);
                    }
                    let _ = socket.send_to(&reply, client).await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Tamper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A key made by `dnssec-keygen -a <algorithm> -f KSK <zone>` in `dir`: its
/// basename (what `-dnssec` takes).
pub fn dnssec_keygen(dir: &Path, algorithm: &str, zone: &str) -> std::path::PathBuf {
    let out = std::process::Command::new(tool("dnssec-keygen"))
        .args(["-q", "-K"])
        .arg(dir)
        .args(["-a", algorithm, "-f", "KSK", zone])
        .output()
        .expect("run dnssec-keygen");
    assert!(out.status.success(), "dnssec-keygen: {out:?}");
    dir.join(String::from_utf8_lossy(&out.stdout).trim())
}

/// The path of an installed tool, or a one-line failure naming its package.
pub fn tool(name: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path.display().to_string();
        }
    }
    panic!(
        "{name} is not installed: scripts/test-all.sh installs it (apt-get install unbound bind9-dnsutils bind9-utils knot knot-dnsutils)"
    );
}

async fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.local_addr().expect("addr").port()
}
