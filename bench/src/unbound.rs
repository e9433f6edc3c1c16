//! unbound as the forwarding reference: a caching forwarder of every name to
//! one loopback upstream, the setting skydns's forwarding is compared in.

use std::path::Path;

use anyhow::{Context, bail};

use crate::process::Daemon;

/// unbound's configuration: 127.0.0.1@`port`, `threads` threads, forwarding
/// `.` to 127.0.0.1@`upstream` with no validation or trust anchor.
pub(crate) fn config(dir: &Path, port: u16, threads: u32, upstream: u16) -> String {
    let d = dir.display();
    format!(
        "server:\n    interface: 127.0.0.1\n    port: {port}\n    do-ip6: no\n    num-threads: {threads}\n\
    access-control: 127.0.0.0/8 allow\n    do-not-query-localhost: no\n    module-config: \"iterator\"\n\
    qname-minimisation: no\n    auto-trust-anchor-file: \"\"\n    chroot: \"\"\n    username: \"\"\n\
    directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n    logfile: \"\"\n    use-syslog: no\n    verbosity: 1\n\
remote-control:\n    control-enable: no\n\
forward-zone:\n    name: \".\"\n    forward-addr: 127.0.0.1@{upstream}\n"
    )
}

/// Starts `unbound -d` in `dir` (created) on a free port; returns it, its
/// port and its configuration text.
pub(crate) async fn start(
    dir: &Path,
    threads: u32,
    upstream: u16,
) -> anyhow::Result<(Daemon, u16, String)> {
    std::fs::create_dir_all(dir).context("cannot create unbound's directory")?;
    let port = crate::process::free_port()?;
    let conf = config(dir, port, threads, upstream);
    let path = dir.join("unbound.conf");
    std::fs::write(&path, &conf).context("cannot write unbound.conf")?;
    let path = path.display().to_string();
    let check =
        crate::tools::find("unbound-checkconf").context("unbound-checkconf is not installed")?;
    let out = std::process::Command::new(check).arg(&path).output()?;
    if !out.status.success() {
        bail!(
            "unbound-checkconf: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let unbound = crate::tools::find("unbound").context("unbound is not installed")?;
    let daemon = Daemon::start(&unbound, &["-d", "-c", &path], &["start of service"]).await?;
    Ok((daemon, port, conf))
}
