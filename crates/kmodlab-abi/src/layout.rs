//! Guest-physical memory layout: every address the VMM and the guest kernel agree on.
//!
//! ```text
//! 0x0000_0000  page 0: never mapped by the guest, so a null dereference faults
//! 0x0000_1000  GDT (written by the VMM; the guest keeps using it)
//! 0x0000_2000  TSS (the VMM points TR at it; the guest fills RSP0 and the IST entries)
//! 0x0000_3000  PVM VIF page (registered only on PVM)
//! 0x0000_4000  boot information (read-only to the guest)
//! 0x0000_5000  status page: words the guest kernel writes and the VMM reads without an exit
//! 0x0000_8000  boot page tables: PML4, PDPT, PD (2 MiB pages)
//! 0x0001_0000  boot stack (64 KiB), used until the kernel switches to its own
//! 0x0010_0000  control channel (1 MiB): host-to-guest half, then guest-to-host half
//! 0x0020_0000  kernel image (ELF segments are loaded at their physical addresses)
//! 0x0100_0000  module archive (initramfs), then free RAM up to the end of memory
//! ```
//!
//! The boot page tables map guest-physical `[0, BOOT_MAPPED_SIZE)` at
//! [`KERNEL_VIRT_OFFSET`] only: the kernel starts in the upper half with no identity mapping.
//! PML4 slot 256 is avoided on purpose: kvm_pvm triple-faults on it in native mode.

/// Size of a small page.
pub const PAGE_SIZE: u64 = 0x1000;

/// The Global Descriptor Table (one page).
pub const GDT_GPA: u64 = 0x1000;
/// The 64-bit Task State Segment (one page; 104 bytes used).
pub const TSS_GPA: u64 = 0x2000;
/// The PVM "VIF" page (virtual interrupt flag); registered through an MSR on PVM only.
pub const VIF_PAGE_GPA: u64 = 0x3000;
/// The boot information page, see [`crate::boot_info`].
pub const BOOT_INFO_GPA: u64 = 0x4000;
/// The status page, see [`crate::status`].
pub const STATUS_GPA: u64 = 0x5000;
/// Boot PML4.
pub const BOOT_PML4_GPA: u64 = 0x8000;
/// Boot PDPT for the upper-half kernel mapping (PML4 slot 511).
pub const BOOT_PDPT_GPA: u64 = 0x9000;
/// Boot page directory: 512 × 2 MiB pages covering [`BOOT_MAPPED_SIZE`].
pub const BOOT_PD_GPA: u64 = 0xa000;
/// Lowest address of the boot stack.
pub const BOOT_STACK_BOTTOM_GPA: u64 = 0x1_0000;
/// Initial stack pointer (the stack grows down from here).
pub const BOOT_STACK_TOP_GPA: u64 = 0x2_0000;
/// The control channel, see [`crate::channel`].
pub const CONTROL_GPA: u64 = 0x10_0000;
/// Size of the control channel.
pub const CONTROL_SIZE: u64 = 0x10_0000;
/// Lowest physical address a kernel segment may occupy.
pub const KERNEL_PHYS_START: u64 = 0x20_0000;
/// End (exclusive) of the physical range kernel segments may occupy.
pub const KERNEL_PHYS_END: u64 = 0x100_0000;
/// Where the VMM places the module archive.
pub const INITRD_GPA: u64 = 0x100_0000;
/// The end of the low area the guest kernel maps at [`KERNEL_VIRT_OFFSET`] for boot
/// structures and the control channel (everything below the kernel image).
pub const LOW_AREA_END: u64 = KERNEL_PHYS_START;

/// Virtual address of guest-physical 0 in the kernel's upper-half mapping; the kernel is
/// linked at `KERNEL_VIRT_OFFSET + KERNEL_PHYS_START` (the top 2 GiB, as `-mcmodel=kernel`
/// requires).
pub const KERNEL_VIRT_OFFSET: u64 = 0xffff_ffff_8000_0000;
/// How much physical memory the boot page tables map at [`KERNEL_VIRT_OFFSET`].
pub const BOOT_MAPPED_SIZE: u64 = 0x4000_0000;

/// Smallest guest RAM kmodlab accepts.
pub const MIN_RAM: u64 = 64 << 20;
/// Largest guest RAM kmodlab accepts: RAM is one slot from guest-physical 0 and must stay
/// below [`KVM_TSS_GPA`].
pub const MAX_RAM: u64 = 3 << 30;

/// Three pages of guest-physical address space above RAM that Intel VMX needs for its
/// real-mode TSS (`KVM_SET_TSS_ADDR`); never RAM, never touched by the guest.
pub const KVM_TSS_GPA: u64 = 0xfffb_d000;

// Invariants the VMM and the kernel rely on, checked at compile time.
const _: () = {
    assert!(
        INITRD_GPA >= KERNEL_PHYS_END,
        "the archive must not overlap the kernel"
    );
    assert!(
        MIN_RAM > INITRD_GPA,
        "RAM must extend past the archive's start"
    );
    assert!(
        MAX_RAM <= KVM_TSS_GPA,
        "RAM must stay below the VMX TSS pages"
    );
    assert!(
        KERNEL_PHYS_END <= BOOT_MAPPED_SIZE,
        "the boot mapping must cover the kernel"
    );
    // PML4 slot 511, the top 2 GiB: what -mcmodel=kernel needs, and a slot kvm_pvm runs
    // natively.
    assert!((KERNEL_VIRT_OFFSET >> 39) & 0x1ff == 511);
    assert!(KERNEL_VIRT_OFFSET >= 0xffff_ffff_8000_0000);
};

/// A named guest-physical range, for overlap checks and for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// What it is.
    pub name: &'static str,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// Every fixed region of the layout, in address order.
pub const FIXED_REGIONS: &[Region] = &[
    Region {
        name: "gdt",
        start: GDT_GPA,
        end: GDT_GPA + PAGE_SIZE,
    },
    Region {
        name: "tss",
        start: TSS_GPA,
        end: TSS_GPA + PAGE_SIZE,
    },
    Region {
        name: "vif page",
        start: VIF_PAGE_GPA,
        end: VIF_PAGE_GPA + PAGE_SIZE,
    },
    Region {
        name: "boot info",
        start: BOOT_INFO_GPA,
        end: BOOT_INFO_GPA + PAGE_SIZE,
    },
    Region {
        name: "status page",
        start: STATUS_GPA,
        end: STATUS_GPA + PAGE_SIZE,
    },
    Region {
        name: "boot pml4",
        start: BOOT_PML4_GPA,
        end: BOOT_PML4_GPA + PAGE_SIZE,
    },
    Region {
        name: "boot pdpt",
        start: BOOT_PDPT_GPA,
        end: BOOT_PDPT_GPA + PAGE_SIZE,
    },
    Region {
        name: "boot pd",
        start: BOOT_PD_GPA,
        end: BOOT_PD_GPA + PAGE_SIZE,
    },
    Region {
        name: "boot stack",
        start: BOOT_STACK_BOTTOM_GPA,
        end: BOOT_STACK_TOP_GPA,
    },
    Region {
        name: "control channel",
        start: CONTROL_GPA,
        end: CONTROL_GPA + CONTROL_SIZE,
    },
    Region {
        name: "kernel image",
        start: KERNEL_PHYS_START,
        end: KERNEL_PHYS_END,
    },
];

/// Rounds `v` up to a multiple of [`PAGE_SIZE`]; `None` on overflow.
pub const fn page_align_up(v: u64) -> Option<u64> {
    match v.checked_add(PAGE_SIZE - 1) {
        Some(x) => Some(x & !(PAGE_SIZE - 1)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_regions_are_sorted_page_aligned_and_disjoint() {
        for r in FIXED_REGIONS {
            assert!(r.start < r.end, "{} is empty", r.name);
            assert_eq!(r.start % PAGE_SIZE, 0, "{} start unaligned", r.name);
            assert_eq!(r.end % PAGE_SIZE, 0, "{} end unaligned", r.name);
        }
        for pair in FIXED_REGIONS.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "{} overlaps {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn page_zero_is_not_used() {
        assert!(FIXED_REGIONS.iter().all(|r| r.start >= PAGE_SIZE));
    }

    #[test]
    fn low_area_holds_everything_below_the_kernel() {
        for r in FIXED_REGIONS.iter().filter(|r| r.name != "kernel image") {
            assert!(r.end <= LOW_AREA_END, "{} is above the low area", r.name);
        }
    }

    #[test]
    fn page_align_up_rounds_and_detects_overflow() {
        assert_eq!(page_align_up(0), Some(0));
        assert_eq!(page_align_up(1), Some(PAGE_SIZE));
        assert_eq!(page_align_up(PAGE_SIZE), Some(PAGE_SIZE));
        assert_eq!(page_align_up(u64::MAX), None);
    }
}
