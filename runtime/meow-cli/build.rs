//! Link flags for the `meow` executable.
//!
//! On Linux with glibc 2.36 or later, relative relocations are packed (`DT_RELR`): the dynamic
//! loader then reads about 14 KiB of relocations at start instead of 1.2 MiB, and every `meow`
//! process (a home server on a small board first) stays 1.2 MiB smaller in memory. Older C
//! libraries cannot load such executables, so the flag is only given when the build machine's
//! glibc is new enough and the build is not a cross-compilation.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let native = var("TARGET") == var("HOST");
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if native && linux_gnu && glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The glibc version from `ldd --version` (its first line ends with it, as in `ldd (…) 2.36`).
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("ldd").arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.lines().next().and_then(|l| l.split_whitespace().last()) else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
