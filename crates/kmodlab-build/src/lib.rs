//! Builds everything kmodlab runs inside the guest: the guest kernel (one binary per
//! configuration), the guest user programs, the modules and the module archive.
//!
//! `vmm/build.rs` calls [`build_all`] so that `cargo run --release -- <subcommand>` at the
//! repository root always runs with fresh guest artifacts, which it then embeds in the
//! `kmodlab` binary. Each part is built by a nested `cargo` in a workspace of its own, for
//! `x86_64-unknown-none`, with a target directory under the outer one.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod archive;
pub mod guest;
pub mod modules;
pub mod signing;
mod toolchain;

pub use toolchain::{GUEST_TARGET, ensure_guest_target};

/// Why building the guest artifacts failed. Each variant says what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The guest target's standard library is missing and could not be installed.
    #[error(
        "the Rust target {target} is not installed and `rustup target add {target}` failed: {detail}\n\
         install it by hand (`rustup target add {target}`) and build again"
    )]
    TargetMissing {
        /// The target triple.
        target: &'static str,
        /// What rustup (or its absence) said.
        detail: String,
    },
    /// A build tool could not be started at all.
    #[error("could not run `{tool}`: {source} (is it installed and on PATH?)")]
    Spawn {
        /// The program that failed to start.
        tool: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A build step ran and failed; its own output (above) says why.
    #[error("{step} failed ({status}); see the compiler output above")]
    StepFailed {
        /// What was being built.
        step: String,
        /// How the process ended.
        status: std::process::ExitStatus,
    },
    /// Reading or writing a build file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A build output is not what the next step needs.
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, BuildError>;

/// Where the sources are and where build outputs go.
#[derive(Debug, Clone)]
pub struct BuildDirs {
    /// The repository root (holds `guest-kernel/`, `modules/`, `crates/`).
    pub repo_root: PathBuf,
    /// Root of every nested build's target directory, e.g. `<outer target>/guest`.
    pub target_root: PathBuf,
    /// Where finished artifacts are copied (the build script's `OUT_DIR`).
    pub out_dir: PathBuf,
}

/// Everything [`build_all`] produced, as paths under [`BuildDirs::out_dir`].
#[derive(Debug, Clone)]
pub struct GuestArtifacts {
    /// One kernel ELF per configuration.
    pub kernels: Vec<guest::BuiltKernel>,
    /// The guest user programs (placed in the archive under `sbin/`).
    pub user_programs: Vec<guest::BuiltProgram>,
    /// The modules and their dependency file.
    pub modules: modules::BuiltModules,
    /// The module archive (cpio "newc") the VMM places in guest memory.
    pub archive: PathBuf,
    /// The key the modules are signed with (its public key is in the guest kernel).
    pub signing_key: signing::ModuleSigningKey,
    /// Source paths whose change must trigger a rebuild.
    pub watched: Vec<PathBuf>,
}

/// Builds every guest artifact, installing the guest target first if it is missing.
pub fn build_all(dirs: &BuildDirs) -> Result<GuestArtifacts> {
    ensure_guest_target()?;
    std::fs::create_dir_all(&dirs.out_dir).map_err(|source| BuildError::Io {
        path: dirs.out_dir.clone(),
        source,
    })?;
    let signing_key = signing::module_signing_key(dirs)?;
    let kernels = guest::build_kernels(dirs, &signing_key)?;
    let user_programs = guest::build_user_programs(dirs, &signing_key)?;
    let modules = modules::build_modules(dirs)?;
    let mut entries: Vec<archive::Entry> = Vec::new();
    for program in &user_programs {
        entries.push(archive::Entry::from_file(
            format!("sbin/{}", program.name),
            &program.path,
        )?);
    }
    entries.extend(modules.archive_entries()?);
    let archive = dirs.out_dir.join("initramfs.cpio");
    archive::write_newc(&entries, &archive)?;
    let watched = vec![
        dirs.repo_root.join("guest-kernel"),
        dirs.repo_root.join("modules"),
        dirs.repo_root.join("crates/kmodlab-abi"),
        dirs.repo_root.join("crates/kmodlab-ipc"),
        dirs.repo_root.join("crates/kmod-manager"),
        dirs.repo_root.join("crates/kmod-loader"),
        dirs.repo_root.join("crates/kmodlab-build"),
        dirs.repo_root.join("crates/kmod-sig"),
        signing_key.key_path.clone(),
    ];
    Ok(GuestArtifacts {
        kernels,
        user_programs,
        modules,
        archive,
        signing_key,
        watched,
    })
}

/// A `cargo` command for a nested guest build: the cargo that runs this build, in `workdir`,
/// with the outer build's environment removed so that it cannot leak into the guest build
/// (target, flags, features and wrappers of the host build are wrong for the guest).
pub fn nested_cargo(workdir: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workdir);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("DEP_")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "CARGO_ENCODED_RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "CARGO_ENCODED_RUSTDOCFLAGS"
                    | "CARGO_TARGET_DIR"
                    | "CARGO_BUILD_TARGET"
                    | "CARGO_BUILD_RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_MAKEFLAGS"
                    | "OUT_DIR"
                    | "TARGET"
                    | "HOST"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "RUSTC_LINKER"
                    | "CARGO_CFG_TARGET_FEATURE"
            );
        if leaks {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `cmd`, mapping a failure to start or a non-zero exit to a [`BuildError`].
pub fn run_step(step: &str, cmd: &mut Command) -> Result<()> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd
        .status()
        .map_err(|source| BuildError::Spawn { tool, source })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::StepFailed {
            step: step.to_owned(),
            status,
        })
    }
}

/// Copies `from` to `to`, creating `to`'s directory.
pub fn copy_artifact(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|source| BuildError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::copy(from, to).map_err(|source| BuildError::Io {
        path: from.to_owned(),
        source,
    })?;
    Ok(())
}
