//! x86-64 specifics: traps, system calls, user mode, stacks.

pub mod cpu;
pub mod entry;
pub mod gdt;
pub mod idt;
pub mod syscall;

use core::arch::asm;

pub use syscall::{Trap, UserContext};

/// Installs the IDT and the system call entry. Runs on the boot stack, before the kernel has
/// its own page tables; faults from here on are reported, not silent triple faults.
pub fn init_traps() {
    idt::init();
    syscall::init();
}

/// Gives the TSS its stacks (user-mode traps: `trap_top`, the top of a kernel stack of
/// [`gdt::TRAP_STACK_PAGES`]; double faults: `double_fault_top`, of
/// [`gdt::DOUBLE_FAULT_STACK_PAGES`]), and builds the entry area of the kernel/user
/// page-table split if `kpti` (see [`entry`]); needs memory management.
pub fn init_trap_stacks(kpti: bool, trap_top: u64, double_fault_top: u64) {
    gdt::set_tss_stacks(trap_top, double_fault_top);
    idt::enable_ist_stacks();
    if kpti {
        let page = kmodlab_abi::layout::PAGE_SIZE;
        entry::init(
            (trap_top - gdt::TRAP_STACK_PAGES * page, trap_top),
            (
                double_fault_top - gdt::DOUBLE_FAULT_STACK_PAGES * page,
                double_fault_top,
            ),
            idt::table_range(),
        );
    }
}

/// Moves onto the stack ending at `top` and calls `f`, which must not return.
///
/// # Safety
/// `top` must be the 16-byte-aligned top of mapped, writable, otherwise unused memory large
/// enough for everything `f` does; the current stack is abandoned.
pub unsafe fn switch_stack(top: u64, f: extern "C" fn() -> !) -> ! {
    // SAFETY: the caller guarantees the new stack; `f` never returns, so no frame of the old
    // stack is used again.
    unsafe {
        asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {f}",
            "ud2",
            top = in(reg) top,
            f = in(reg) f,
            options(noreturn),
        )
    }
}
