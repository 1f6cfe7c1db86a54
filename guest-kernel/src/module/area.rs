//! The module area's address space: first-fit allocation of page ranges, each followed by
//! an unmapped guard page so that a module running off the end of a region faults instead of
//! corrupting its neighbour.

use alloc::vec::Vec;

use kmodlab_abi::layout::PAGE_SIZE;
use spin::Mutex;

use crate::mm::paging::{MODULE_AREA_END, MODULE_AREA_START};

/// Free ranges `[start, end)`, sorted, disjoint; `None` until first use.
static FREE: Mutex<Option<Vec<(u64, u64)>>> = Mutex::new(None);

/// Alignment, in pages, of the regions [`reserve_aligned`] hands out: a shadow MMU maps the
/// entries of one aligned group of eight at once (KVM's `PTE_PREFETCH_NUM`) but stops at the
/// first unmapped one, such as the previous region's guard page, so a region that starts a
/// group has all of its pages in that group mapped by one fault
/// ([`crate::mm::paging::map_module_pages`]). It costs address space only.
pub const GROUP_PAGES: u64 = 8;

/// Reserves `pages` pages (plus a guard page); returns the first address.
pub fn reserve(pages: u64) -> Option<u64> {
    reserve_in(pages, 1)
}

/// Reserves `pages` pages (plus a guard page) starting on a multiple of [`GROUP_PAGES`]
/// pages; returns the first address. The pages skipped to align it stay free.
pub fn reserve_aligned(pages: u64) -> Option<u64> {
    reserve_in(pages, GROUP_PAGES)
}

fn reserve_in(pages: u64, align_pages: u64) -> Option<u64> {
    let want = pages.checked_add(1)?.checked_mul(PAGE_SIZE)?;
    let align = align_pages * PAGE_SIZE;
    let mut guard = FREE.lock();
    let free = guard.get_or_insert_with(|| alloc::vec![(MODULE_AREA_START, MODULE_AREA_END)]);
    let (i, start) = free.iter().enumerate().find_map(|(i, &(s, e))| {
        let start = s.checked_next_multiple_of(align)?;
        (start.checked_add(want)? <= e).then_some((i, start))
    })?;
    let (s, e) = free[i];
    let end = start + want;
    // What is left on either side stays free, in order.
    match (s < start, end < e) {
        (false, false) => {
            free.remove(i);
        }
        (false, true) => free[i].0 = end,
        (true, false) => free[i].1 = start,
        (true, true) => {
            free[i].1 = start;
            free.insert(i + 1, (end, e));
        }
    }
    Some(start)
}

/// Returns a range reserved with [`reserve`].
pub fn release(start: u64, pages: u64) {
    let end = start + (pages + 1) * PAGE_SIZE;
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
