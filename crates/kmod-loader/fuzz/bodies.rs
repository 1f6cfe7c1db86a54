//! The body of the `load` fuzz target, shared by `fuzz_targets/load.rs` (cargo-fuzz,
//! nightly) and `tests/fuzz_corpus.rs`, which replays the committed corpus on stable.
//!
//! Feeds arbitrary bytes through every loader step: validate, layout, resolve, copy and
//! relocate into host memory. Any panic (or sanitizer report) is a bug.

use kmod_loader::{FnProvider, ProvidedSymbol, ProviderId, RegionMemory, Regions};

/// Regions larger than this are not allocated: the point is parsing, not memset speed.
const MAX_HOST_REGION: u64 = 16 << 20;

/// One input through the whole loader.
pub fn load(data: &[u8]) {
    // Every name resolves to a kernel-range address, except "optional" ones (weak paths).
    let provider = FnProvider(|name: &str| {
        let hash = name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        (!name.contains("optional")).then_some(ProvidedSymbol {
            address: 0xffff_ffff_8100_0000 + (hash % (16 << 20)),
            provider: ProviderId(0),
        })
    });
    let Ok(prepared) = kmod_loader::prepare(data, &provider) else {
        return;
    };
    if prepared.layout.core.size > MAX_HOST_REGION || prepared.layout.init.size > MAX_HOST_REGION {
        return;
    }
    let mut core = vec![0u8; prepared.layout.core.size as usize];
    let mut init = vec![0u8; prepared.layout.init.size as usize];
    let _ = prepared.finish(Regions {
        core: RegionMemory {
            base: 0xffff_ffff_c000_0000,
            bytes: &mut core,
        },
        init: RegionMemory {
            base: 0xffff_ffff_c100_0000,
            bytes: &mut init,
        },
    });
}
