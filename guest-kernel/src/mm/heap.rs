//! The kernel heap: one physically contiguous block from the frame allocator, reached through
//! the direct map, managed by `linked_list_allocator`.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, Ordering};
use kmodlab_abi::boot_info::BootInfo;
use kmodlab_abi::layout::PAGE_SIZE;

use linked_list_allocator::LockedHeap;

use super::{frame, paging};

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(LockedHeap::empty());

/// The kernel command-line word that makes the first heap allocation after boot fault inside
/// the allocator, with the heap locked: a test that a kernel fault there is reported (the
/// fault and panic reports allocate nothing), not a hang. Off unless given.
pub const FAULT_IN_ALLOC_KNOB: &str = "debug.alloc_fault=1";

/// Set by [`arm_fault_in_alloc`]; cleared by the fault it causes.
static FAULT_IN_ALLOC: AtomicBool = AtomicBool::new(false);

/// Makes the next heap allocation fault (invalid opcode) while it holds the heap lock.
pub fn arm_fault_in_alloc() {
    FAULT_IN_ALLOC.store(true, Ordering::SeqCst);
}

/// `linked_list_allocator`'s heap, with the fault injection of [`arm_fault_in_alloc`].
struct KernelHeap(LockedHeap);

impl KernelHeap {
    fn lock(&self) -> impl core::ops::DerefMut<Target = linked_list_allocator::Heap> + '_ {
        self.0.lock()
    }

    #[cold]
    fn fault_holding_the_lock(&self) -> ! {
        let _held = self.0.lock();
        FAULT_IN_ALLOC.store(false, Ordering::SeqCst);
        // SAFETY: `ud2` raises #UD, which the kernel reports as a supervisor fault and ends
        // the run on (it never returns here); it touches no memory or register.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack, noreturn)) }
    }
}

// SAFETY: every call is forwarded to `LockedHeap`, a correct allocator; the injected fault
// never returns, so it hands out no memory.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if FAULT_IN_ALLOC.load(Ordering::Relaxed) {
            self.fault_holding_the_lock();
        }
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged; `ptr` came from
        // `alloc` above, that is from `self.0`.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

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
