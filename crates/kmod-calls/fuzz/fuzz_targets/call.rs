//! cargo-fuzz target: [`bodies::call`]. Run from `crates/kmod-calls/`:
//! `cargo +nightly fuzz run call` (see `results/fuzz/README.md`).
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::call(data));
