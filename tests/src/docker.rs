//! The Docker side of the skydock tests: the real engine on this machine,
//! driven through the `docker` CLI.
//!
//! Images are never pulled: [`ensure_test_images`] builds them locally with
//! `scripts/docker-test-image.sh` (once per test process). Every container a
//! test starts is a [`Container`]: it carries the label `skydns-test=1`, gets a
//! unique name (`<prefix>-<8 hex digits>`) and is force-removed when the
//! handle is dropped, so a failing test leaves nothing behind. Containers of a
//! killed test run are removed by [`cleanup_prefix`].
//!
//! No Docker engine is a failure, never a skip: the helpers panic with
//! [`ENGINE_UNREACHABLE`].

use std::{
    path::PathBuf,
    process::{Output, Stdio},
    sync::OnceLock,
};

/// The one line every Docker test fails with when no engine answers.
pub const ENGINE_UNREACHABLE: &str =
    "docker engine not reachable at /var/run/docker.sock: Docker tests cannot run";

/// The Docker socket skydock is pointed at.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Debian's busybox-static: `CMD httpd -f -p 8080 -h /`, `EXPOSE 8080/tcp`,
/// `PATH=/bin`. Applets: sh httpd sleep echo cat true false wget nc env test
/// touch rm ls mkdir ps kill hostname.
pub const BUSYBOX: &str = "skydns-test/busybox:latest";
/// The busybox image with registry, repository and tag (service `cool-api`).
pub const COOL_API_V2: &str = "localhost:5000/team/cool-api:v2";
/// The busybox image with `HEALTHCHECK --interval=1s --timeout=1s --retries=1
/// CMD test -f /tmp/healthy`: unhealthy until [`Container::set_healthy`].
pub const HEALTHY: &str = "skydns-test/healthy:latest";

/// The label every test container (and test image) carries.
pub const TEST_LABEL: &str = "skydns-test=1";

/// The image script: `<workspace>/scripts/docker-test-image.sh`.
pub fn image_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("docker-test-image.sh")
}

/// Builds the test images if they are missing (once per process; later calls
/// return at once). Panics with [`ENGINE_UNREACHABLE`] when no engine
/// answers, and with the script's output when the build fails.
pub fn ensure_test_images() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let script = image_script();
        let out = std::process::Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let text = combined(&out);
        if text.contains(ENGINE_UNREACHABLE) {
            return Err(ENGINE_UNREACHABLE.to_string());
        }
        Err(format!(
            "{} failed ({}):\n{text}",
            script.display(),
            out.status
        ))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Panics with [`ENGINE_UNREACHABLE`] unless `docker info` succeeds.
pub fn require_engine() {
    let ok = std::process::Command::new("docker")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{ENGINE_UNREACHABLE}");
}

fn combined(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s.trim_end().to_string()
}

fn result_of(args: &[&str], out: std::io::Result<Output>) -> Result<String, String> {
    let out = out.map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `docker <args>`; its trimmed stdout, or an error with its stderr.
pub async fn docker(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await;
    result_of(args, out)
}

/// [`docker`] without a runtime (for `Drop` and set-up code).
pub fn docker_blocking(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output();
    result_of(args, out)
}

/// `<prefix>-<8 random hex digits>`: a container name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// The IDs of the `docker ps --format '{{.ID}} {{.Names}}'` lines whose name
/// starts with `prefix`.
fn ids_with_prefix(ps: &str, prefix: &str) -> Vec<String> {
    ps.lines()
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(_, name)| name.trim().trim_start_matches('/').starts_with(prefix))
        .map(|(id, _)| id.to_string())
        .collect()
}

/// Force-removes every test container (label `skydns-test=1`) whose name
/// starts with `prefix`, and every test network named so; returns how many
/// containers went. For the leftovers of a killed test run.
pub fn cleanup_prefix(prefix: &str) -> usize {
    require_engine();
    let label = format!("label={TEST_LABEL}");
    let ps = docker_blocking(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &label,
        "--format",
        "{{.ID}} {{.Names}}",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let ids = ids_with_prefix(&ps, prefix);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.iter().map(String::as_str));
        docker_blocking(&args).unwrap_or_else(|e| panic!("{e}"));
    }
    let nets = docker_blocking(&[
        "network",
        "ls",
        "--no-trunc",
        "--filter",
        &label,
        "--format",
        "{{.ID}} {{.Name}}",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    for id in ids_with_prefix(&nets, prefix) {
        let _ = docker_blocking(&["network", "rm", &id]);
    }
    ids.len()
}

/// The first host port of `docker port` output (`0.0.0.0:49153`, `[::]:49153`).
fn parse_host_port(out: &str) -> Option<u16> {
    out.lines()
        .filter_map(|l| l.trim().rsplit_once(':'))
        .find_map(|(_, port)| port.parse().ok())
}

/// A container started by a test; force-removed (`docker rm -f -v`) on drop.
#[derive(Debug)]
pub struct Container {
    /// The full container ID (64 hex digits).
    pub id: String,
    /// The container name, without the leading slash.
    pub name: String,
    removed: bool,
}

impl Container {
    /// `docker run -d --name <prefix>-<random> --label skydns-test=1 <args>
    /// <image> <cmd>` (an empty `cmd` keeps the image's: the httpd on 8080).
    /// Builds the test images first if needed. Panics when docker fails.
    ///
    /// ```no_run
    /// # async fn demo() {
    /// use skydns_tests::docker::{BUSYBOX, Container};
    /// let c = Container::run("skt-env", BUSYBOX, &["-e", "DNS_SERVICE=db", "-p", "8080"], &[]).await;
    /// # drop(c);
    /// # }
    /// ```
    pub async fn run(name_prefix: &str, image: &str, args: &[&str], cmd: &[&str]) -> Self {
        Self::try_run(name_prefix, image, args, cmd)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Container::run`], returning docker's error.
    pub async fn try_run(
        name_prefix: &str,
        image: &str,
        args: &[&str],
        cmd: &[&str],
    ) -> Result<Self, String> {
        Self::launch("run", name_prefix, image, args, cmd).await
    }

    /// `docker create` with the same arguments as [`Container::run`]: the
    /// container exists but does not run until [`Container::start`].
    pub async fn create(name_prefix: &str, image: &str, args: &[&str], cmd: &[&str]) -> Self {
        Self::launch("create", name_prefix, image, args, cmd)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn launch(
        verb: &str,
        name_prefix: &str,
        image: &str,
        args: &[&str],
        cmd: &[&str],
    ) -> Result<Self, String> {
        ensure_test_images();
        let name = unique_name(name_prefix);
        let mut all = vec![verb];
        if verb == "run" {
            all.push("-d");
        }
        all.extend(["--name", &name, "--label", TEST_LABEL]);
        all.extend_from_slice(args);
        all.push(image);
        all.extend_from_slice(cmd);
        match docker(&all).await {
            Ok(out) => {
                // `docker run` may print pull notices first; the ID is last.
                let id = out.lines().last().unwrap_or_default().trim().to_string();
                Ok(Self {
                    id,
                    name,
                    removed: false,
                })
            }
            Err(e) => {
                // A failed `run` may leave a created container behind.
                let _ = docker(&["rm", "-f", "-v", &name]).await;
                Err(e)
            }
        }
    }

    /// A handle on a container the test did not start itself (one that
    /// `skydock rollout` started, say), so that it is removed on drop too.
    pub fn adopt(id: &str, name: &str) -> Self {
        Self {
            id: id.to_string(),
            name: name.trim_start_matches('/').to_string(),
            removed: false,
        }
    }

    /// The first 10 characters of the ID (skydock's default UUID).
    pub fn short_id(&self) -> &str {
        self.id.get(..10).unwrap_or(&self.id)
    }

    /// `docker inspect -f <format>`; panics when docker fails.
    pub async fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "-f", format, &self.id])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The container's IP address on its networks (the first one's when
    /// several; empty when it has none, e.g. stopped or `--net=host`).
    pub async fn ip(&self) -> String {
        let ips = self
            .inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}")
            .await;
        ips.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// The container's IP address on network `network`.
    pub async fn ip_on(&self, network: &str) -> String {
        self.inspect(&format!(
            "{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}"
        ))
        .await
    }

    /// `.State.Status`: created, running, paused, restarting, exited, dead.
    pub async fn status(&self) -> String {
        self.inspect("{{.State.Status}}").await
    }

    /// `.State.Running` (also true while paused).
    pub async fn is_running(&self) -> bool {
        self.inspect("{{.State.Running}}").await == "true"
    }

    /// `.State.Health.Status` (starting, healthy, unhealthy), or empty when
    /// the image has no HEALTHCHECK.
    pub async fn health(&self) -> String {
        self.inspect("{{if .State.Health}}{{.State.Health.Status}}{{end}}")
            .await
    }

    /// The host port published for `container_port` (e.g. `"8080/tcp"`).
    pub async fn host_port(&self, container_port: &str) -> Option<u16> {
        let out = docker(&["port", &self.id, container_port]).await.ok()?;
        parse_host_port(&out)
    }

    async fn verb(&self, args: &[&str]) {
        let mut all = args.to_vec();
        all.push(&self.id);
        docker(&all).await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// `docker stop` (SIGTERM, then SIGKILL after Docker's 10 s grace; busybox
    /// httpd as PID 1 ignores SIGTERM, so this takes the full grace period).
    pub async fn stop(&self) {
        self.verb(&["stop"]).await;
    }

    /// `docker stop -t <secs>`.
    pub async fn stop_timeout(&self, secs: u32) {
        self.verb(&["stop", "-t", &secs.to_string()]).await;
    }

    /// `docker start`.
    pub async fn start(&self) {
        self.verb(&["start"]).await;
    }

    /// `docker restart` (with Docker's default 10 s grace).
    pub async fn restart(&self) {
        self.verb(&["restart"]).await;
    }

    /// `docker restart -t <secs>`.
    pub async fn restart_timeout(&self, secs: u32) {
        self.verb(&["restart", "-t", &secs.to_string()]).await;
    }

    /// `docker kill` (SIGKILL).
    pub async fn kill(&self) {
        self.verb(&["kill"]).await;
    }

    /// `docker kill -s <signal>`.
    pub async fn kill_signal(&self, signal: &str) {
        self.verb(&["kill", "-s", signal]).await;
    }

    /// `docker pause`.
    pub async fn pause(&self) {
        self.verb(&["pause"]).await;
    }

    /// `docker unpause`.
    pub async fn unpause(&self) {
        self.verb(&["unpause"]).await;
    }

    /// `docker exec <id> <cmd>`; its stdout. Panics when it fails.
    pub async fn exec(&self, cmd: &[&str]) -> String {
        self.try_exec(cmd).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// `docker exec <id> <cmd>`; its stdout, or the error.
    pub async fn try_exec(&self, cmd: &[&str]) -> Result<String, String> {
        let mut all = vec!["exec", self.id.as_str()];
        all.extend_from_slice(cmd);
        docker(&all).await
    }

    /// Makes a [`HEALTHY`] container pass its health check (within ~1 s).
    pub async fn set_healthy(&self) {
        self.exec(&["touch", "/tmp/healthy"]).await;
    }

    /// Makes a [`HEALTHY`] container fail its health check (within ~1 s).
    pub async fn set_unhealthy(&self) {
        self.exec(&["rm", "-f", "/tmp/healthy"]).await;
    }

    /// `docker rm -f -v`, waiting until it is gone (the `destroy` event).
    pub async fn rm(mut self) {
        self.removed = true;
        docker(&["rm", "-f", "-v", &self.id])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.removed {
            let _ = docker_blocking(&["rm", "-f", "-v", &self.id]);
        }
    }
}

/// A user-defined bridge network (label `skydns-test=1`), removed on drop
/// (after the containers on it: drop those first).
#[derive(Debug)]
pub struct Network {
    /// The network name (`<prefix>-<random>`).
    pub name: String,
}

impl Network {
    /// `docker network create --label skydns-test=1 <prefix>-<random>`.
    pub async fn create(name_prefix: &str) -> Self {
        ensure_test_images();
        let name = unique_name(name_prefix);
        docker(&["network", "create", "--label", TEST_LABEL, &name])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Self { name }
    }

    /// `docker network connect <network> <container>`.
    pub async fn connect(&self, container: &Container) {
        docker(&["network", "connect", &self.name, &container.id])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker_blocking(&["network", "rm", &self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_keep_the_prefix_and_differ() {
        let a = unique_name("skt-x");
        let b = unique_name("skt-x");
        assert!(a.starts_with("skt-x-"), "{a}");
        assert_eq!(a.len(), "skt-x-".len() + 8);
        assert_ne!(a, b);
    }

    #[test]
    fn picks_ids_by_name_prefix() {
        let ps = "aaa skt-one-1234\nbbb other\nccc /skt-two\n\nddd skt\n";
        assert_eq!(ids_with_prefix(ps, "skt-"), ["aaa", "ccc"]);
        assert!(ids_with_prefix("", "skt-").is_empty());
    }

    #[test]
    fn parses_docker_port_output() {
        assert_eq!(parse_host_port("0.0.0.0:49153\n[::]:49153\n"), Some(49153));
        assert_eq!(parse_host_port("[::]:8081"), Some(8081));
        assert_eq!(parse_host_port(""), None);
    }

    #[test]
    fn the_image_script_is_where_the_workspace_keeps_it() {
        assert!(image_script().exists(), "{}", image_script().display());
    }
}
