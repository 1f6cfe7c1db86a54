//! cargo-fuzz target: [`bodies::payload`]. Run from `crates/kmodlab-ipc/`:
//! `cargo +nightly fuzz run payload` (see `results/fuzz/README.md`).
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::payload(data));
