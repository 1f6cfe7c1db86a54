//! The GDT and TSS the guest starts with (and keeps).
//!
//! Selectors follow Linux's layout, which `syscall`/`sysretq` need: kernel code 0x10 and
//! data 0x18 (`STAR[47:32]`), then user 32-bit code 0x23, user data 0x2b and user 64-bit
//! code 0x33 (`STAR[63:48]` = 0x23). The TSS descriptor takes two slots from 0x40.

use kmodlab_abi::layout::{GDT_GPA, KERNEL_VIRT_OFFSET, TSS_GPA};
use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Kernel 64-bit code selector.
pub const KERNEL_CS: u16 = 0x10;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x18;
/// User data selector (with RPL 3).
pub const USER_DS: u16 = 0x2b;
/// User 64-bit code selector (with RPL 3).
pub const USER_CS: u16 = 0x33;
/// TSS selector.
pub const TSS_SELECTOR: u16 = 0x40;
/// Size of the 64-bit TSS; also the I/O map base, meaning "no I/O permission bitmap".
pub const TSS_SIZE: u32 = 104;

/// Builds a code or data descriptor. `flags` holds the access byte in bits 0–7 and the
/// G/DB/L/AVL nibble in bits 12–15, as Intel SDM Vol. 3 §3.4.5 lays out the high word.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
}

/// Builds the two slots of a 64-bit TSS descriptor (busy type, as TR holds it).
pub const fn tss_descriptor(base: u64, limit: u32) -> [u64; 2] {
    let low = gdt_entry(0x008b, base as u32, limit);
    [low, base >> 32]
}

/// The GDT: null, unused, kernel code, kernel data, user code32, user data, user code64,
/// unused, TSS (two slots).
pub fn gdt_table() -> [u64; 10] {
    let [tss_low, tss_high] = tss_descriptor(KERNEL_VIRT_OFFSET + TSS_GPA, TSS_SIZE - 1);
    [
        0,
        0,
        gdt_entry(0xa09b, 0, 0xfffff), // 0x10 kernel code: G, L, P, DPL0, code exec/read
        gdt_entry(0xc093, 0, 0xfffff), // 0x18 kernel data: G, DB, P, DPL0, data read/write
        gdt_entry(0xc0fb, 0, 0xfffff), // 0x20 user code32: G, DB, P, DPL3
        gdt_entry(0xc0f3, 0, 0xfffff), // 0x28 user data: G, DB, P, DPL3
        gdt_entry(0xa0fb, 0, 0xfffff), // 0x30 user code64: G, L, P, DPL3
        0,
        tss_low, // 0x40 TSS
        tss_high,
    ]
}

/// Decodes a descriptor into the form `KVM_SET_SREGS` takes.
pub fn segment_from_entry(entry: u64, selector: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let limit_raw = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    let limit = if g == 1 {
        (limit_raw << 12) | 0xfff
    } else {
        limit_raw
    };
    kvm_segment {
        base,
        limit,
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        padding: 0,
        unusable: if (entry >> 47) & 1 == 0 { 1 } else { 0 },
    }
}

/// The TSS as the guest first sees it: all stacks zero (the guest fills them), I/O map base
/// past the end (no I/O bitmap: user-mode port access faults).
pub fn tss_bytes() -> [u8; TSS_SIZE as usize] {
    let mut tss = [0u8; TSS_SIZE as usize];
    tss[102..104].copy_from_slice(&(TSS_SIZE as u16).to_le_bytes());
    tss
}

/// Writes the GDT and TSS into guest memory.
pub fn write(mem: &GuestMemoryMmap) -> Result<(), vm_memory::GuestMemoryError> {
    let mut bytes = Vec::with_capacity(80);
    for entry in gdt_table() {
        bytes.extend_from_slice(&entry.to_le_bytes());
    }
    mem.write_slice(&bytes, GuestAddress(GDT_GPA))?;
    mem.write_slice(&tss_bytes(), GuestAddress(TSS_GPA))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_have_exact_bits() {
        // Same values Linux's GDT_ENTRY_INIT produces for these flags.
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(0xc0fb, 0, 0xfffff), 0x00cf_fb00_0000_ffff);
        assert_eq!(gdt_entry(0xc0f3, 0, 0xfffff), 0x00cf_f300_0000_ffff);
        assert_eq!(gdt_entry(0xa0fb, 0, 0xfffff), 0x00af_fb00_0000_ffff);
    }

    #[test]
    fn tss_descriptor_splits_the_base() {
        let [low, high] = tss_descriptor(0xffff_ffff_8000_2000, 103);
        assert_eq!(low, 0x8000_8b00_2000_0067);
        assert_eq!(high, 0xffff_ffff);
    }

    #[test]
    fn selectors_match_table_slots_and_star() {
        let t = gdt_table();
        assert_eq!(t[usize::from(KERNEL_CS) / 8], gdt_entry(0xa09b, 0, 0xfffff));
        assert_eq!(t[usize::from(KERNEL_DS) / 8], gdt_entry(0xc093, 0, 0xfffff));
        assert_eq!(t[usize::from(USER_DS) / 8], gdt_entry(0xc0f3, 0, 0xfffff));
        assert_eq!(t[usize::from(USER_CS) / 8], gdt_entry(0xa0fb, 0, 0xfffff));
        // sysretq: CS = STAR[63:48] + 16, SS = STAR[63:48] + 8, with STAR[63:48] = 0x23.
        assert_eq!(0x23 + 16, USER_CS);
        assert_eq!(0x23 + 8, USER_DS);
        // syscall: SS = STAR[47:32] + 8.
        assert_eq!(KERNEL_CS + 8, KERNEL_DS);
    }

    #[test]
    fn segments_decode_from_descriptors() {
        let cs = segment_from_entry(gdt_entry(0xa09b, 0, 0xfffff), KERNEL_CS);
        assert_eq!(
            (cs.type_, cs.present, cs.dpl, cs.s, cs.l, cs.db, cs.g),
            (0xb, 1, 0, 1, 1, 0, 1)
        );
        assert_eq!((cs.base, cs.limit, cs.unusable), (0, 0xffff_ffff, 0));
        let ds = segment_from_entry(gdt_entry(0xc093, 0, 0xfffff), KERNEL_DS);
        assert_eq!((ds.type_, ds.db, ds.l, ds.s), (3, 1, 0, 1));
        let t = gdt_table();
        let tr = segment_from_entry(t[8], TSS_SELECTOR);
        assert_eq!(tr.base, 0x8000_2000 & 0xffff_ffff);
        assert_eq!((tr.type_, tr.s, tr.limit, tr.g), (0xb, 0, 103, 0));
        assert_eq!(segment_from_entry(0, 0).unusable, 1);
    }

    #[test]
    fn tss_has_no_io_bitmap() {
        let tss = tss_bytes();
        assert_eq!(&tss[102..104], &[104, 0]);
        assert!(tss[..102].iter().all(|&b| b == 0));
    }

    #[test]
    fn writes_exact_bytes_to_guest_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        write(&mem).unwrap();
        let mut gdt = [0u8; 80];
        mem.read_slice(&mut gdt, GuestAddress(GDT_GPA)).unwrap();
        assert_eq!(gdt[16..24], 0x00af_9b00_0000_ffffu64.to_le_bytes());
        assert_eq!(gdt[64..72], 0x8000_8b00_2000_0067u64.to_le_bytes());
        assert_eq!(gdt[72..80], 0xffff_ffffu64.to_le_bytes());
        let mut tss = [0u8; 104];
        mem.read_slice(&mut tss, GuestAddress(TSS_GPA)).unwrap();
        assert_eq!(tss, tss_bytes());
    }
}
