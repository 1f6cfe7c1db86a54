//! cargo-fuzz target: [`bodies::export_table`]. Run from `crates/kmod-calls/`:
//! `cargo +nightly fuzz run export_table` (see `results/fuzz/README.md`).
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::export_table(data));
