//! cargo-fuzz target: [`bodies::module_file`]. Run from `crates/kmod-tools/`:
//! `cargo +nightly fuzz run module_file` (see `results/fuzz/README.md`).
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::module_file(data));
