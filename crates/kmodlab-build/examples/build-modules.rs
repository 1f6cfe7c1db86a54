//! Builds the module set alone (without the guest kernels), for working on modules:
//! `cargo run -p kmodlab-build --example build-modules [OUT_DIR]`. Prints each module with
//! its size, exports and dependencies; the `.ko` files and `modules.dep` land in
//! `OUT_DIR/modules` (default: `target/guest/modules-example`).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kmodlab_build::{BuildDirs, ensure_guest_target, modules::build_modules};

fn main() -> ExitCode {
    let repo_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_root = repo_root.join("target/guest");
    let out_dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_root.join("modules-example"));
    let dirs = BuildDirs {
        repo_root,
        target_root,
        out_dir,
    };
    let start = Instant::now();
    let result = ensure_guest_target().and_then(|()| build_modules(&dirs));
    match result {
        Ok(built) => {
            for m in &built.modules {
                println!(
                    "{:<10} {:>9} bytes  {:?}  exports [{}]  depends [{}]",
                    m.name,
                    m.size,
                    m.source,
                    m.exports.join(", "),
                    m.depends.join(", ")
                );
            }
            if let Some(dep) = &built.modules_dep {
                println!("modules.dep: {}", dep.display());
            }
            println!("built in {:.1} s", start.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("build-modules: {e}");
            ExitCode::FAILURE
        }
    }
}
