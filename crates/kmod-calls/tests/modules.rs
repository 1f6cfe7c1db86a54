//! The module set's files (the kmod-tools fixtures, refreshed from the build): their
//! signature sections read as the build wrote them, and damaged copies of them give typed
//! errors, never a panic.

use std::path::PathBuf;

use kmod_calls::{Descriptor, ExportTable, find_section};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../kmod-tools/tests/fixtures/kmodlab")
        .join(format!("{name}.ko"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_fixtures_carry_their_signatures() {
    let kvstore = fixture("kvstore");
    let table = ExportTable::from_module(&kvstore).unwrap();
    assert_eq!(table.len(), 4);
    let (index, get) = table.find("kvstore_get").unwrap();
    assert_eq!(
        get.to_string(),
        "kvstore_get(in[@1], u64, out[@3], u64, outlen[@2]) -> i32"
    );
    // The manager's descriptor for a stub, and back.
    let d = Descriptor::new(index, &get);
    assert_eq!(Descriptor::from_bytes(&d.to_bytes()), Ok(d));
    table
        .check_exports([
            "kvstore_count",
            "kvstore_delete",
            "kvstore_get",
            "kvstore_put",
        ])
        .unwrap();
    let cstats_file = fixture("cstats");
    let cstats = ExportTable::from_module(&cstats_file).unwrap();
    assert_eq!(
        cstats.get(0).unwrap().to_string(),
        "cstats_summarize(in[@1*4], u64, out[24]) -> i32"
    );
    // Modules without exports have no section at all.
    for name in ["hello", "params", "kvclient", "faulty"] {
        assert_eq!(find_section(&fixture(name)), Ok(None), "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Damaged module files: a few bytes overwritten anywhere, or the file cut short.
    #[test]
    fn damaged_modules_never_panic(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut data = fixture(["crc32", "ramblk", "kvstore", "cstats"][which]);
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
        if truncate {
            data.truncate(cut.index(data.len()));
        }
        let _ = find_section(&data);
        if let Ok(table) = ExportTable::from_module(&data) {
            for (i, e) in table.iter().enumerate() {
                let _ = Descriptor::new(i as u32, &e).to_bytes();
            }
        }
    }
}
