//! The outside programs a benchmark runs (dnsperf, knotd, unbound, dig):
//! installed with apt-get when missing, their versions for the record.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, bail};

/// The path of `command`, from PATH or `/usr/sbin`.
pub(crate) fn find(command: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(command))
        .find(|p| p.is_file())
}

/// Makes sure every `(command, Debian package)` is there: one `apt-get
/// install` (through sudo unless root) of the packages whose command is
/// missing. The only traffic a benchmark sends off the machine.
pub(crate) fn need(wanted: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(cmd, _)| find(cmd).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("==> installing with apt-get: {}", missing.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        let status = cmd
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    for (cmd, pkg) in wanted {
        if find(cmd).is_none() {
            bail!("{cmd} is still missing after installing {pkg}");
        }
    }
    Ok(())
}

/// The installed version of a Debian package, or `?`.
pub(crate) fn version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "?".to_string(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )
}

/// Stops the system's own instance of a daemon that its package may have
/// started (knot, unbound), so it takes no CPU during the runs: its init
/// script, else the pid in its pid file when that process is the daemon.
pub(crate) fn stop_system_daemon(service: &str, process: &str, pidfiles: &[&str]) {
    let init = format!("/etc/init.d/{service}");
    if std::path::Path::new(&init).exists() {
        let _ = Command::new(&init).arg("stop").output();
    }
    for file in pidfiles {
        let Ok(pid) = std::fs::read_to_string(file) else {
            continue;
        };
        let pid = pid.trim();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == process {
            eprintln!("==> stopping the system {process}, pid {pid}");
            let _ = Command::new("kill").arg(pid).status();
        }
    }
}
