//! cargo-fuzz target: [`bodies::signed_file`]. Run from `crates/kmod-sig/`:
//! `cargo +nightly fuzz run signed_file` (see `results/fuzz/README.md`).
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::signed_file(data));
