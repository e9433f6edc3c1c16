//! The workspace's binaries, built by the harness itself on first use.

use std::path::{Path, PathBuf};

/// Path of a workspace binary (`skydns`, `skydock`, `skydnsctl`) next to
/// the running test (or benchmark) executable (`target/<profile>/`). The first call of a
/// test process builds the workspace's binaries with that profile (`cargo
/// build`, a no-op when they are current), so a bare `cargo test` needs
/// nothing built first and never runs a stale binary.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let dir = match BUILT.get_or_init(build_binaries) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    };
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Builds the workspace's binaries with the test executable's profile and
/// returns the directory they are in.
fn build_binaries() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the test executable: {e}"))?;
    // target/<profile>/deps/integration-xxxx (a test) or
    // target/<profile>/bench (a binary using the harness) → target/<profile>
    let parent = exe
        .parent()
        .ok_or("the executable is not in target/<profile>")?;
    let in_deps = parent.file_name().is_some_and(|n| n == "deps");
    let dir = if in_deps {
        parent.parent().unwrap_or(parent)
    } else {
        parent
    }
    .to_path_buf();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => return Err(format!("no profile in {}", dir.display())),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = std::process::Command::new(cargo);
    // What Cargo sets for a running test (this package's name, manifest
    // dir...): build scripts that watch these variables (ring's) would see
    // them change and rebuild, back and forth with the outer build.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_for_tests = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&key);
        if set_for_tests {
            cmd.env_remove(key);
        }
    }
    // A test builds the whole workspace's binaries, as scripts/test-all.sh
    // does: the same feature set, so in CI this is a no-op. A benchmark
    // builds the daemons' packages alone, as users and the images do, so it
    // measures the binaries they run (and never rebuilds itself).
    let packages: &[&str] = if in_deps {
        &["--workspace"]
    } else {
        &["-p", "skydns", "-p", "skydock", "-p", "skydnsctl"]
    };
    let out = cmd
        .arg("build")
        .args(packages)
        .args(["--bins", "--profile", &profile])
        .current_dir(workspace)
        .output()
        .map_err(|e| format!("cannot run cargo to build the binaries: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build of the binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dir)
}
