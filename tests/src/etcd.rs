//! A real etcd cluster (Debian's `etcd-server`) on free loopback ports, for
//! skydns's shared registry (`-etcd`): members can be killed, stopped and
//! restarted; `etcdctl` talks to it as an operator would. Everything stops
//! when the handle drops.

use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::process::{Child, Command};

use crate::validator::tool;

/// How long a cluster may take to elect a leader and answer.
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

/// One member: its ports, data directory and process (if running).
struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of a few members on loopback.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    _dir: tempfile::TempDir,
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one answers.
    pub async fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_tcp_port(),
                peer: free_tcp_port(),
                dir: dir.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            members,
            initial_cluster,
            _dir: dir,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_healthy().await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster.clone();
        let Some(m) = self.members.get_mut(i) else {
            panic!("no etcd member {i}");
        };
        std::fs::create_dir_all(&m.dir).expect("member dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("etcd.log"))
            .expect("member log");
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new(tool("etcd"))
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(m.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", "skydns-test"])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        m.child = Some(child);
    }

    /// Every member's client URL, comma-separated (what `-etcd` takes).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URLs of the members running now.
    fn running_endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `etcdctl <args>` against the running members; its stdout, or
    /// the error it printed.
    pub async fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(tool("etcdctl"))
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.running_endpoints()])
            .args(["--dial-timeout", "2s", "--command-timeout", "5s"])
            .args(args)
            .output()
            .await
            .map_err(|e| format!("cannot run etcdctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Waits until every running member answers and one leads.
    pub async fn wait_healthy(&self) {
        let deadline = tokio::time::Instant::now() + HEALTHY_WITHIN;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            match self.etcdctl(&["endpoint", "health"]).await {
                Ok(_) => return,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("etcd did not become healthy within {HEALTHY_WITHIN:?}: {last}");
    }

    /// The index of the member that leads now.
    pub async fn leader(&self) -> usize {
        let out = self
            .etcdctl(&["endpoint", "status", "-w", "json"])
            .await
            .expect("endpoint status");
        let status: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
        let leader = status
            .as_array()
            .and_then(|all| all.first())
            .and_then(|s| s["Status"]["leader"].as_u64())
            .expect("a leader");
        status
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leader))
            })
            .and_then(|s| s["Endpoint"].as_str())
            .and_then(|url| {
                self.members
                    .iter()
                    .position(|m| url.ends_with(&format!(":{}", m.client)))
            })
            .expect("the leader is one of ours")
    }

    /// `kill -9` member `i`.
    pub async fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members.get_mut(i).and_then(|m| m.child.take()) {
            let _ = child.kill().await;
        }
    }

    /// Kills every member.
    pub async fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i).await;
        }
    }

    /// Starts member `i` again on its data (after [`EtcdCluster::kill9`]).
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Starts every stopped member again and waits until they answer.
    pub async fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members.get(i).is_some_and(|m| m.child.is_none()) {
                self.spawn(i);
            }
        }
        self.wait_healthy().await;
    }

    /// The current revision (from `etcdctl get`'s header).
    pub async fn revision(&self) -> i64 {
        let out = self
            .etcdctl(&[
                "get",
                "/",
                "--prefix",
                "--keys-only",
                "--limit",
                "1",
                "-w",
                "json",
            ])
            .await
            .expect("get");
        let v: serde_json::Value = serde_json::from_str(&out).expect("get JSON");
        v["header"]["revision"].as_i64().expect("a revision")
    }
}
