//! The module area's address space: first-fit allocation of page ranges, each followed by
//! an unmapped guard page so that a module running off the end of a region faults instead of
//! corrupting its neighbour.

use alloc::vec::Vec;

use kmodlab_abi::layout::PAGE_SIZE;
use spin::Mutex;

use crate::mm::paging::{MODULE_AREA_END, MODULE_AREA_START};

/// Free ranges `[start, end)`, sorted, disjoint; `None` until first use.
static FREE: Mutex<Option<Vec<(u64, u64)>>> = Mutex::new(None);

/// Reserves `pages` pages (plus a guard page); returns the first address.
pub fn reserve(pages: u64) -> Option<u64> {
    let want = (pages + 1).checked_mul(PAGE_SIZE)?;
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
