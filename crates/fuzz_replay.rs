//! The corpus replay every crate's `tests/fuzz_corpus.rs` shares (included with `#[path]`):
//! runs each committed, minimised cargo-fuzz input (`fuzz/corpus/<target>/`) through the same
//! body as the fuzz target, on stable, so that an input that once crashed a target fails the
//! test suite if it crashes again.

use std::path::{Path, PathBuf};

/// Fewest corpus files a target may have: fewer means the corpus was not committed.
const MIN_FILES: usize = 10;

/// Runs every corpus file of `target` in crate `manifest_dir` through `body`, in name order;
/// fails if the corpus has fewer than [`MIN_FILES`] files.
pub fn replay(manifest_dir: &str, target: &str, body: fn(&[u8])) {
    let dir = Path::new(manifest_dir).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        body(&data);
    }
    assert!(
        files.len() >= MIN_FILES,
        "only {} corpus files for {target}: was the corpus committed?",
        files.len()
    );
}

/// Writes seed `name` of `target` to `$KMODLAB_FUZZ_SEEDS/<target>/` (the ignored
/// `write_seeds` tests: the inputs a campaign in `results/fuzz/` started from).
#[allow(dead_code)] // Not every crate's replay test writes seeds.
pub fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let out = PathBuf::from(std::env::var_os("KMODLAB_FUZZ_SEEDS").expect("KMODLAB_FUZZ_SEEDS"));
    let dir = out.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}
