//! Builds the guest artifacts (kernels, user programs, modules, module archive) and hands
//! their paths to the crate, which embeds them: an installed `kmodlab` is self-contained.
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let repo_root = manifest.parent().expect("vmm/ has a parent").to_owned();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let target_root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root.join("target"))
        .join("guest");
    let dirs = kmodlab_build::BuildDirs {
        repo_root,
        target_root,
        out_dir: out_dir.join("guest"),
    };
    let artifacts = match kmodlab_build::build_all(&dirs) {
        Ok(a) => a,
        Err(e) => {
            // A build script's panic message is what the user sees; make it the actionable
            // error, not a backtrace.
            eprintln!("error: building the guest artifacts failed: {e}");
            std::process::exit(1);
        }
    };
    for path in &artifacts.watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    println!(
        "cargo:rerun-if-env-changed={}",
        kmodlab_build::signing::KEY_ENV
    );
    for kernel in &artifacts.kernels {
        println!(
            "cargo:rustc-env=KMODLAB_KERNEL_{}={}",
            kernel.variant.name.to_uppercase().replace('-', "_"),
            kernel.path.display()
        );
    }
    println!(
        "cargo:rustc-env=KMODLAB_INITRAMFS={}",
        artifacts.archive.display()
    );
    // For tests that sign modules the guest must accept.
    println!(
        "cargo:rustc-env=KMODLAB_MODULE_SIG_KEY_FILE={}",
        artifacts.signing_key.key_path.display()
    );
}
