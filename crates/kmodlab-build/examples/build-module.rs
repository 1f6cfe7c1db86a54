//! Builds one module of your own, outside `modules/`, the way the in-tree ones are built:
//! `cargo run -p kmodlab-build --example build-module -- DIR [OUT_DIR]`, where `DIR` is a
//! Rust module crate (a `staticlib` using `kmod-api`) or a directory of C files (against
//! `modules/include/kmod.h`). Prints the path of `NAME.ko` (in `OUT_DIR`, default `DIR`'s
//! parent), ready for `kmodlab run --module` or `kmodlab compare --module`.
use std::path::PathBuf;
use std::process::ExitCode;

use kmodlab_build::{ensure_guest_target, modules::build_out_of_tree};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let Some(source) = args.next() else {
        eprintln!("usage: build-module DIR [OUT_DIR]");
        return ExitCode::from(2);
    };
    let source = std::path::absolute(&source).unwrap_or(source);
    let out = args.next().unwrap_or_else(|| {
        source
            .parent()
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
    });
    let repo_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let work = repo_root.join("target/guest/out-of-tree").join(
        source
            .file_name()
            .map_or_else(|| "module".into(), |n| n.to_owned()),
    );
    match ensure_guest_target().and_then(|()| build_out_of_tree(&repo_root, &source, &work, &out)) {
        Ok(ko) => {
            println!("{}", ko.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("build-module: {e}");
            ExitCode::FAILURE
        }
    }
}
