//! Helpers shared by the integration tests: fixtures, a stand-in kernel, host loading.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};

use kmod_loader::{
    FnProvider, Loaded, ProvidedSymbol, ProviderId, RegionMemory, Regions, SymbolProvider,
};

/// Where the stand-in kernel's symbols live: the x86-64 kernel text mapping.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8100_0000;
/// Where the host tests place module regions: Linux's module area, within ±2 GiB of the kernel.
pub const CORE_BASE: u64 = 0xffff_ffff_c000_0000;
/// Init region base, 16 MiB above core.
pub const INIT_BASE: u64 = 0xffff_ffff_c100_0000;
/// The stand-in kernel's provider id.
pub const KERNEL: ProviderId = ProviderId(0);
/// The small absolute value `kmod_small_constant` resolves to (for R_X86_64_32 tests).
pub const SMALL_CONSTANT: u64 = 0x1000;

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every committed fixture module: (file name, bytes).
pub fn all_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["c", "linux"] {
        let mut entries: Vec<_> = std::fs::read_dir(fixtures_dir().join(dir))
            .expect("fixture dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "ko"))
            .collect();
        entries.sort();
        for path in entries {
            let name = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            out.push((name, std::fs::read(&path).expect("read fixture")));
        }
    }
    assert!(out.len() >= 5, "fixtures missing: {out:?}");
    out
}

pub fn fixture(relative: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The stand-in kernel address of `name`: a deterministic hash into a 16 MiB kernel range,
/// 16-byte aligned, so that different names get different addresses.
pub fn kernel_address(name: &str) -> u64 {
    // FNV-1a: fixed, so expected values are reproducible.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    KERNEL_BASE + (hash % (16 << 20)) / 16 * 16
}

/// A stand-in for the Linux (or kmodlab) kernel: every name resolves, except weak
/// "optional" hooks, which stay unknown.
pub fn stand_in_kernel() -> impl SymbolProvider {
    FnProvider(|name: &str| {
        if name.contains("optional") || name == "_GLOBAL_OFFSET_TABLE_" {
            None
        } else if name == "kmod_small_constant" {
            Some(ProvidedSymbol {
                address: SMALL_CONSTANT,
                provider: KERNEL,
            })
        } else {
            Some(ProvidedSymbol {
                address: kernel_address(name),
                provider: KERNEL,
            })
        }
    })
}

/// A module loaded on the host: its memory and what the loader returned.
pub struct HostModule {
    pub core: Vec<u8>,
    pub init: Vec<u8>,
    pub loaded: Loaded,
}

/// Loads `data` into host memory with regions at CORE_BASE and INIT_BASE.
pub fn load_on_host(
    data: &[u8],
    provider: &dyn SymbolProvider,
) -> Result<HostModule, kmod_loader::Error> {
    let prepared = kmod_loader::prepare(data, provider)?;
    // Garbage, so the test sees whether the loader clears padding.
    let mut core = vec![0xcc; usize::try_from(prepared.layout.core.size).unwrap()];
    let mut init = vec![0xcc; usize::try_from(prepared.layout.init.size).unwrap()];
    let loaded = prepared.finish(Regions {
        core: RegionMemory {
            base: CORE_BASE,
            bytes: &mut core,
        },
        init: RegionMemory {
            base: INIT_BASE,
            bytes: &mut init,
        },
    })?;
    Ok(HostModule { core, init, loaded })
}

pub mod cases;
pub mod edit;
pub mod synth;
