//! cargo-fuzz target: [`bodies::pkcs7`]. Run from `crates/kmod-sig/`:
//! `cargo +nightly fuzz run pkcs7` (see `results/fuzz/README.md`).
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::pkcs7(data));
