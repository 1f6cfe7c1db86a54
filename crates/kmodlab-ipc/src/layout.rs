//! Where things live in a task's (user) address space. The kernel owns the upper half; every
//! address here is in the lower half.
//!
//! ```text
//! 0x0000_0000_0001_0000  lowest mappable address (page 0 and its neighbours stay unmapped)
//! 0x0000_0000_0040_0000  programs (sh, init, the module manager) are linked here
//! 0x0000_0000_1000_0000  module servers: the server runtime (kmodrt)
//! 0x0000_0000_2000_0000  module servers: the heap kmod_alloc serves from (grown on request)
//! 0x0000_0000_3800_0000  module servers: call stubs (imports of other modules' exports)
//! 0x0000_0000_4000_0000  module servers: the module's core and init regions
//! 0x0000_7fff_f000_0000  every task: its UTCB (one page)
//! 0x0000_7fff_ffff_0000  every task: top of the stack (a guard page below it is unmapped)
//! ```
//!
//! Module code is built with `-mcmodel=kernel`, whose absolute 32-bit relocations
//! (`R_X86_64_32S`) need addresses that are sign-extended 32-bit values: the top 2 GiB (where
//! the monolithic kernel puts modules) or the bottom 2 GiB. A server therefore keeps the
//! module, the runtime it calls and the stubs below [`LOW_2G`], and the same module file
//! loads unchanged in both configurations.

/// Size of a page.
pub const PAGE_SIZE: u64 = 4096;
/// Lowest address a task may map.
pub const USER_MIN: u64 = 0x1_0000;
/// First address above the user half.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// Where programs are linked (`guest-kernel/user/user.ld`).
pub const PROGRAM_BASE: u64 = 0x40_0000;
/// Where the module server runtime is linked.
pub const RUNTIME_BASE: u64 = 0x1000_0000;
/// Module servers' heap.
pub const HEAP_BASE: u64 = 0x2000_0000;
/// End of the heap range.
pub const HEAP_END: u64 = 0x3800_0000;
/// Module servers' call stubs.
pub const STUB_BASE: u64 = 0x3800_0000;
/// End of the stub range.
pub const STUB_END: u64 = 0x4000_0000;
/// Module servers' module area (core region first, then init).
pub const MODULE_BASE: u64 = 0x4000_0000;
/// End of the module area.
pub const MODULE_END: u64 = 0x7000_0000;
/// Everything a module's `-mcmodel=kernel` code addresses must lie below this.
pub const LOW_2G: u64 = 0x8000_0000;
/// Every task's UTCB.
pub const UTCB: u64 = 0x0000_7fff_f000_0000;
/// Top of every task's stack.
pub const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Largest stack a task may have (the kernel maps the stack the creator asks for; what is
/// below stays unmapped, a guard).
pub const MAX_STACK: u64 = 0x10_0000 * 16;

const _: () = {
    assert!(USER_MIN < PROGRAM_BASE && PROGRAM_BASE < RUNTIME_BASE);
    assert!(RUNTIME_BASE < HEAP_BASE && HEAP_END <= STUB_BASE);
    assert!(STUB_END <= MODULE_BASE && MODULE_END <= LOW_2G);
    assert!(UTCB + PAGE_SIZE <= STACK_TOP - MAX_STACK);
    assert!(STACK_TOP < USER_END);
};
