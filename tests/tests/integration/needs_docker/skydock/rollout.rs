//! `skydock rollout` starts the new replicas like the old ones: what was
//! given at `docker run` (entrypoint and command, volumes, published ports,
//! the health check, resource limits) is on the new containers too.

use super::*;

/// `docker inspect` of the fields a replica must share.
const SHARED: &[(&str, &str)] = &[
    ("entrypoint", "{{json .Config.Entrypoint}}"),
    ("cmd", "{{json .Config.Cmd}}"),
    ("healthcheck", "{{json .Config.Healthcheck}}"),
    ("binds", "{{json .HostConfig.Binds}}"),
    (
        "mounts",
        "{{range .Mounts}}{{.Type}} {{.Source}} {{.Destination}} {{.RW}};{{end}}",
    ),
    ("ports", "{{json .HostConfig.PortBindings}}"),
    ("memory", "{{.HostConfig.Memory}}"),
    ("cpu shares", "{{.HostConfig.CpuShares}}"),
    ("pids limit", "{{json .HostConfig.PidsLimit}}"),
    // One a line, compared sorted (Docker merges the image's in).
    ("env", "{{range .Config.Env}}{{.}}\n{{end}}"),
];

async fn shared(c: &Container) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (what, format) in SHARED {
        let mut value = c.inspect(format).await;
        if *what == "env" {
            let mut lines: Vec<&str> = value.lines().collect();
            lines.sort_unstable();
            value = lines.join(" ");
        }
        out.push((*what, value));
    }
    out
}

#[tokio::test]
async fn rollout_starts_the_new_replica_with_the_old_ones_command_volume_ports_and_limits() {
    let rig = Rig::start(&[]).await;
    let control = rig
        .dock
        .control_addr()
        .expect("the agent's control endpoint");
    let tag = format!("{:08x}", rand::random::<u32>());
    // The service's name is the new containers' name prefix: this module's.
    let svc = format!("{PREFIX}-roll{tag}");
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        data.path().join("index.html"),
        format!("served from the volume {tag}\n"),
    )
    .expect("write index.html");
    let bind = format!("{}:/data:ro", data.path().display());
    let dns_service = format!("DNS_SERVICE={svc}");
    let old = Container::run(
        PREFIX,
        BUSYBOX,
        &[
            "-e",
            &dns_service,
            "-v",
            &bind,
            "-p",
            "127.0.0.1::9000",
            "--memory",
            "64m",
            "--cpu-shares",
            "512",
            "--pids-limit",
            "64",
            "--health-cmd",
            "wget -q -O /dev/null http://127.0.0.1:9000/index.html",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            "--entrypoint",
            "/bin/httpd",
        ],
        &["-f", "-p", "9000", "-h", "/data"],
    )
    .await;
    let old_name = fqdn(&old.name, &svc, &rig.env);
    rig.resolves(&old_name, &old.ip().await, Duration::from_secs(10))
        .await;
    let before = shared(&old).await;

    // To the test image under its other name: an image without a
    // HEALTHCHECK of its own (Docker fills a run-time health check's unset
    // fields from the image's, which would make them differ for a reason
    // that is not the rollout's).
    let out = Command::new(binary("skydock"))
        .args([
            "rollout",
            "--service",
            &svc,
            "--image",
            COOL_API_V2,
            "--skydns",
            &rig.sky.url(),
            "--agent",
            &format!("http://{control}"),
            "--drain",
            "0",
            "--stop-grace",
            "1",
            "--timeout",
            "30",
        ])
        .env("SKYDOCK_SOCKET", DOCKER_SOCKET)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run skydock rollout");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The new container, whatever happened, is removed with its handle.
    let found = docker::docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("name={svc}-"),
        "--format",
        "{{.ID}} {{.Names}}",
    ])
    .await
    .expect("docker ps");
    let new: Vec<Container> = found
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, name)| Container::adopt(id, name))
        .collect();
    assert!(out.status.success(), "rollout failed:\n{text}");
    assert!(text.contains("[5/5]"), "{text}");
    assert_eq!(new.len(), 1, "one new replica: {found}\n{text}");
    let new = &new[0];
    assert_eq!(new.inspect("{{.Config.Image}}").await, COOL_API_V2);
    let after = shared(new).await;
    for ((what, old_value), (_, new_value)) in before.iter().zip(&after) {
        assert_eq!(old_value, new_value, "{what} differs on the new replica");
    }
    assert!(
        before
            .iter()
            .any(|(w, v)| *w == "mounts" && v.contains("/data")),
        "{before:?}"
    );
    // It serves from the volume, on the command's port, and is in DNS.
    assert_eq!(new.health().await, "healthy");
    rig.resolves(&fqdn(&new.name, &svc, &rig.env), &new.ip().await, APPEAR)
        .await;
    assert_eq!(
        docker::docker(&["inspect", &old.id]).await.ok(),
        None,
        "the old replica is removed"
    );
}
