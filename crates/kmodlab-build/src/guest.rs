//! Building the guest kernel (once per configuration) and the guest user programs.

use std::path::PathBuf;

use crate::signing::{ModuleSigningKey, PUBLIC_KEY_ENV};
use crate::{BuildDirs, GUEST_TARGET, Result, copy_artifact, nested_cargo, run_step};

/// A kernel build variant: one configuration with one set of kernel features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelVariant {
    /// Artifact name, e.g. `monolithic`; the VMM selects kernels by it.
    pub name: &'static str,
    /// Cargo features of `guest-kernel` that make this variant.
    pub features: &'static str,
}

/// Every kernel variant that is built. The two configurations come first; the others exist
/// so that their sizes can be compared (e.g. the kernel without module unloading).
pub const KERNEL_VARIANTS: &[KernelVariant] = &[
    KernelVariant {
        name: "monolithic",
        features: "monolithic,module-unload",
    },
    KernelVariant {
        name: "microkernel",
        features: "microkernel",
    },
    KernelVariant {
        name: "monolithic-nounload",
        features: "monolithic",
    },
];

/// One built kernel.
#[derive(Debug, Clone)]
pub struct BuiltKernel {
    /// The variant it was built as.
    pub variant: KernelVariant,
    /// The kernel ELF.
    pub path: PathBuf,
}

/// One built user program.
#[derive(Debug, Clone)]
pub struct BuiltProgram {
    /// Its name (`init`).
    pub name: String,
    /// The ELF executable.
    pub path: PathBuf,
}

/// Builds the guest kernel once per [`KERNEL_VARIANTS`] entry. Each variant has its own
/// target directory, so switching features never rebuilds the others. Each embeds the public
/// key of `key`, which it verifies modules with.
pub fn build_kernels(dirs: &BuildDirs, key: &ModuleSigningKey) -> Result<Vec<BuiltKernel>> {
    let workdir = dirs.repo_root.join("guest-kernel");
    let mut built = Vec::new();
    for variant in KERNEL_VARIANTS {
        let target_dir = dirs.target_root.join(format!("kernel-{}", variant.name));
        run_step(
            &format!("building the {} guest kernel", variant.name),
            nested_cargo(&workdir)
                .args(["build", "--release", "--package", "kmodlab-kernel"])
                .args(["--target", GUEST_TARGET])
                .args(["--no-default-features", "--features", variant.features])
                .env(PUBLIC_KEY_ENV, &key.public_key_path)
                .arg("--target-dir")
                .arg(&target_dir),
        )?;
        let from = target_dir.join(GUEST_TARGET).join("release/kmodlab-kernel");
        let path = dirs.out_dir.join(format!("kernel-{}.elf", variant.name));
        copy_artifact(&from, &path)?;
        built.push(BuiltKernel {
            variant: *variant,
            path,
        });
    }
    Ok(built)
}

/// The user programs, placed in the archive as `sbin/NAME`: the kernel's first program, the
/// shell, the module manager (microkernel) and the module server runtime it maps into every
/// module server.
pub const USER_PROGRAMS: &[&str] = &["init", "sh", "modmgr", "kmodrt"];

/// Builds the guest user programs (`guest-kernel/user`), which embed the public key of `key`
/// too (for the microkernel's module manager).
pub fn build_user_programs(dirs: &BuildDirs, key: &ModuleSigningKey) -> Result<Vec<BuiltProgram>> {
    let workdir = dirs.repo_root.join("guest-kernel");
    let target_dir = dirs.target_root.join("user");
    run_step(
        "building the guest user programs",
        nested_cargo(&workdir)
            .args(["build", "--release", "--package", "kmodlab-user"])
            .args(["--target", GUEST_TARGET])
            .env(PUBLIC_KEY_ENV, &key.public_key_path)
            .arg("--target-dir")
            .arg(&target_dir),
    )?;
    USER_PROGRAMS
        .iter()
        .map(|name| {
            let from = target_dir.join(GUEST_TARGET).join("release").join(name);
            let path = dirs.out_dir.join(format!("{name}.elf"));
            copy_artifact(&from, &path)?;
            Ok(BuiltProgram {
                name: (*name).into(),
                path,
            })
        })
        .collect()
}
