//! cargo-fuzz target: [`bodies::utcb`]. Run from `crates/kmodlab-ipc/`:
//! `cargo +nightly fuzz run utcb` (see `results/fuzz/README.md`).
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::utcb(data));
