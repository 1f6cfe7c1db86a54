//! cargo-fuzz target: [`bodies::decompress`]. Run from `crates/kmod-tools/`:
//! `cargo +nightly fuzz run decompress` (see `results/fuzz/README.md`).
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::decompress(data));
