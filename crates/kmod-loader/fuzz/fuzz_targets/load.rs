//! cargo-fuzz target: [`bodies::load`], every loader step on arbitrary bytes.
//!
//! Run: `cargo +nightly fuzz run load` from `crates/kmod-loader/`; the committed corpus is
//! `fuzz/corpus/load/` (minimised; `tests/fuzz_corpus.rs` replays it on stable). See
//! `results/fuzz/README.md`.
#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::load(data));
