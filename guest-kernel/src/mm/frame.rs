//! The physical frame allocator: a bitmap over guest RAM, one bit per 4 KiB frame.
//!
//! The bitmap covers up to [`MAX_RAM`]; frames outside the VMM's usable ranges are never
//! marked free. Allocation searches from the lowest address, which the page-table setup
//! relies on (its tables must lie inside the boot mapping's first GiB).

use core::sync::atomic::{AtomicU64, Ordering};
use kmodlab_abi::boot_info::BootInfo;
use kmodlab_abi::layout::{MAX_RAM, PAGE_SIZE};

use spin::Mutex;

const MAX_FRAMES: usize = (MAX_RAM / PAGE_SIZE) as usize;
const WORDS: usize = MAX_FRAMES / 64;

struct Frames {
    /// Bit set = frame free. (Zero-initialised, so the bitmap lives in .bss, not the image.)
    free_bits: [u64; WORDS],
    total: u64,
    free: u64,
    /// Word index to start searching from.
    hint: usize,
}

static FRAMES: Mutex<Frames> = Mutex::new(Frames {
    free_bits: [0; WORDS],
    total: 0,
    free: 0,
    hint: 0,
});

pub fn init(info: &BootInfo) {
    let mut f = FRAMES.lock();
    for r in info.usable_ranges() {
        let first = r.start.div_ceil(PAGE_SIZE);
        let end = (r.end / PAGE_SIZE).min(MAX_FRAMES as u64);
        if first < end {
            set_range(&mut f.free_bits, first, end, true);
            f.total += end - first;
            f.free += end - first;
        }
    }
}

/// Sets (`free`) or clears the bits of frames `[first, end)`, a word at a time where it can:
/// one bit at a time, filling 256 MiB of RAM was a tenth of a millisecond of boot.
fn set_range(bits: &mut [u64; WORDS], first: u64, end: u64, free: bool) {
    let mut frame = first;
    while frame < end {
        let (w, bit) = ((frame / 64) as usize, frame % 64);
        let n = (64 - bit).min(end - frame);
        let mask = if n == 64 {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << bit
        };
        if free {
            bits[w] |= mask;
        } else {
            bits[w] &= !mask;
        }
        frame += n;
    }
}

/// Allocations that may still succeed before every further one fails ([`u64::MAX`]: no
/// limit, the default). Set only by the self-test, to run out of frames at a chosen point.
static FAIL_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);

/// Makes allocations fail after `successes` more succeed (`None`: no limit). For the
/// self-test's out-of-memory checks; it restores `None` before it returns. (The
/// microkernel's kernel maps no module pages, the only check that uses it.)
#[cfg_attr(feature = "microkernel", allow(dead_code))]
pub fn fail_after(successes: Option<u64>) {
    FAIL_AFTER.store(successes.unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// `(frames managed, frames free)`.
pub fn frame_stats() -> (u64, u64) {
    let f = FRAMES.lock();
    (f.total, f.free)
}

/// Allocates `count` physically contiguous frames; returns the physical address of the first.
pub fn alloc_contiguous(count: u64) -> Option<u64> {
    let mut f = FRAMES.lock();
    if count == 0 || count > f.free {
        return None;
    }
    let budget = FAIL_AFTER.load(Ordering::Relaxed);
    if budget == 0 {
        return None;
    }
    if budget != u64::MAX {
        FAIL_AFTER.store(budget - 1, Ordering::Relaxed);
    }
    let mut run_start = 0u64;
    let mut run_len = 0u64;
    let mut frame = (f.hint * 64) as u64;
    while frame < MAX_FRAMES as u64 {
        let word = f.free_bits[(frame / 64) as usize];
        if run_len == 0 && word == 0 {
            frame = (frame / 64 + 1) * 64;
            continue;
        }
        if word & (1 << (frame % 64)) != 0 {
            if run_len == 0 {
                run_start = frame;
            }
            // A whole free word inside a run counts 64 frames at once.
            let step = if frame.is_multiple_of(64) && word == u64::MAX {
                64.min(count - run_len)
            } else {
                1
            };
            run_len += step;
            if run_len == count {
                set_range(&mut f.free_bits, run_start, run_start + count, false);
                f.free -= count;
                if count == 1 {
                    f.hint = (run_start / 64) as usize;
                }
                return Some(run_start * PAGE_SIZE);
            }
            frame += step;
            continue;
        }
        run_len = 0;
        frame += 1;
    }
    None
}

/// Allocates one frame.
pub fn alloc() -> Option<u64> {
    alloc_contiguous(1)
}

/// Frees `count` frames starting at physical address `phys`.
///
/// Panics if any of them is not allocated: a double free is a kernel bug that must not be
/// papered over.
pub fn free_contiguous(phys: u64, count: u64) {
    let mut f = FRAMES.lock();
    let first = phys / PAGE_SIZE;
    for fr in first..first + count {
        let (w, bit) = ((fr / 64) as usize, 1u64 << (fr % 64));
        assert!(
            f.free_bits[w] & bit == 0,
            "frame {:#x} freed twice",
            fr * PAGE_SIZE
        );
        f.free_bits[w] |= bit;
    }
    f.free += count;
    f.hint = f.hint.min((first / 64) as usize);
}
