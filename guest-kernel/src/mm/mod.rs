//! Memory management: physical frames, the kernel's page tables, the kernel heap, and
//! guarded kernel stacks.
//!
//! Virtual layout (upper half only; the lower half belongs to user programs):
//!
//! ```text
//! 0xffff_c000_0000_0000  direct map of all guest RAM, RW NX (PML4 slot 384)
//! 0xffff_ffff_8000_0000  low area (boot structures, control channel), RW NX; page 0 unmapped
//! 0xffff_ffff_8020_0000  kernel image: text RX, rodata R, data/bss RW NX
//! 0xffff_ffff_c000_0000  module area (512 MiB, within ±2 GiB of the kernel)
//! 0xffff_ffff_e000_0000  kernel stacks, one per 1 MiB slot, with unmapped guard pages
//! ```

pub mod frame;
pub(crate) mod heap;
pub mod paging;

pub use frame::frame_stats;
pub use heap::heap_stats;

use kmodlab_abi::boot_info::BootInfo;
use kmodlab_abi::status::BootPhase;

/// Brings up frames, page tables and heap, in that order, calling `done` after each; maps
/// kernel stacks of `stacks[i]` pages, each below an unmapped guard page, and returns their
/// tops.
pub fn init<const N: usize>(
    info: &BootInfo,
    stacks: [u64; N],
    done: impl Fn(BootPhase),
) -> [u64; N] {
    frame::init(info);
    done(BootPhase::Frames);
    let mut tops = [0; N];
    paging::init(info, &stacks, &mut tops);
    done(BootPhase::PageTables);
    heap::init(info);
    done(BootPhase::Heap);
    tops
}
