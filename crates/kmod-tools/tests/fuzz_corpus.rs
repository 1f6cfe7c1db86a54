//! Replays the committed, minimised cargo-fuzz corpus (`fuzz/corpus/<target>/`) through
//! the same code as the fuzz targets (`fuzz/bodies.rs`), on stable, as a normal test: an
//! input that once crashed a target and is in the corpus fails here if it crashes again.
//! Campaign figures and commands: `results/fuzz/README.md`.

#[path = "../fuzz/bodies.rs"]
mod bodies;
#[path = "../../fuzz_replay.rs"]
mod fuzz_replay;

#[test]
fn module_file_corpus_replays_without_a_crash() {
    fuzz_replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "module_file",
        bodies::module_file,
    );
}

#[test]
fn decompress_corpus_replays_without_a_crash() {
    fuzz_replay::replay(env!("CARGO_MANIFEST_DIR"), "decompress", bodies::decompress);
}

#[test]
fn depmod_inputs_corpus_replays_without_a_crash() {
    fuzz_replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "depmod_inputs",
        bodies::depmod_inputs,
    );
}
