//! The entry area of the kernel/user page-table split (`kpti=`, see [`kmodlab_abi::kpti`]).
//!
//! With the split on, user mode runs on a PML4 of its own (an address space's *user view*:
//! the user half, plus the pages below at their kernel addresses) and the kernel on the
//! address space's normal PML4, which maps everything. On kvm_pvm that is what keeps user mode
//! away from kernel memory: the hypervisor keeps one shadow table per guest CR3, and a root
//! starts with an empty shadow, so what the kernel touches under its own root is out of user
//! mode's reach (`results/pvm/2026-12-01-isolation-and-preemption.md`, Q1 and Q3).
//!
//! The user view maps, at the kernel's own addresses:
//! - the kernel's entry code (the `.entry_text` pages: `syscall` entry, `sysretq`/`iretq` exit,
//!   the 48 trap stubs), executable;
//! - [`ENTRY_CONSTS`], read-only: the two CR3 values the entry and exit code load;
//! - [`ENTRY_SCRATCH`], writable: a register saved across the CR3 switch, the iret frame;
//! - the trap stack (TSS.RSP0, and IST2 for interrupts) and the double-fault stack (IST1),
//!   writable;
//! - the GDT, TSS and IDT pages: the CPU (on kvm_pvm, the hypervisor) reads them through the
//!   current CR3 to deliver an exception or interrupt (measured: without any one of them a
//!   user exception triple-faults).
//!
//! Entry code switches to the kernel CR3 only when it comes from user mode (a trap whose
//! saved RIP is in the user half, or `syscall`); exit code switches to the user CR3 last,
//! just before `sysretq`/`iretq`. Both CR3 values are 0 when the task runs without a user
//! view, and then nothing is switched.
//!
//! What user mode can still reach under its view, on kvm_pvm: the entry pages the kernel
//! touches under the user CR3 (the entry code, the constants (read-only), the scratch page,
//! and the trap-stack pages the CPU pushes a trap frame on), as in Linux's KPTI, whose entry
//! area is user-readable too. They hold the task's own registers and the return addresses of
//! the trap path, nothing of any other task. Everything else faults (the self-test probes it).
//!
//! Known limit: a trap taken at a kernel RIP while the user CR3 is still loaded (the first
//! five instructions of the `syscall` entry, the last four of the exit) does not switch
//! tables, so its handler faults and the guest triple-faults. Nothing can trap there: the
//! instructions touch only pages the user view maps, interrupts are off (SFMASK clears IF on
//! `syscall`; the VMM injects its time-slice interrupt only at a user RIP), and no NMI is ever
//! injected. Linux's answer for NMIs (read CR3 in the handler) costs a trap on kvm_pvm, and
//! is left for when the kernel takes NMIs.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kmodlab_abi::layout::{GDT_GPA, KERNEL_VIRT_OFFSET, PAGE_SIZE, TSS_GPA};

use crate::mm::paging::{self, UserViewPerm};

/// Whether the split is on (decided once at boot, by [`init`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The CR3 values the entry and exit code load, in a page of their own: the user view maps it
/// read-only, so user mode can never change which tables the next entry switches to.
#[repr(C, align(4096))]
pub struct EntryConsts {
    /// The task's kernel PML4 (what a `syscall` or trap from user mode loads), 0: no switch.
    pub kernel_cr3: AtomicU64,
    /// The task's user view (what the exit to user mode loads), 0: no switch.
    pub user_cr3: AtomicU64,
}

/// See [`EntryConsts`]. The asm uses the field offsets 0 and 8.
pub static ENTRY_CONSTS: EntryConsts = EntryConsts {
    kernel_cr3: AtomicU64::new(0),
    user_cr3: AtomicU64::new(0),
};

/// Scratch words of the entry and exit code, in a page of their own (user-writable under the
/// user view on kvm_pvm once the kernel writes it there, so it only ever holds the running
/// task's own register values):
/// - 0: `rax` across the CR3 switch at the `syscall` entry;
/// - 8: the user `rdi`, reloaded after the exit's CR3 switch;
/// - 16..56: the `iretq` frame of a return to user mode after a trap (RIP, CS, RFLAGS, RSP,
///   SS), which must be readable under the user view (the kernel stack is not).
#[repr(C, align(4096))]
pub struct EntryScratch(pub [AtomicU64; 8]);

/// See [`EntryScratch`].
pub static ENTRY_SCRATCH: EntryScratch = EntryScratch([const { AtomicU64::new(0) }; 8]);

unsafe extern "C" {
    static __entry_text_start: u8;
    static __entry_text_end: u8;
}

/// `[start, end)` of the entry code (page-aligned by the linker script).
pub fn entry_text() -> (u64, u64) {
    // SAFETY: linker-script symbols; only their addresses are taken.
    unsafe {
        (
            &__entry_text_start as *const u8 as u64,
            &__entry_text_end as *const u8 as u64,
        )
    }
}

/// Whether the split is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Pages of `[start, end)`, rounded out to whole pages.
fn pages(start: u64, end: u64) -> impl Iterator<Item = u64> {
    let first = start & !(PAGE_SIZE - 1);
    (first..end).step_by(PAGE_SIZE as usize)
}

/// Turns the split on: builds the kernel part every user view shares. `trap_stack` and
/// `double_fault_stack` are `[bottom, top)` of the stacks the TSS points at; `idt` is the IDT's
/// `[start, end)`.
pub fn init(trap_stack: (u64, u64), double_fault_stack: (u64, u64), idt: (u64, u64)) {
    let mut list = alloc::vec::Vec::new();
    let text = entry_text();
    list.extend(pages(text.0, text.1).map(|p| (p, UserViewPerm::Execute)));
    let consts = &ENTRY_CONSTS as *const EntryConsts as u64;
    list.push((consts, UserViewPerm::ReadOnly));
    let scratch = &ENTRY_SCRATCH as *const EntryScratch as u64;
    list.push((scratch, UserViewPerm::ReadWrite));
    for (start, end) in [trap_stack, double_fault_stack] {
        list.extend(pages(start, end).map(|p| (p, UserViewPerm::ReadWrite)));
    }
    // The GDT and TSS as the kernel maps them (the CPU may set accessed and busy bits).
    list.push((KERNEL_VIRT_OFFSET + GDT_GPA, UserViewPerm::ReadWrite));
    list.push((KERNEL_VIRT_OFFSET + TSS_GPA, UserViewPerm::ReadWrite));
    list.extend(pages(idt.0, idt.1).map(|p| (p, UserViewPerm::ReadOnly)));
    paging::build_user_view_template(&list);
    ENABLED.store(true, Ordering::Relaxed);
}

/// Sets the tables the next entry to user mode and the entries back use: `user` is the
/// task's user view (`None`: the task runs on `kernel`, its normal PML4, and nothing is
/// switched).
pub fn set_tables(kernel: u64, user: Option<u64>) {
    let (k, u) = match user {
        Some(u) => (kernel, u),
        None => (0, 0),
    };
    ENTRY_CONSTS.kernel_cr3.store(k, Ordering::Relaxed);
    ENTRY_CONSTS.user_cr3.store(u, Ordering::Relaxed);
}
