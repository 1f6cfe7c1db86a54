//! Control registers, segment registers and general registers at the guest's first
//! instruction: 64-bit long mode, paging on, upper-half kernel.

use kmodlab_abi::layout::{BOOT_STACK_TOP_GPA, GDT_GPA, KERNEL_VIRT_OFFSET};
use kvm_bindings::{kvm_regs, kvm_sregs};

use super::gdt::{self, KERNEL_CS, KERNEL_DS, TSS_SELECTOR};

/// CR0: PE (protected mode), MP, ET, NE (native FPU errors), WP (supervisor writes honour
/// read-only pages, which the guest's W^X relies on), PG (paging).
pub const CR0: u64 = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31);
/// CR4: PAE (required for long mode) and PGE (global pages).
pub const CR4: u64 = (1 << 5) | (1 << 7);
/// EFER: SCE (syscall), LME and LMA (long mode), NXE (no-execute pages).
pub const EFER: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11);
/// RFLAGS: only the reserved always-one bit; interrupts off.
pub const RFLAGS: u64 = 0x2;

/// Special registers for entry at `cr3`, starting from what KVM reported.
pub fn boot_sregs(mut sregs: kvm_sregs, cr3: u64) -> kvm_sregs {
    let table = gdt::gdt_table();
    let code = gdt::segment_from_entry(table[usize::from(KERNEL_CS) / 8], KERNEL_CS);
    let data = gdt::segment_from_entry(table[usize::from(KERNEL_DS) / 8], KERNEL_DS);
    let tss = gdt::segment_from_entry(table[usize::from(TSS_SELECTOR) / 8], TSS_SELECTOR);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    // The TSS base is 64 bits wide; segment_from_entry saw only the low slot.
    sregs.tr.base = KERNEL_VIRT_OFFSET + kmodlab_abi::layout::TSS_GPA;
    sregs.gdt.base = KERNEL_VIRT_OFFSET + GDT_GPA;
    sregs.gdt.limit = (table.len() * 8 - 1) as u16;
    // No IDT until the guest loads its own: an exception before that is a triple fault,
    // which the VMM reports.
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = CR0;
    sregs.cr3 = cr3;
    sregs.cr4 = CR4;
    sregs.efer = EFER;
    sregs
}

/// General registers at entry: RIP at the ELF entry, RSP on the boot stack.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: KERNEL_VIRT_OFFSET + BOOT_STACK_TOP_GPA,
        rflags: RFLAGS,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_registers_have_exact_bits() {
        assert_eq!(CR0, 0x8001_0033);
        assert_eq!(CR4, 0xa0);
        assert_eq!(EFER, 0xd01);
    }

    #[test]
    fn sregs_enter_long_mode_in_the_upper_half() {
        let s = boot_sregs(kvm_sregs::default(), 0x8000);
        assert_eq!((s.cr0, s.cr3, s.cr4, s.efer), (CR0, 0x8000, CR4, EFER));
        assert_eq!((s.cs.selector, s.cs.l, s.cs.db, s.cs.dpl), (0x10, 1, 0, 0));
        assert_eq!((s.ss.selector, s.ds.selector), (0x18, 0x18));
        assert_eq!(
            (s.tr.selector, s.tr.type_, s.tr.base),
            (0x40, 11, 0xffff_ffff_8000_2000)
        );
        assert_eq!((s.gdt.base, s.gdt.limit), (0xffff_ffff_8000_1000, 79));
        assert_eq!(s.idt.limit, 0);
    }

    #[test]
    fn regs_start_on_the_boot_stack() {
        let r = boot_regs(0xffff_ffff_8020_0000);
        assert_eq!(r.rip, 0xffff_ffff_8020_0000);
        assert_eq!(r.rsp, 0xffff_ffff_8002_0000);
        assert_eq!(r.rflags, 2);
    }
}
