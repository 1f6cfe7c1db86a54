//! Memory in proportion to the input (issue 10, items 3 and 4), measured with a counting
//! allocator: the peak of live heap bytes while a tool reads a hostile file.
//!
//! One test function, so that no other test allocates while a peak is measured.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use kmod_tools::ModuleFile;
use kmod_tools::depmod::{self, Entry, KernelExports};
use kmod_tools::objstat::ObjStat;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged, so System's guarantees hold; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds alloc's contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds realloc's contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes `f` needs at its peak beyond what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let value = f();
    (value, PEAK.load(Ordering::Relaxed) - before)
}

const MIB: usize = 1 << 20;

#[test]
fn memory_stays_in_proportion_to_the_file() {
    let dir = scratch("memory");

    // The file: 4,000 symbols pointing into one 1 MB string (1.1 MB). Copying each
    // name took 7.8 GB; kmod's modinfo needs 4 MB.
    let hostile = module_with_overlapping_symbol_names(4000, 1 << 20);
    assert!(hostile.len() < 1_200_000, "{}", hostile.len());
    let path = dir.join("overlap.ko");
    std::fs::write(&path, &hostile).unwrap();

    let (modinfo, peak) = peak_of(|| kmod_tools::ko::read_modinfo(&path).unwrap());
    assert_eq!(modinfo.modinfo[0].0, "version");
    assert!(peak < 2 * MIB, "modinfo: {peak} bytes");

    let (module, peak) = peak_of(|| ModuleFile::open(&path).unwrap());
    assert_eq!(module.imports().len(), 4000);
    assert!(peak < 4 * MIB, "ModuleFile::open: {peak} bytes");

    let entries = vec![Entry {
        relpath: "overlap.ko".into(),
        module,
    }];
    let (missing, peak) = peak_of(|| {
        let graph = depmod::compute(&entries, &KernelExports::Default).unwrap();
        graph.missing.len()
    });
    assert_eq!(missing, 4000);
    assert!(peak < 2 * MIB, "depmod::compute: {peak} bytes");

    // objstat: 1,000 sections whose names share one 1 MB string, reported into a sink.
    // (JSON on a smaller file: serde_json's escaping is slow in unoptimised test builds.)
    let sections = module_with_overlapping_section_names(1000, 1 << 20);
    let fewer_sections = module_with_overlapping_section_names(100, 256 << 10);
    let (written, peak) = peak_of(|| {
        let stat = ObjStat::parse(Path::new("sections.ko"), &sections).unwrap();
        let mut text = ByteCount(0);
        stat.write_report(&mut text).unwrap();
        let stat = ObjStat::parse(Path::new("fewer.ko"), &fewer_sections).unwrap();
        let mut json = ByteCount(0);
        serde_json::to_writer(&mut json, &stat).unwrap();
        (text.0, json.0)
    });
    // The reports are large (every name in full), but are not built in memory.
    assert!(written.0 > 400 * MIB && written.1 > 10 * MIB, "{written:?}");
    assert!(peak < 4 * MIB, "objstat: {peak} bytes");

    // Bombs under an 8 MiB cap: the output buffer never passes the cap.
    const LIMIT: u64 = 8 << 20;
    let bomb = zstd_rle_bomb(32 * 1024);
    let (result, peak) = peak_of(|| {
        kmod_tools::input::decompress(Path::new("bomb.zst"), bomb, LIMIT).map(|v| v.len())
    });
    assert!(result.is_err());
    assert!(peak < 12 * MIB, "zstd bomb: {peak} bytes");
    let xz_bomb = xz(&vec![0; 32 << 20], lzma_rust2::CheckType::Crc32);
    let (result, peak) = peak_of(|| {
        kmod_tools::input::decompress(Path::new("bomb.xz"), xz_bomb, LIMIT).map(|v| v.len())
    });
    assert!(result.is_err());
    // The LZMA2 dictionary of preset 1 (1 MiB) comes on top of the capped output.
    assert!(peak < 12 * MIB, "xz bomb: {peak} bytes");
}

/// Counts what is written and keeps nothing.
struct ByteCount(usize);

impl std::fmt::Write for ByteCount {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
