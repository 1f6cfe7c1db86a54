//! The kernel heap: one physically contiguous block from the frame allocator, reached through
//! the direct map, managed by `linked_list_allocator`.

use kmodlab_abi::boot_info::BootInfo;
use kmodlab_abi::layout::PAGE_SIZE;
use linked_list_allocator::LockedHeap;

use super::{frame, paging};

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Heap size: a quarter of RAM, at most 64 MiB.
fn heap_size(info: &BootInfo) -> u64 {
    (info.ram_size / 4).min(64 << 20)
}

pub fn init(info: &BootInfo) {
    let size = heap_size(info);
    let phys = frame::alloc_contiguous(size / PAGE_SIZE).unwrap_or_else(|| {
        panic!(
            "no {} MiB of contiguous RAM for the kernel heap",
            size >> 20
        )
    });
    let start = paging::phys_to_virt(phys);
    // SAFETY: [start, start + size) is the direct-map view of frames just allocated for the
    // heap alone; they are mapped RW and never freed.
    unsafe { HEAP.lock().init(start as *mut u8, size as usize) };
}

/// Heap usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes managed.
    pub size: usize,
    /// Bytes allocated.
    pub used: usize,
}

/// Current heap usage.
pub fn heap_stats() -> HeapStats {
    let h = HEAP.lock();
    HeapStats {
        size: h.size(),
        used: h.used(),
    }
}
