//! Replays the committed, minimised cargo-fuzz corpus (`fuzz/corpus/<target>/`) through
//! the same code as the fuzz targets (`fuzz/bodies.rs`), on stable, as a normal test: an
//! input that once crashed a target and is in the corpus fails here if it crashes again.
//! Campaign figures and commands: `results/fuzz/README.md`. The seeds are written by the
//! crate's unit test `write_fuzz_seeds` (unit tests can sign).

#[path = "../fuzz/bodies.rs"]
mod bodies;
#[path = "../../fuzz_replay.rs"]
mod fuzz_replay;

#[test]
fn signed_file_corpus_replays_without_a_crash() {
    fuzz_replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "signed_file",
        bodies::signed_file,
    );
}

#[test]
fn pkcs7_corpus_replays_without_a_crash() {
    fuzz_replay::replay(env!("CARGO_MANIFEST_DIR"), "pkcs7", bodies::pkcs7);
}
