//! cargo-fuzz target: [`bodies::depmod_inputs`]. Run from `crates/kmod-tools/`:
//! `cargo +nightly fuzz run depmod_inputs` (see `results/fuzz/README.md`).
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::depmod_inputs(data));
