//! The module area's address space: first-fit allocation of whole 2 MiB slots
//! ([`MODULE_SLOT_PAGES`] pages, what one page table maps), so that every region has page
//! tables of its own that can be filled before they are published
//! ([`crate::mm::paging::publish_module_pages`]). A region is followed by at least one
//! unmapped guard page inside its own slots, so that a module running off the end of a
//! region faults instead of corrupting its neighbour.
//!
//! The area (512 MiB) holds 256 slots: 256 regions, i.e. at least 128 modules with an init
//! region each, more without (init regions are freed once a module is live).

use alloc::vec::Vec;

use kmodlab_abi::layout::PAGE_SIZE;
use spin::Mutex;

use crate::mm::paging::{MODULE_AREA_END, MODULE_AREA_START, MODULE_SLOT_PAGES};

/// Free ranges `[start, end)`, sorted, disjoint; `None` until first use.
static FREE: Mutex<Option<Vec<(u64, u64)>>> = Mutex::new(None);

/// Bytes reserved for a region of `pages` pages: its pages and a guard page, in whole slots.
fn reserved_bytes(pages: u64) -> Option<u64> {
    pages
        .checked_add(1)?
        .div_ceil(MODULE_SLOT_PAGES)
        .checked_mul(MODULE_SLOT_PAGES * PAGE_SIZE)
}

/// Reserves `pages` pages (plus a guard page) in whole slots; returns the first address,
/// which is slot-aligned (every range handed out or returned is a multiple of a slot, and
/// the area starts on a slot).
pub fn reserve(pages: u64) -> Option<u64> {
    let want = reserved_bytes(pages)?;
    let mut guard = FREE.lock();
    let free = guard.get_or_insert_with(|| alloc::vec![(MODULE_AREA_START, MODULE_AREA_END)]);
    let i = free.iter().position(|&(s, e)| e - s >= want)?;
    let start = free[i].0;
    if free[i].1 - start == want {
        free.remove(i);
    } else {
        free[i].0 += want;
    }
    Some(start)
}

/// Returns a range reserved with [`reserve`].
pub fn release(start: u64, pages: u64) {
    let end = start + reserved_bytes(pages).expect("a reserved region's size");
    let mut guard = FREE.lock();
    let free = guard.get_or_insert_with(Vec::new);
    let i = free.partition_point(|&(s, _)| s < start);
    free.insert(i, (start, end));
    // Merge with the neighbours so the area does not fragment.
    if i + 1 < free.len() && free[i].1 == free[i + 1].0 {
        free[i].1 = free[i + 1].1;
        free.remove(i + 1);
    }
    if i > 0 && free[i - 1].1 == free[i].0 {
        free[i - 1].1 = free[i].1;
        free.remove(i);
    }
}
