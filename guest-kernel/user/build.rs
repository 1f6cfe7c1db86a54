//! Links the user programs at fixed low addresses with W^X segments: the programs the kernel
//! starts (`init`, `sh`, `modmgr`) at 4 MiB, the module server runtime (`kmodrt`, which the
//! module manager maps into every module server) at `kmodlab_ipc::layout::RUNTIME_BASE`.
//! Also hands the module signing key to the code: see `embed_module_signing_key`.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    for program in ["init", "sh", "modmgr"] {
        println!("cargo:rustc-link-arg-bin={program}=-T{dir}/user.ld");
    }
    println!("cargo:rustc-link-arg-bin=kmodrt=-T{dir}/runtime.ld");
    println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    println!("cargo:rerun-if-changed=user.ld");
    println!("cargo:rerun-if-changed=runtime.ld");
    embed_module_signing_key();
}

/// Copies the module signing public key (a DER SubjectPublicKeyInfo) named by
/// `KMODLAB_MODULE_SIG_PUBKEY` to `OUT_DIR/module_signing_key.der`, which the code embeds
/// with `include_bytes!`. kmodlab-build always sets the variable; a build without it (e.g.
/// `cargo clippy` in this workspace) embeds an empty key, and such a kernel verifies no
/// module ("signature and/or required key missing").
fn embed_module_signing_key() {
    const VAR: &str = "KMODLAB_MODULE_SIG_PUBKEY";
    println!("cargo:rerun-if-env-changed={VAR}");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("module_signing_key.der");
    let key = match std::env::var_os(VAR) {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            std::fs::read(&path).unwrap_or_else(|e| panic!("{VAR}={}: {e}", path.display()))
        }
        None => Vec::new(),
    };
    if std::fs::read(&out).ok().as_deref() != Some(key.as_slice()) {
        std::fs::write(&out, &key).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    }
}
