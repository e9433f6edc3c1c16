//! `skydnsctl` as a process against a real skydns: output, `--json`, Go-style
//! flags, `SKYDNS_URL`/`SKYDNS_SECRET`, one-line errors and exit codes.

use std::{process::Stdio, time::Duration};

use skydns_tests::{SkyDns, binary};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    process::Command,
};

/// What one `skydnsctl` run produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts a failure with `code`, one `skydnsctl: ` line on stderr and
    /// nothing on stdout; that line.
    fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "{self:?}");
        assert!(self.stdout.is_empty(), "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:?}");
        assert!(self.stderr.starts_with("skydnsctl: "), "{self:?}");
        self.stderr.trim_end()
    }
}

/// Runs `skydnsctl <args>` with `env` set and `SKYDNS_URL`/`SKYDNS_SECRET`
/// otherwise removed.
async fn ctl_env(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(binary("skydnsctl"));
    cmd.args(args)
        .env_remove("SKYDNS_URL")
        .env_remove("SKYDNS_SECRET")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("skydnsctl finishes")
        .expect("skydnsctl runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `skydnsctl --url <sky> <args>`.
async fn ctl(sky: &SkyDns, args: &[&str]) -> Run {
    let url = sky.url();
    let mut v = vec!["--url", url.as_str()];
    v.extend_from_slice(args);
    ctl_env(&[], &v).await
}

const WEB_EAST: &[&str] = &[
    "--name",
    "web",
    "--version",
    "1.0.0",
    "--environment",
    "production",
    "--region",
    "east",
    "--host",
    "127.0.0.10",
    "--port",
    "80",
    "--ttl",
    "60",
];

async fn add_web_east(sky: &SkyDns, uuid: &str) -> Run {
    let mut args = vec!["add", uuid];
    args.extend_from_slice(WEB_EAST);
    ctl(sky, &args).await
}

#[tokio::test]
async fn add_get_list_heartbeat_delete() {
    let sky = SkyDns::start(&[]).await;

    let r = add_web_east(&sky, "1001").await;
    r.ok();
    assert_eq!(r.stdout, "added service \"1001\"\n");
    // A JSON body (SkyDNS v1 spelling), machine output, Go-style flags and SKYDNS_URL.
    let r = ctl_env(
        &[("SKYDNS_URL", &sky.url())],
        &[
            "add",
            "1002",
            "-json",
            r#"{"Name":"web","Version":"1.0.0","Environment":"production","Region":"west","Host":"127.0.0.11","Port":8080,"TTL":60,"Owner":"ops@host1"}"#,
            "-json",
        ],
    )
    .await;
    assert_eq!(r.ok().json(), serde_json::json!({"ok": true}));
    assert_eq!(
        sky.client.get_service("1002").await.expect("added").port,
        8080
    );

    let r = ctl(&sky, &["get", "1001"]).await;
    r.ok();
    assert!(r.stdout.contains("Name:         web\n"), "{r:?}");
    assert!(r.stdout.contains("Host:         127.0.0.10\n"), "{r:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l == "TTL left:     1m"
                || (l.starts_with("TTL left:     5") && l.ends_with('s'))),
        "about a minute left: {r:?}"
    );
    let v = ctl(&sky, &["get", "1001", "--json"]).await.ok().json();
    assert_eq!(v["UUID"], "1001");
    assert_eq!(v["Host"], "127.0.0.10");
    assert_eq!(v["Port"], 80);
    assert!(v["Expires"].is_string(), "{v}");

    // Table: everything, then filtered by a DNS-style query.
    let r = ctl(&sky, &["list"]).await;
    let lines: Vec<&str> = r.ok().stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(
        lines[0].starts_with("UUID  NAME  VERSION  ENVIRONMENT  REGION  HOST:PORT"),
        "{r:?}"
    );
    assert!(
        lines[0].contains("TTL") && lines[0].ends_with("OWNER"),
        "{r:?}"
    );
    assert!(lines[2].ends_with("ops@host1"), "{r:?}");
    let r = ctl(&sky, &["list", "east.*.web.production"]).await;
    let lines: Vec<&str> = r.ok().stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cells[..6],
        [
            "1001",
            "web",
            "1.0.0",
            "production",
            "east",
            "127.0.0.10:80"
        ],
        "{r:?}"
    );
    assert_eq!(cells[7], "-", "no owner: {r:?}");
    let v = ctl(&sky, &["-json", "list", "east.*.web.production"])
        .await
        .ok()
        .json();
    let arr = v.as_array().expect("a JSON array");
    assert_eq!(arr.len(), 1, "{v}");
    assert_eq!(arr[0]["UUID"], "1001");
    let v = ctl(&sky, &["list", "nowhere.web.production", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(v, serde_json::json!([]));
    let r = ctl(&sky, &["list", "nowhere.web.production"]).await;
    assert_eq!(
        r.ok().stdout,
        "no services match \"nowhere.web.production\"\n"
    );

    // Counts.
    let v = ctl(&sky, &["regions", "--json"]).await.ok().json();
    assert_eq!(v, serde_json::json!({"east": 1, "west": 1}));
    let r = ctl(&sky, &["environments"]).await;
    assert_eq!(r.ok().stdout, "ENVIRONMENT  SERVICES\nproduction   2\n");

    // Heartbeat: the service lives longer than its original 60 s.
    let r = ctl(&sky, &["heartbeat", "1001", "-ttl", "600"]).await;
    assert_eq!(r.ok().stdout, "service \"1001\" lives 10m more\n");
    let ttl = sky.client.get_service("1001").await.expect("alive").ttl;
    assert!(ttl > 60, "heartbeat extended the TTL: {ttl}");
    let r = ctl(&sky, &["heartbeat", "1001", "--json"]).await;
    assert_eq!(r.ok().stdout, "{\"ok\":true}\n");

    // Delete, then it is gone: exit 3 with one line.
    let r = ctl(&sky, &["delete", "1001"]).await;
    assert_eq!(r.ok().stdout, "deleted service \"1001\"\n");
    let line = ctl(&sky, &["get", "1001"]).await.failed(3).to_string();
    assert!(
        line.starts_with("skydnsctl: not found: service \"1001\""),
        "{line}"
    );
    ctl(&sky, &["delete", "1001"]).await.failed(3);
    ctl(&sky, &["heartbeat", "1001"]).await.failed(3);
}

#[tokio::test]
async fn adding_twice_is_a_conflict() {
    let sky = SkyDns::start(&[]).await;
    add_web_east(&sky, "dup").await.ok();
    let r = add_web_east(&sky, "dup").await;
    let line = r.failed(4);
    assert!(
        line.contains("conflict") && line.contains("\"dup\""),
        "{line}"
    );
}

#[tokio::test]
async fn invalid_fields_are_rejected_with_the_servers_message() {
    let sky = SkyDns::start(&[]).await;
    let r = ctl(
        &sky,
        &[
            "add",
            "bad",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ttl",
            "60",
        ],
    )
    .await;
    let line = r.failed(5);
    assert!(
        line.contains("rejected (400)") && line.contains("Port"),
        "{line}"
    );

    let r = ctl(
        &sky,
        &[
            "add",
            "bad",
            "--name",
            "a.b",
            "--host",
            "127.0.0.1",
            "--port",
            "80",
            "--ttl",
            "60",
        ],
    )
    .await;
    assert!(r.failed(5).contains("Name"), "{r:?}");

    let r = ctl(&sky, &["add", "bad", "--host", "127.0.0.1", "--port", "80"]).await;
    assert!(r.failed(5).contains("TTL"), "{r:?}");
    assert!(matches!(
        sky.client.get_service("bad").await,
        Err(skydns_tests::ClientError::NotFound(_))
    ));

    // A port clap cannot even parse is a usage error (2), from clap.
    let r = ctl(&sky, &["add", "bad", "--port", "70000"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--port"), "{r:?}");
    // So is a body that is not JSON.
    let r = ctl(&sky, &["add", "bad", "--json", "{nope"]).await;
    assert!(r.failed(2).contains("--json body"), "{r:?}");
}

#[tokio::test]
async fn secret_is_sent_and_a_wrong_one_is_unauthorized() {
    let sky = SkyDns::start(&["-secret", "s3cret"]).await;
    let url = sky.url();

    let mut args = vec!["--secret", "s3cret", "add", "1"];
    args.extend_from_slice(WEB_EAST);
    ctl(&sky, &args).await.ok();
    // Go-style spelling, and the environment variable.
    let v = ctl(&sky, &["-secret=s3cret", "-json", "get", "1"])
        .await
        .ok()
        .json();
    assert_eq!(v["UUID"], "1");
    let v = ctl_env(
        &[("SKYDNS_URL", &url), ("SKYDNS_SECRET", "s3cret")],
        &["list", "--json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");

    for args in [
        vec!["--secret", "wrong", "get", "1"],
        vec!["get", "1"],
        vec!["--secret", "wrong", "delete", "1"],
    ] {
        let r = ctl(&sky, &args).await;
        let line = r.failed(5);
        assert!(line.contains("unauthorized"), "{args:?}: {line}");
    }
    assert!(
        sky.client
            .clone()
            .with_secret("s3cret")
            .get_service("1")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn unreachable_server_is_exit_1_with_one_line() {
    // A port nothing listens on: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let r = ctl_env(&[], &["--url", &url, "--timeout", "2", "list"]).await;
    let line = r.failed(1);
    assert!(line.contains(&url), "{line}");
    assert!(line.to_lowercase().contains("connect"), "{line}");

    // Something that accepts connections but never answers: --timeout applies.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let r = ctl_env(&[], &["-url", &url, "-timeout", "0.5", "get", "x"]).await;
    let line = r.failed(1);
    assert!(
        line.contains("no answer") && line.contains("0.5s"),
        "{line}"
    );
    drop(silent);

    let r = ctl_env(&[("SKYDNS_URL", "localhost:8080")], &["regions"]).await;
    assert!(r.failed(2).contains("--url"), "{r:?}");
}

#[tokio::test]
async fn callback_add_is_delivered_when_the_service_goes() {
    let sky = SkyDns::start(&[]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();

    // No service matches yet: not found.
    let cb = [
        "callback",
        "add",
        "cb1",
        "--name",
        "web",
        "--environment",
        "production",
        "--reply",
        "127.0.0.1",
        "--port",
        &port,
    ];
    let r = ctl(&sky, &cb).await;
    assert!(r.failed(3).contains("not found"), "{r:?}");

    add_web_east(&sky, "1").await.ok();
    let r = ctl(&sky, &cb).await;
    assert!(r.ok().stdout.starts_with("added callback \"cb1\""), "{r:?}");

    let accept = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("callback connection");
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).await.expect("read");
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned()
    });
    ctl(&sky, &["delete", "1"]).await.ok();
    let head = tokio::time::timeout(Duration::from_secs(10), accept)
        .await
        .expect("callback delivered in time")
        .expect("listener task");
    assert!(head.starts_with("DELETE /skydns/callbacks/cb1 "), "{head}");
}

#[tokio::test]
async fn help_lists_the_exit_codes() {
    let r = ctl_env(&[], &["--help"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    for needle in [
        "Exit codes:",
        "3  not found",
        "4  conflict",
        "5  rejected",
        "SKYDNS_URL",
    ] {
        assert!(r.stdout.contains(needle), "{needle}: {r:?}");
    }
    let r = ctl_env(&[], &["frobnicate"]).await;
    assert_eq!(r.code, 2, "{r:?}");
}
