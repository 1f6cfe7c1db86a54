//! The GDT and TSS the VMM set up (`vmm/src/arch/x86_64/gdt.rs`): the kernel keeps using
//! them and only fills in the TSS's stack pointers.

use kmodlab_abi::layout::{KERNEL_VIRT_OFFSET, TSS_GPA};
use x86_64::VirtAddr;
use x86_64::structures::tss::TaskStateSegment;

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x10;
/// User data (stack) selector with RPL 3: `sysretq` loads it into SS, `iretq` to user mode
/// pushes it.
pub const USER_SS: u16 = SYSRET_BASE + 8;
/// User 64-bit code selector with RPL 3 (what `sysretq` loads into CS).
pub const USER_CS: u16 = SYSRET_BASE + 16;
/// Base selector for `sysretq` (user data = base + 8, user code = base + 16), ORed with RPL 3
/// by the CPU.
pub const SYSRET_BASE: u16 = 0x23;

/// Pages of the stack used for traps from user mode (TSS.RSP0).
pub const TRAP_STACK_PAGES: u64 = 16;
/// Pages of the double-fault stack (IST1).
pub const DOUBLE_FAULT_STACK_PAGES: u64 = 4;
/// IST slot of the double-fault stack (1-based, as the IDT encodes it).
pub const DOUBLE_FAULT_IST: u8 = 1;

/// IST slot of the interrupt vectors (the VMM's time slices): the trap stack again, so that
/// an interrupt from user mode lands where it would through RSP0. kvm_pvm delivers injected
/// interrupts at CPL 3 without the RSP0 switch (measured: the frame went to the user's RSP),
/// but honours the IST, which switches stacks whatever the privilege levels.
pub const INTERRUPT_IST: u8 = 2;

/// Writes RSP0, IST1 and IST2 into the TSS the VMM's TR points at.
pub fn set_tss_stacks(trap_top: u64, double_fault_top: u64) {
    let mut tss = TaskStateSegment::new();
    tss.privilege_stack_table[0] = VirtAddr::new(trap_top);
    tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] = VirtAddr::new(double_fault_top);
    tss.interrupt_stack_table[usize::from(INTERRUPT_IST - 1)] = VirtAddr::new(trap_top);
    // No I/O permission bitmap: user mode gets #GP on any port access.
    tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;
    let tss_ptr = (KERNEL_VIRT_OFFSET + TSS_GPA) as *mut TaskStateSegment;
    // SAFETY: the TSS page is in the low area, mapped RW at KERNEL_VIRT_OFFSET by the kernel's
    // page tables, page-aligned (so aligned for the packed struct), and the CPU reads it only
    // on privilege changes and IST switches, none of which can happen during this write
    // (interrupts are off and this code runs in supervisor mode).
    unsafe { tss_ptr.write_volatile(tss) };
}
