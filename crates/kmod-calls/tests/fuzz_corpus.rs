//! Replays the committed, minimised cargo-fuzz corpus (`fuzz/corpus/<target>/`) through
//! the same code as the fuzz targets (`fuzz/bodies.rs`), on stable, as a normal test: an
//! input that once crashed a target and is in the corpus fails here if it crashes again.
//! Campaign figures and commands: `results/fuzz/README.md`.

#[path = "../fuzz/bodies.rs"]
mod bodies;
#[path = "../../fuzz_replay.rs"]
mod fuzz_replay;

use std::path::PathBuf;

#[test]
fn export_table_corpus_replays_without_a_crash() {
    fuzz_replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "export_table",
        bodies::export_table,
    );
}

#[test]
fn call_corpus_replays_without_a_crash() {
    fuzz_replay::replay(env!("CARGO_MANIFEST_DIR"), "call", bodies::call);
}

/// Writes the seeds the campaign in `results/fuzz/` started from to
/// `$KMODLAB_FUZZ_SEEDS/{export_table,call}/`: the module set's signature sections (and the
/// modules with one, small enough), and for every export of the module set one call input
/// (a descriptor, the header its stub sends, plausible message words and leases).
#[test]
#[ignore = "writes fuzz seeds; set KMODLAB_FUZZ_SEEDS=DIR"]
fn write_seeds() {
    use kmod_calls::{Descriptor, ExportTable, Limits, find_section};
    let write = fuzz_replay::write_seed;
    let fixtures =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kmod-tools/tests/fixtures/kmodlab");
    for m in ["crc32", "cstats", "kvstore", "ramblk", "kvclient", "hello"] {
        let file = std::fs::read(fixtures.join(format!("{m}.ko"))).unwrap();
        if let Some(section) = find_section(&file).unwrap() {
            write("export_table", &format!("{m}-section"), section);
            let table = ExportTable::parse(section).unwrap();
            for (i, e) in table.iter().enumerate() {
                let d = Descriptor::new(i as u32, &e);
                for (k, regs) in [
                    [3u64, 0x40_0000, 16, 0x41_0000, 0x42_0000, 0],
                    [0x40_0000, 16, 0x41_0000, 32, 0x42_0000, 8],
                ]
                .into_iter()
                .enumerate()
                {
                    let mut input = vec![1u8];
                    input.extend_from_slice(&d.to_bytes());
                    let words = match d.marshal(&regs, &Limits::DEFAULT) {
                        Ok(r) => {
                            input.extend_from_slice(&r.header);
                            let mut w = vec![0x1_0000 + i as u64];
                            w.extend(r.words);
                            w.push(r.leases().len() as u64);
                            let mut lens = [0u64; 4];
                            let mut flags = [0u64; 4];
                            for (j, l) in r.leases().iter().enumerate() {
                                lens[j] = l.len;
                                flags[j] = l.flags;
                            }
                            w.extend(lens);
                            w.extend(flags);
                            w.extend([0u64, 8, 0, 0, 0, 0, 0]);
                            w.extend(regs);
                            w.extend([0u64, 4, 0, 0, 0, 0]);
                            w
                        }
                        Err(_) => {
                            input.extend_from_slice(&[0u8; 16]);
                            Vec::new()
                        }
                    };
                    for x in words {
                        input.extend_from_slice(&x.to_le_bytes());
                    }
                    write("call", &format!("{m}-{}-{k}", e.name), &input);
                }
            }
            if file.len() <= 16 * 1024 {
                write("export_table", &format!("{m}.ko"), &file);
            }
        }
    }
    write(
        "export_table",
        "text",
        b"f(u64, out[@2], u64) -> i32\0g(in[@1*4], u64, out[24]) -> i32\0h() -> void\0",
    );
}
