//! Links the `skydns` binary with its start-up functions packed together
//! (`startup-order.txt`, written by `scripts/startup-order.sh`): the kernel
//! maps a binary's code in around each page that start-up touches, so code
//! run at start spread over the whole binary makes most of it resident.
//! Packed, idle RSS falls by about 3 MiB (docs/performance.md).
//!
//! Also packs its relative relocations (`-z pack-relative-relocs`, DT_RELR):
//! the loader reads a few KiB at start instead of a 360 KiB table.
//!
//! Only where the linker is LLD, which reads symbol ordering files: the
//! x86_64 Linux GNU target from Rust 1.90 on; DT_RELR only for a native
//! build on glibc 2.36 or later, whose loader applies it.
//! `SKYDNS_NO_SYMBOL_ORDER=1` turns both off (for another linker set in a
//! Cargo config).

use std::{env, path::Path, process::Command};

fn main() {
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    // The static build (the images') has other symbol names: its own list.
    let crt_static = env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|f| f == "crt-static"));
    let list = if crt_static {
        "startup-order-static.txt"
    } else {
        "startup-order.txt"
    };
    let order = Path::new(&dir).join(list);
    // By its absolute path: the link argument below names the file so, and
    // in a checkout moved elsewhere (its target directory with it) the old
    // path is gone, which makes Cargo run this again instead of linking
    // with a path that no longer exists.
    println!("cargo::rerun-if-changed={}", order.display());
    println!("cargo::rerun-if-env-changed=SKYDNS_NO_SYMBOL_ORDER");
    let lld_by_default = env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu")
        && rustc_minor().is_some_and(|minor| minor >= 90);
    if !lld_by_default || env::var_os("SKYDNS_NO_SYMBOL_ORDER").is_some() {
        return;
    }
    if order.is_file() {
        println!(
            "cargo::rustc-link-arg-bin=skydns=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names the file lists but this build does not have (another
        // compiler, another dependency version) are skipped quietly.
        println!("cargo::rustc-link-arg-bin=skydns=-Wl,--no-warn-symbol-ordering");
    }
    let native = env::var("HOST").ok() == env::var("TARGET").ok();
    if native && glibc_minor().is_some_and(|minor| minor >= 36) {
        println!("cargo::rustc-link-arg-bin=skydns=-Wl,-z,pack-relative-relocs");
    }
}

/// The minor version of the C library the build links against, when it is
/// glibc (`getconf GNU_LIBC_VERSION` → `glibc 2.36` → 36).
fn glibc_minor() -> Option<u32> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.strip_prefix("glibc ")?.trim();
    let mut parts = version.split('.');
    (parts.next()? == "2").then_some(())?;
    parts.next()?.parse().ok()
}

/// The minor version of the compiler building this crate (`1.95.0` → 95).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var_os("RUSTC")?;
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    version.split('.').nth(1)?.parse().ok()
}
