//! Links the user programs at fixed low addresses with W^X segments: the programs the kernel
//! starts (`init`, `sh`, `modmgr`) at 4 MiB, the module server runtime (`kmodrt`, which the
//! module manager maps into every module server) at `kmodlab_ipc::layout::RUNTIME_BASE`.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    for program in ["init", "sh", "modmgr"] {
        println!("cargo:rustc-link-arg-bin={program}=-T{dir}/user.ld");
    }
    println!("cargo:rustc-link-arg-bin=kmodrt=-T{dir}/runtime.ld");
    println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    println!("cargo:rerun-if-changed=user.ld");
    println!("cargo:rerun-if-changed=runtime.ld");
}
