//! Replays the committed, minimised cargo-fuzz corpus (`fuzz/corpus/<target>/`) through
//! the same code as the fuzz targets (`fuzz/bodies.rs`), on stable, as a normal test: an
//! input that once crashed a target and is in the corpus fails here if it crashes again.
//! Campaign figures and commands: `results/fuzz/README.md`. The seeds are written by the
//! crate's unit test `write_fuzz_seeds` (unit tests can sign).

#[path = "../fuzz/bodies.rs"]
mod bodies;

use std::path::PathBuf;

/// Runs every corpus file of `target` through `body`; returns how many there were.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        body(&data);
    }
    files.len()
}

#[test]
fn signed_file_corpus_replays_without_a_crash() {
    let n = replay("signed_file", bodies::signed_file);
    assert!(
        n >= 10,
        "only {n} corpus files for signed_file: was the corpus committed?"
    );
}

#[test]
fn pkcs7_corpus_replays_without_a_crash() {
    let n = replay("pkcs7", bodies::pkcs7);
    assert!(
        n >= 10,
        "only {n} corpus files for pkcs7: was the corpus committed?"
    );
}
