//! Making sure the guest target's standard library is installed.

use std::path::PathBuf;
use std::process::Command;

use crate::{BuildError, Result};

/// The target every guest artifact is built for: soft-float, no SSE, no red zone.
pub const GUEST_TARGET: &str = "x86_64-unknown-none";

/// The sysroot of the compiler this build runs with.
fn sysroot() -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|source| BuildError::Spawn {
            tool: rustc.to_string_lossy().into_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(BuildError::Invalid(format!(
            "`rustc --print sysroot` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn target_installed() -> Result<bool> {
    Ok(sysroot()?
        .join("lib/rustlib")
        .join(GUEST_TARGET)
        .join("lib")
        .is_dir())
}

/// Installs [`GUEST_TARGET`] with rustup when the active toolchain lacks it.
///
/// A fresh machine has only the host target; this is the one piece of set-up the project
/// does for the user. The toolchain rustup selected for this build (`RUSTUP_TOOLCHAIN`) is
/// the one that gets the target, so a pinned or overridden toolchain is honoured.
pub fn ensure_guest_target() -> Result<()> {
    if target_installed()? {
        return Ok(());
    }
    println!("cargo:warning=installing the Rust target {GUEST_TARGET} (rustup target add)");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", GUEST_TARGET]);
    if let Some(toolchain) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        cmd.arg("--toolchain").arg(toolchain);
    }
    let detail = match cmd.output() {
        Ok(out) if out.status.success() => {
            if target_installed()? {
                return Ok(());
            }
            "rustup reported success but the target's library is still missing".to_owned()
        }
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => format!("rustup could not be run ({e}); kmodlab needs a rustup toolchain"),
    };
    Err(BuildError::TargetMissing {
        target: GUEST_TARGET,
        detail,
    })
}
