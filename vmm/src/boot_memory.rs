//! What guest memory is made of at boot: which guest-physical ranges are fresh RAM, which are
//! the executable's own read-only pages (the kernel's text and rodata, the module archive),
//! and which bytes of the kernel ELF are copied where.
//!
//! On kvm_pvm hosts (themselves VMs) the first write to a fresh anonymous page costs
//! ≈ 3.8 µs, so copying the 0.6 MB of kernel text and rodata and the 5.4 MB archive into new
//! guest RAM was most of the VMM's share of a boot. The embedded images are already
//! file-backed page cache, so the VMM hands their pages to the guest as read-only memory slots
//! instead (`KVM_MEM_READONLY`: a guest write exits to the VMM and ends the run as the guest's
//! fault). Only what the kernel writes (its data, its bss) and what is not page-aligned in the
//! file is copied.

use std::ops::Range;

use kmodlab_abi::layout::{KERNEL_PHYS_END, KERNEL_PHYS_START, PAGE_SIZE};

/// Why the kernel image cannot be loaded (the VMM's input is at fault: rebuild kmodlab).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelLoadError {
    /// Not an ELF64 little-endian x86-64 executable.
    #[error("not an ELF64 little-endian x86-64 executable")]
    NotElf,
    /// A header lies outside the file.
    #[error("truncated ELF file: {0} lies outside its {1} bytes")]
    Truncated(&'static str, usize),
    /// A segment's file bytes lie outside the file, or its file size exceeds its memory size.
    #[error(
        "segment {index} has bad sizes (file [{offset:#x}, +{filesz:#x}), memory size {memsz:#x})"
    )]
    BadSegment {
        /// Program header index.
        index: usize,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A segment lies outside the kernel's physical range.
    #[error(
        "segment [{start:#x}, {end:#x}) is outside [{KERNEL_PHYS_START:#x}, {KERNEL_PHYS_END:#x})"
    )]
    OutOfRange {
        /// First byte.
        start: u64,
        /// One past the last.
        end: u64,
    },
    /// Two segments overlap.
    #[error("segments [{0:#x}, …) and [{1:#x}, …) overlap")]
    Overlap(u64, u64),
    /// No loadable segment.
    #[error("no loadable segment")]
    Empty,
}

/// A loadable segment of the kernel ELF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address (`p_paddr`).
    pub paddr: u64,
    /// Bytes in memory (`p_memsz`); past `filesz` they are zero.
    pub memsz: u64,
    /// File offset of its bytes (`p_offset`).
    pub offset: u64,
    /// Bytes in the file (`p_filesz`).
    pub filesz: u64,
    /// Whether the kernel may write it (`PF_W`).
    pub writable: bool,
}

/// The entry point and the loadable segments of `image`, sorted by address, each checked to
/// lie in the file and in `[KERNEL_PHYS_START, KERNEL_PHYS_END)`, none overlapping. The
/// headers are read with the `object` crate (the loader's ELF reader too).
pub fn segments(image: &[u8]) -> Result<(u64, Vec<Segment>), KernelLoadError> {
    use object::elf::{ELFDATA2LSB, EM_X86_64, FileHeader64, PF_W, PT_LOAD};
    use object::read::elf::{FileHeader, ProgramHeader};

    // ELF64, little-endian, version 1 (what `parse` checks besides the magic); x86-64.
    let header = FileHeader64::<object::LittleEndian>::parse(image)
        .ok()
        .filter(|h| h.e_ident.data == ELFDATA2LSB)
        .ok_or(KernelLoadError::NotElf)?;
    let endian = object::LittleEndian;
    if header.e_machine(endian) != EM_X86_64 {
        return Err(KernelLoadError::NotElf);
    }
    let phdrs = header
        .program_headers(endian, image)
        .map_err(|_| KernelLoadError::Truncated("a program header", image.len()))?;
    let entry = header.e_entry(endian);
    let mut out = Vec::new();
    for (index, ph) in phdrs.iter().enumerate() {
        if ph.p_type(endian) != PT_LOAD {
            continue;
        }
        let seg = Segment {
            writable: ph.p_flags(endian).0 & PF_W.0 != 0,
            offset: ph.p_offset(endian),
            paddr: ph.p_paddr(endian),
            filesz: ph.p_filesz(endian),
            memsz: ph.p_memsz(endian),
        };
        let file_end = seg.offset.checked_add(seg.filesz);
        if seg.filesz > seg.memsz || file_end.is_none_or(|e| e > image.len() as u64) {
            return Err(KernelLoadError::BadSegment {
                index,
                offset: seg.offset,
                filesz: seg.filesz,
                memsz: seg.memsz,
            });
        }
        let end = seg.paddr.saturating_add(seg.memsz);
        if seg.paddr < KERNEL_PHYS_START || end > KERNEL_PHYS_END {
            return Err(KernelLoadError::OutOfRange {
                start: seg.paddr,
                end,
            });
        }
        out.push(seg);
    }
    out.sort_by_key(|s| s.paddr);
    for pair in out.windows(2) {
        if pair[0].paddr + pair[0].memsz > pair[1].paddr {
            return Err(KernelLoadError::Overlap(pair[0].paddr, pair[1].paddr));
        }
    }
    if out.is_empty() {
        return Err(KernelLoadError::Empty);
    }
    Ok((entry, out))
}

/// How the kernel gets into guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPlan {
    /// Entry point (`e_entry`).
    pub entry: u64,
    /// One past the last byte of any segment.
    pub end: u64,
    /// Guest-physical pages backed by the image's own bytes at file offset
    /// `mapped_offset` (empty if none): whole pages of read-only segments' file bytes (and of
    /// the file's padding between them), never a byte the kernel may write or expects zero.
    pub mapped: Range<u64>,
    /// File offset of the first byte of `mapped`.
    pub mapped_offset: u64,
    /// Everything else of the segments' file bytes: `(guest-physical address, file range)`.
    /// (What lies past a segment's file bytes is zero: fresh RAM.)
    pub copies: Vec<(u64, Range<usize>)>,
}

/// Plans the load of `image`. With `map_pages`, the longest run of read-only segments from
/// the first one whose file offsets and addresses differ by one page-aligned constant (so
/// that file pages are guest pages) is mapped, up to the last whole page of their file bytes;
/// a segment with bytes past its file bytes (which must read as zero) ends the run.
pub fn plan(image: &[u8], map_pages: bool) -> Result<KernelPlan, KernelLoadError> {
    let (entry, segs) = segments(image)?;
    let end = segs.iter().map(|s| s.paddr + s.memsz).max().unwrap_or(0);
    let mut mapped = segs[0].paddr..segs[0].paddr;
    let mapped_offset = segs[0].offset;
    let aligned = |v: u64| v.is_multiple_of(PAGE_SIZE);
    if map_pages && aligned(segs[0].paddr) && aligned(segs[0].offset) {
        for s in segs.iter().take_while(|s| {
            !s.writable
                && s.offset.wrapping_sub(s.paddr) == mapped_offset.wrapping_sub(mapped.start)
        }) {
            mapped.end = (s.paddr + s.filesz) & !(PAGE_SIZE - 1);
            if s.memsz != s.filesz {
                break;
            }
        }
    }
    let mut copies = Vec::new();
    for s in &segs {
        let from = s.paddr.max(mapped.end.min(s.paddr + s.filesz));
        let to = s.paddr + s.filesz;
        if from < to {
            let file = (s.offset + (from - s.paddr)) as usize..(s.offset + s.filesz) as usize;
            copies.push((from, file));
        }
    }
    Ok(KernelPlan {
        entry,
        end,
        mapped,
        mapped_offset,
        copies,
    })
}

/// The parts of `[0, ram_end)` not in any of `holes` (sorted, disjoint, page-aligned,
/// inside RAM): the guest RAM regions around the read-only slots.
pub fn ram_ranges(ram_end: u64, holes: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut at = 0;
    for h in holes.iter().filter(|h| !h.is_empty()) {
        if h.start > at {
            out.push(at..h.start);
        }
        at = at.max(h.end);
    }
    if at < ram_end {
        out.push(at..ram_end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT_LOAD: u32 = object::elf::PT_LOAD.0;
    const EM_X86_64: u16 = object::elf::EM_X86_64.0;

    /// An ELF64 x86-64 header with `phdrs` (type, flags, offset, paddr, filesz, memsz),
    /// padded to `len` bytes.
    fn elf(phdrs: &[(u32, u32, u64, u64, u64, u64)], len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        b[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&0xffff_ffff_8020_0000u64.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, &(ty, flags, off, paddr, filesz, memsz)) in phdrs.iter().enumerate() {
            let p = 64 + i * 56;
            b[p..p + 4].copy_from_slice(&ty.to_le_bytes());
            b[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
            b[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            b[p + 0x18..p + 0x20].copy_from_slice(&paddr.to_le_bytes());
            b[p + 0x20..p + 0x28].copy_from_slice(&filesz.to_le_bytes());
            b[p + 0x28..p + 0x30].copy_from_slice(&memsz.to_le_bytes());
        }
        b
    }

    /// The layout of the real kernels: text, rodata, data + bss, file offset = paddr - 0x1ff000.
    fn kernel_like() -> Vec<u8> {
        elf(
            &[
                (PT_LOAD, 5, 0x1000, 0x20_0000, 0x7_e8ef, 0x7_e8ef),
                (PT_LOAD, 4, 0x8_0000, 0x27_f000, 0x1_e790, 0x1_e790),
                (PT_LOAD, 6, 0x9_f000, 0x29_e000, 0x1a8, 0x2_88b0),
            ],
            0xa_0000,
        )
    }

    #[test]
    fn maps_text_and_rodata_pages_and_copies_the_rest() {
        let p = plan(&kernel_like(), true).unwrap();
        assert_eq!(p.entry, 0xffff_ffff_8020_0000);
        assert_eq!(p.end, 0x29_e000 + 0x2_88b0);
        assert_eq!(p.mapped, 0x20_0000..0x29_d000);
        assert_eq!(p.mapped_offset, 0x1000);
        assert_eq!(
            p.copies,
            vec![
                (0x29_d000, 0x9_e000..0x9_e790),
                (0x29_e000, 0x9_f000..0x9_f1a8)
            ]
        );
    }

    #[test]
    fn without_mapping_everything_is_copied() {
        let p = plan(&kernel_like(), false).unwrap();
        assert_eq!(p.mapped, 0x20_0000..0x20_0000);
        assert_eq!(
            p.copies,
            vec![
                (0x20_0000, 0x1000..0x7_f8ef),
                (0x27_f000, 0x8_0000..0x9_e790),
                (0x29_e000, 0x9_f000..0x9_f1a8)
            ]
        );
    }

    #[test]
    fn a_read_only_segment_with_zero_fill_ends_the_mapped_run() {
        let image = elf(
            &[
                (PT_LOAD, 5, 0x1000, 0x20_0000, 0x1800, 0x3000),
                (PT_LOAD, 4, 0x4000, 0x20_3000, 0x1000, 0x1000),
            ],
            0x5000,
        );
        let p = plan(&image, true).unwrap();
        assert_eq!(p.mapped, 0x20_0000..0x20_1000);
        assert_eq!(
            p.copies,
            vec![(0x20_1000, 0x2000..0x2800), (0x20_3000, 0x4000..0x5000)]
        );
    }

    #[test]
    fn misaligned_or_writable_first_segments_are_copied_whole() {
        let misaligned = elf(&[(PT_LOAD, 5, 0x1100, 0x20_0000, 0x2000, 0x2000)], 0x4000);
        assert!(plan(&misaligned, true).unwrap().mapped.is_empty());
        let writable = elf(&[(PT_LOAD, 6, 0x1000, 0x20_0000, 0x2000, 0x2000)], 0x4000);
        let p = plan(&writable, true).unwrap();
        assert!(p.mapped.is_empty());
        assert_eq!(p.copies, vec![(0x20_0000, 0x1000..0x3000)]);
    }

    #[test]
    fn a_segment_at_another_offset_is_not_mapped() {
        let image = elf(
            &[
                (PT_LOAD, 5, 0x1000, 0x20_0000, 0x2000, 0x2000),
                (PT_LOAD, 4, 0x3000, 0x20_4000, 0x1000, 0x1000),
            ],
            0x5000,
        );
        let p = plan(&image, true).unwrap();
        assert_eq!(p.mapped, 0x20_0000..0x20_2000);
        assert_eq!(p.copies, vec![(0x20_4000, 0x3000..0x4000)]);
    }

    #[test]
    fn bad_images_are_errors() {
        assert_eq!(segments(b"not an elf"), Err(KernelLoadError::NotElf));
        let mut far = elf(&[], 64);
        far[0x20..0x28].copy_from_slice(&0x1000u64.to_le_bytes());
        far[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(
            segments(&far),
            Err(KernelLoadError::Truncated("a program header", 64))
        );
        assert_eq!(
            segments(&elf(
                &[(PT_LOAD, 5, 0x1000, 0x20_0000, 0x2000, 0x2000)],
                0x2000
            ))
            .unwrap_err()
            .to_string(),
            "segment 0 has bad sizes (file [0x1000, +0x2000), memory size 0x2000)"
        );
        assert_eq!(
            segments(&elf(&[(PT_LOAD, 5, 0x100, 0x10_0000, 0x10, 0x10)], 0x200))
                .unwrap_err()
                .to_string(),
            "segment [0x100000, 0x100010) is outside [0x200000, 0x1000000)"
        );
        assert_eq!(
            segments(&elf(
                &[
                    (PT_LOAD, 5, 0x100, 0x20_0000, 0x10, 0x2000),
                    (PT_LOAD, 4, 0x100, 0x20_1000, 0x10, 0x10)
                ],
                0x200
            )),
            Err(KernelLoadError::Overlap(0x20_0000, 0x20_1000))
        );
        assert_eq!(segments(&elf(&[], 0x200)), Err(KernelLoadError::Empty));
    }

    #[test]
    fn ram_surrounds_the_holes() {
        assert_eq!(ram_ranges(0x1000_0000, &[]), vec![0..0x1000_0000]);
        assert_eq!(
            ram_ranges(
                0x1000_0000,
                &[
                    0x20_0000..0x29_d000,
                    0x29_d000..0x29_d000,
                    0x100_0000..0x153_2000
                ]
            ),
            vec![0..0x20_0000, 0x29_d000..0x100_0000, 0x153_2000..0x1000_0000]
        );
    }
}
