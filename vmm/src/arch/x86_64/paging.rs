//! Boot page tables: guest-physical `[0, BOOT_MAPPED_SIZE)` mapped with 2 MiB pages at
//! [`KERNEL_VIRT_OFFSET`] only. No identity mapping: the kernel runs in the upper half from
//! its first instruction, and builds its own W^X tables right after.
//!
//! On kvm_pvm, supervisor code running natively (VIF page registered) can only fetch and
//! access pages whose entries have the U/S bit set at every level; with U/S clear, the first
//! instruction fetch faults forever (the host logs a "refault livelock"). So on PVM every
//! kernel entry carries U/S, and the guest kernel does the same in its own tables (see
//! `guest-kernel/src/mm/paging.rs`, which also checks what that means for user/kernel
//! isolation).

use kmodlab_abi::KvmFlavour;
use kmodlab_abi::layout::{
    BOOT_MAPPED_SIZE, BOOT_PD_GPA, BOOT_PDPT_GPA, BOOT_PML4_GPA, KERNEL_VIRT_OFFSET,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

// The kernel image and the start of the module archive must be reachable at boot.
const _: () = {
    assert!(kmodlab_abi::layout::KERNEL_PHYS_END <= BOOT_MAPPED_SIZE);
    assert!(kmodlab_abi::layout::INITRD_GPA < BOOT_MAPPED_SIZE);
};

/// Present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// User/supervisor: reachable from CPL 3.
pub const PTE_USER: u64 = 1 << 2;
/// Large page (2 MiB in a page directory).
pub const PTE_HUGE: u64 = 1 << 7;

/// The permission bits of every boot page-table entry for `flavour`.
pub const fn kernel_entry_flags(flavour: KvmFlavour) -> u64 {
    match flavour {
        KvmFlavour::Hardware => PTE_PRESENT | PTE_WRITABLE,
        KvmFlavour::Pvm => PTE_PRESENT | PTE_WRITABLE | PTE_USER,
    }
}

/// PML4 slot of the kernel mapping.
pub const fn pml4_index(va: u64) -> usize {
    ((va >> 39) & 0x1ff) as usize
}

/// PDPT slot of the kernel mapping.
pub const fn pdpt_index(va: u64) -> usize {
    ((va >> 30) & 0x1ff) as usize
}

/// The three boot tables, as `(guest-physical address, 512 entries)`, each entry with the
/// permission bits `flags` (see [`kernel_entry_flags`]).
pub fn tables(flags: u64) -> [(u64, [u64; 512]); 3] {
    let mut pml4 = [0u64; 512];
    pml4[pml4_index(KERNEL_VIRT_OFFSET)] = BOOT_PDPT_GPA | flags;
    let mut pdpt = [0u64; 512];
    pdpt[pdpt_index(KERNEL_VIRT_OFFSET)] = BOOT_PD_GPA | flags;
    let mut pd = [0u64; 512];
    for (i, entry) in pd.iter_mut().enumerate() {
        *entry = ((i as u64) << 21) | flags | PTE_HUGE;
    }
    debug_assert_eq!(512u64 << 21, BOOT_MAPPED_SIZE);
    [
        (BOOT_PML4_GPA, pml4),
        (BOOT_PDPT_GPA, pdpt),
        (BOOT_PD_GPA, pd),
    ]
}

/// Writes the boot tables into guest memory; returns the value for CR3.
pub fn write(mem: &GuestMemoryMmap, flags: u64) -> Result<u64, vm_memory::GuestMemoryError> {
    for (gpa, table) in tables(flags) {
        let mut bytes = Vec::with_capacity(4096);
        for e in table {
            bytes.extend_from_slice(&e.to_le_bytes());
        }
        mem.write_slice(&bytes, GuestAddress(gpa))?;
    }
    Ok(BOOT_PML4_GPA)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_u64(mem: &GuestMemoryMmap, gpa: u64) -> u64 {
        mem.read_obj(GuestAddress(gpa)).unwrap()
    }

    #[test]
    fn kernel_mapping_uses_slot_511_and_510() {
        assert_eq!(pml4_index(KERNEL_VIRT_OFFSET), 511);
        assert_eq!(pdpt_index(KERNEL_VIRT_OFFSET), 510);
    }

    #[test]
    fn writes_exact_entries() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x20000)]).unwrap();
        let flags = kernel_entry_flags(KvmFlavour::Hardware);
        assert_eq!(write(&mem, flags).unwrap(), 0x8000);
        assert_eq!(read_u64(&mem, BOOT_PML4_GPA + 511 * 8), 0x9003);
        assert_eq!(read_u64(&mem, BOOT_PML4_GPA), 0, "no identity mapping");
        assert_eq!(
            read_u64(&mem, BOOT_PML4_GPA + 256 * 8),
            0,
            "slot 256 unused"
        );
        assert_eq!(read_u64(&mem, BOOT_PDPT_GPA + 510 * 8), 0xa003);
        assert_eq!(read_u64(&mem, BOOT_PDPT_GPA + 511 * 8), 0);
        assert_eq!(read_u64(&mem, BOOT_PD_GPA), 0x83);
        assert_eq!(read_u64(&mem, BOOT_PD_GPA + 8), 0x20_0083);
        assert_eq!(read_u64(&mem, BOOT_PD_GPA + 511 * 8), 0x3fe0_0083);
    }

    #[test]
    fn pvm_entries_carry_the_user_bit_at_every_level() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x20000)]).unwrap();
        write(&mem, kernel_entry_flags(KvmFlavour::Pvm)).unwrap();
        assert_eq!(read_u64(&mem, BOOT_PML4_GPA + 511 * 8), 0x9007);
        assert_eq!(read_u64(&mem, BOOT_PDPT_GPA + 510 * 8), 0xa007);
        assert_eq!(read_u64(&mem, BOOT_PD_GPA + 8), 0x20_0087);
        assert_eq!(read_u64(&mem, BOOT_PML4_GPA), 0);
    }
}
