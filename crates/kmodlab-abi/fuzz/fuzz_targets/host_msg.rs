//! cargo-fuzz target: [`bodies::host_msg`]. Run from `crates/kmodlab-abi/`:
//! `cargo +nightly fuzz run host_msg` (see `results/fuzz/README.md`).
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::host_msg(data));
