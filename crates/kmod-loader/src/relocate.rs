//! Steps 4 and 5, **copy** and **relocate**: fill the caller's region memory with the
//! sections' contents, then patch it.
//!
//! The caller owns the memory: it passes each region as a base virtual address (where the
//! region will run) and a byte slice to write (the same memory in a kernel; a `Vec` on the
//! host). Every write goes through a range-checked sub-slice.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use object::elf;

use crate::counts::{CopyCounts, RelocateCounts};
use crate::error::{Error, SectionRef};
use crate::layout::{GOT_SLOT_SIZE, Layout};
use crate::resolve::{Resolution, Source};
use crate::validate::{Definition, Module, PAGE_SIZE, RegionKind};

/// The relocation types the loader applies (x86-64 psABI names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelocationKind {
    /// R_X86_64_NONE: nothing.
    None,
    /// R_X86_64_64: `S + A`, 64 bits.
    Abs64,
    /// R_X86_64_32: `S + A`, must fit 32 bits zero-extended.
    Abs32,
    /// R_X86_64_32S: `S + A`, must fit 32 bits sign-extended.
    Abs32S,
    /// R_X86_64_PC32: `S + A - P`, signed 32 bits.
    Pc32,
    /// R_X86_64_PLT32: `L + A - P`; without PLTs, `L = S`.
    Plt32,
    /// R_X86_64_PC64: `S + A - P`, 64 bits.
    Pc64,
    /// R_X86_64_GOTPCREL: `G + GOT + A - P`, signed 32 bits.
    GotPcRel,
    /// R_X86_64_GOTPCRELX: as GOTPCREL (relaxable; applied unrelaxed).
    GotPcRelX,
    /// R_X86_64_REX_GOTPCRELX: as GOTPCREL (relaxable; applied unrelaxed).
    RexGotPcRelX,
}

impl RelocationKind {
    /// Every kind, in ELF type order.
    pub const ALL: [Self; 10] = [
        Self::None,
        Self::Abs64,
        Self::Pc32,
        Self::Plt32,
        Self::GotPcRel,
        Self::Abs32,
        Self::Abs32S,
        Self::Pc64,
        Self::GotPcRelX,
        Self::RexGotPcRelX,
    ];

    /// The kind for an ELF `r_type`, if the loader supports it.
    pub fn from_elf(r_type: u32) -> Option<Self> {
        const NONE: u32 = elf::R_X86_64_NONE.0;
        const R64: u32 = elf::R_X86_64_64.0;
        const R32: u32 = elf::R_X86_64_32.0;
        const R32S: u32 = elf::R_X86_64_32S.0;
        const PC32: u32 = elf::R_X86_64_PC32.0;
        const PLT32: u32 = elf::R_X86_64_PLT32.0;
        const PC64: u32 = elf::R_X86_64_PC64.0;
        const GOTPCREL: u32 = elf::R_X86_64_GOTPCREL.0;
        const GOTPCRELX: u32 = elf::R_X86_64_GOTPCRELX.0;
        const REX_GOTPCRELX: u32 = elf::R_X86_64_REX_GOTPCRELX.0;
        Some(match r_type {
            NONE => Self::None,
            R64 => Self::Abs64,
            R32 => Self::Abs32,
            R32S => Self::Abs32S,
            PC32 => Self::Pc32,
            PLT32 => Self::Plt32,
            PC64 => Self::Pc64,
            GOTPCREL => Self::GotPcRel,
            GOTPCRELX => Self::GotPcRelX,
            REX_GOTPCRELX => Self::RexGotPcRelX,
            _ => return None,
        })
    }

    /// The ELF `r_type`.
    pub fn elf_type(self) -> u32 {
        match self {
            Self::None => elf::R_X86_64_NONE.0,
            Self::Abs64 => elf::R_X86_64_64.0,
            Self::Abs32 => elf::R_X86_64_32.0,
            Self::Abs32S => elf::R_X86_64_32S.0,
            Self::Pc32 => elf::R_X86_64_PC32.0,
            Self::Plt32 => elf::R_X86_64_PLT32.0,
            Self::Pc64 => elf::R_X86_64_PC64.0,
            Self::GotPcRel => elf::R_X86_64_GOTPCREL.0,
            Self::GotPcRelX => elf::R_X86_64_GOTPCRELX.0,
            Self::RexGotPcRelX => elf::R_X86_64_REX_GOTPCRELX.0,
        }
    }

    /// The psABI name.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "R_X86_64_NONE",
            Self::Abs64 => "R_X86_64_64",
            Self::Abs32 => "R_X86_64_32",
            Self::Abs32S => "R_X86_64_32S",
            Self::Pc32 => "R_X86_64_PC32",
            Self::Plt32 => "R_X86_64_PLT32",
            Self::Pc64 => "R_X86_64_PC64",
            Self::GotPcRel => "R_X86_64_GOTPCREL",
            Self::GotPcRelX => "R_X86_64_GOTPCRELX",
            Self::RexGotPcRelX => "R_X86_64_REX_GOTPCRELX",
        }
    }

    /// Bytes the relocation writes.
    pub fn width(self) -> u64 {
        match self {
            Self::None => 0,
            Self::Abs64 | Self::Pc64 => 8,
            _ => 4,
        }
    }

    /// Whether it goes through a GOT slot.
    pub fn uses_got(self) -> bool {
        matches!(self, Self::GotPcRel | Self::GotPcRelX | Self::RexGotPcRelX)
    }
}

impl fmt::Display for RelocationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The inputs of one relocation, as the psABI names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelocationInputs {
    /// `S`: the symbol's address.
    pub symbol: u64,
    /// `A`: the addend.
    pub addend: i64,
    /// `P`: the address of the patched field.
    pub place: u64,
    /// `G + GOT`: the address of the symbol's GOT slot (GOT kinds only).
    pub got_slot: u64,
}

/// The bytes a relocation writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patch {
    /// R_X86_64_NONE writes nothing.
    Nothing,
    /// A 32-bit field, little-endian.
    Bytes4([u8; 4]),
    /// A 64-bit field, little-endian.
    Bytes8([u8; 8]),
}

impl Patch {
    /// The bytes to write.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Nothing => &[],
            Self::Bytes4(b) => b,
            Self::Bytes8(b) => b,
        }
    }
}

/// Computes one relocation. `Err(value)` is a 32-bit result that does not fit its field.
///
/// Address arithmetic is modulo 2^64, as in Linux's `apply_relocate_add` and in linkers. A
/// 64-bit field takes the result as is; a 32-bit field must reproduce it exactly when the CPU
/// extends it back to 64 bits (zero-extension for R_X86_64_32, sign-extension for the
/// others), otherwise the relocation is refused, never truncated.
pub fn compute(kind: RelocationKind, inputs: RelocationInputs) -> Result<Patch, i128> {
    let symbol_plus_addend = inputs.symbol.wrapping_add_signed(inputs.addend);
    let pc_relative = |target: u64| target.wrapping_sub(inputs.place);
    // Reinterpreting the 64-bit result as two's complement is the point: a kernel address
    // such as 0xffff_ffff_8100_0000 is the sign-extension of a negative 32-bit value.
    let signed32 = |value: u64| -> Result<Patch, i128> {
        let value = value as i64;
        i32::try_from(value)
            .map(|v| Patch::Bytes4(v.to_le_bytes()))
            .map_err(|_| i128::from(value))
    };
    match kind {
        RelocationKind::None => Ok(Patch::Nothing),
        RelocationKind::Abs64 => Ok(Patch::Bytes8(symbol_plus_addend.to_le_bytes())),
        RelocationKind::Pc64 => Ok(Patch::Bytes8(pc_relative(symbol_plus_addend).to_le_bytes())),
        RelocationKind::Abs32 => u32::try_from(symbol_plus_addend)
            .map(|v| Patch::Bytes4(v.to_le_bytes()))
            .map_err(|_| i128::from(symbol_plus_addend)),
        RelocationKind::Abs32S => signed32(symbol_plus_addend),
        RelocationKind::Pc32 | RelocationKind::Plt32 => signed32(pc_relative(symbol_plus_addend)),
        RelocationKind::GotPcRel | RelocationKind::GotPcRelX | RelocationKind::RexGotPcRelX => {
            signed32(pc_relative(
                inputs.got_slot.wrapping_add_signed(inputs.addend),
            ))
        }
    }
}

/// The memory of one region: where it will run and the bytes to fill.
#[derive(Debug)]
pub struct RegionMemory<'m> {
    /// Virtual address of the region's first byte; page-aligned.
    pub base: u64,
    /// At least the region's layout size; the first `size` bytes are overwritten.
    pub bytes: &'m mut [u8],
}

/// The caller's memory for both regions.
#[derive(Debug)]
pub struct Regions<'m> {
    /// Core region.
    pub core: RegionMemory<'m>,
    /// Init region (may be empty when the layout's init size is 0).
    pub init: RegionMemory<'m>,
}

/// The base addresses of both regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionBases {
    /// Core region base.
    pub core: u64,
    /// Init region base.
    pub init: u64,
}

impl RegionBases {
    /// The base of `region`.
    pub fn get(&self, region: RegionKind) -> u64 {
        match region {
            RegionKind::Core => self.core,
            RegionKind::Init => self.init,
        }
    }
}

impl Regions<'_> {
    /// The regions' base addresses.
    pub fn bases(&self) -> RegionBases {
        RegionBases {
            core: self.core.base,
            init: self.init.base,
        }
    }

    fn len(&self, region: RegionKind) -> u64 {
        let bytes = match region {
            RegionKind::Core => &self.core.bytes,
            RegionKind::Init => &self.init.bytes,
        };
        u64::try_from(bytes.len()).unwrap_or(u64::MAX)
    }

    fn get_mut(&mut self, region: RegionKind) -> &mut [u8] {
        match region {
            RegionKind::Core => self.core.bytes,
            RegionKind::Init => self.init.bytes,
        }
    }

    /// Checks that each region's memory is large enough and its base page-aligned, with the
    /// whole region addressable without wrapping.
    pub fn check(&self, layout: &Layout) -> Result<(), Error> {
        for (region, memory) in [
            (RegionKind::Core, &self.core),
            (RegionKind::Init, &self.init),
        ] {
            let needed = layout.region(region).size;
            let provided = u64::try_from(memory.bytes.len()).unwrap_or(u64::MAX);
            if provided < needed {
                return Err(Error::RegionTooSmall {
                    region,
                    needed,
                    provided,
                });
            }
            if memory.base % PAGE_SIZE != 0 || memory.base.checked_add(needed).is_none() {
                return Err(Error::BadRegionBase {
                    region,
                    base: memory.base,
                    size: needed,
                });
            }
        }
        Ok(())
    }
}

fn region_slice<'a>(
    regions: &'a mut Regions<'_>,
    region: RegionKind,
    offset: u64,
    len: u64,
) -> Option<&'a mut [u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    regions.get_mut(region).get_mut(start..end)
}

/// Copies every loaded section into its region and zeroes the rest (NOBITS, padding, GOT).
///
/// Must run before [`relocate`], which patches the copied contents.
pub fn copy_sections(
    module: &Module<'_>,
    layout: &Layout,
    regions: &mut Regions<'_>,
) -> Result<CopyCounts, Error> {
    regions.check(layout)?;
    let mut counts = CopyCounts::default();
    for region in [RegionKind::Core, RegionKind::Init] {
        let size = layout.region(region).size;
        // Clearing the whole region first means no byte of whatever the memory held before
        // (padding included) is visible to the module.
        if let Some(bytes) = region_slice(regions, region, 0, size) {
            bytes.fill(0);
            counts.bytes_zeroed = counts.bytes_zeroed.saturating_add(size);
        }
    }
    for (index, placement) in layout.placements() {
        let Some(section) = module.section(index) else {
            continue;
        };
        counts.sections = counts.sections.saturating_add(1);
        if section.is_nobits() {
            continue;
        }
        let len = u64::try_from(section.data.len()).unwrap_or(u64::MAX);
        let provided = regions.len(placement.region);
        let destination = region_slice(regions, placement.region, placement.offset, len).ok_or(
            Error::RegionTooSmall {
                region: placement.region,
                needed: placement.offset.saturating_add(len),
                provided,
            },
        )?;
        destination.copy_from_slice(section.data);
        counts.bytes_copied = counts.bytes_copied.saturating_add(len);
    }
    Ok(counts)
}

/// The final address of every symbol of a module, by symbol index; `None` for a symbol that
/// has no address (in a section that is not loaded, or an ignored undefined symbol).
#[derive(Clone, Debug)]
pub struct SymbolAddresses {
    addresses: Vec<Option<u64>>,
}

impl SymbolAddresses {
    /// Computes the addresses for regions placed at `bases`.
    pub fn new(
        module: &Module<'_>,
        layout: &Layout,
        resolution: &Resolution,
        bases: RegionBases,
    ) -> Self {
        let mut addresses: Vec<Option<u64>> = module
            .symbols()
            .iter()
            .map(|sym| match sym.definition {
                Definition::Undefined => None,
                Definition::Absolute => Some(sym.value),
                Definition::Section(index) => {
                    let placement = layout.placement(index)?;
                    bases
                        .get(placement.region)
                        .checked_add(placement.offset)?
                        .checked_add(sym.value)
                }
            })
            .collect();
        // The null symbol: relocations against index 0 use S = 0.
        if let Some(first) = addresses.first_mut() {
            *first = Some(0);
        }
        for resolved in resolution.symbols() {
            let address = match resolved.source {
                Source::Provider(_) | Source::WeakUnresolved => Some(resolved.address),
                Source::Ignored => None,
            };
            if let Some(slot) = usize::try_from(resolved.symbol)
                .ok()
                .and_then(|i| addresses.get_mut(i))
            {
                *slot = address;
            }
        }
        Self { addresses }
    }

    /// The address of symbol `index`.
    pub fn get(&self, index: u32) -> Option<u64> {
        self.addresses
            .get(usize::try_from(index).ok()?)
            .copied()
            .flatten()
    }
}

/// Fills the GOT and applies every relocation of every loaded section, in place.
///
/// Run [`copy_sections`] first. `resolution` must come from the same module.
pub fn relocate(
    module: &Module<'_>,
    layout: &Layout,
    resolution: &Resolution,
    regions: &mut Regions<'_>,
) -> Result<RelocateCounts, Error> {
    regions.check(layout)?;
    let bases = regions.bases();
    let addresses = SymbolAddresses::new(module, layout, resolution, bases);
    let mut counts = RelocateCounts::default();
    let unresolved = |target: u32, offset: u64, symbol: u32| Error::UnresolvedSymbolReferenced {
        section: module.section_ref(target),
        offset,
        symbol: String::from(module.symbol_name(symbol)),
    };

    let got_base = bases.core.checked_add(layout.got_offset()).unwrap_or(0);
    for (slot_index, &symbol) in layout.got_symbols().iter().enumerate() {
        let address = addresses
            .get(symbol)
            .ok_or_else(|| Error::UnresolvedSymbolReferenced {
                section: SectionRef {
                    index: 0,
                    name: String::from("(GOT)"),
                },
                offset: layout.got_offset(),
                symbol: String::from(module.symbol_name(symbol)),
            })?;
        let offset = u64::try_from(slot_index)
            .ok()
            .and_then(|i| i.checked_mul(GOT_SLOT_SIZE))
            .and_then(|o| o.checked_add(layout.got_offset()))
            .unwrap_or(u64::MAX);
        let provided = regions.len(RegionKind::Core);
        let slot = region_slice(regions, RegionKind::Core, offset, GOT_SLOT_SIZE).ok_or(
            Error::RegionTooSmall {
                region: RegionKind::Core,
                needed: offset.saturating_add(GOT_SLOT_SIZE),
                provided,
            },
        )?;
        slot.copy_from_slice(&address.to_le_bytes());
        counts.got_slots = counts.got_slots.saturating_add(1);
    }

    for section in module.relocation_sections() {
        let target = section.target;
        let Some(placement) = layout.placement(target) else {
            continue;
        };
        let target_base = bases
            .get(placement.region)
            .checked_add(placement.offset)
            .unwrap_or(0);
        for relocation in section.relocations() {
            let kind = relocation.kind;
            if kind == RelocationKind::None {
                counts.applied.add(kind);
                continue;
            }
            let symbol = addresses
                .get(relocation.symbol)
                .ok_or_else(|| unresolved(target, relocation.offset, relocation.symbol))?;
            let got_slot = if kind.uses_got() {
                layout
                    .got_slot_offset(relocation.symbol)
                    .and_then(|o| bases.core.checked_add(o))
                    .ok_or_else(|| unresolved(target, relocation.offset, relocation.symbol))?
            } else {
                got_base
            };
            let inputs = RelocationInputs {
                symbol,
                addend: relocation.addend,
                place: target_base.wrapping_add(relocation.offset),
                got_slot,
            };
            let patch = compute(kind, inputs).map_err(|value| Error::RelocationOverflow {
                section: module.section_ref(target),
                offset: relocation.offset,
                kind,
                symbol: String::from(module.symbol_name(relocation.symbol)),
                value,
            })?;
            let bytes = patch.bytes();
            let field_offset = placement.offset.saturating_add(relocation.offset);
            let field = region_slice(
                regions,
                placement.region,
                field_offset,
                u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            )
            .ok_or_else(|| Error::RelocationOutsideSection {
                section: module.section_ref(target),
                offset: relocation.offset,
                width: kind.width(),
                size: placement.size,
            })?;
            field.copy_from_slice(bytes);
            counts.applied.add(kind);
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL_FN: u64 = 0xffff_ffff_8123_4560;
    const PLACE: u64 = 0xffff_ffff_c000_1004;

    fn inputs(symbol: u64, addend: i64, place: u64) -> RelocationInputs {
        RelocationInputs {
            symbol,
            addend,
            place,
            got_slot: 0,
        }
    }

    fn bytes(kind: RelocationKind, input: RelocationInputs) -> Vec<u8> {
        compute(kind, input)
            .unwrap_or_else(|v| panic!("{kind} overflowed: {v:#x}"))
            .bytes()
            .to_vec()
    }

    #[test]
    fn none_writes_nothing() {
        assert_eq!(
            compute(RelocationKind::None, inputs(KERNEL_FN, 5, PLACE)),
            Ok(Patch::Nothing)
        );
    }

    #[test]
    fn abs64_is_symbol_plus_addend() {
        // 0xffffffff81234560 + 0x10
        assert_eq!(
            bytes(RelocationKind::Abs64, inputs(KERNEL_FN, 0x10, PLACE)),
            [0x70, 0x45, 0x23, 0x81, 0xff, 0xff, 0xff, 0xff]
        );
        // Negative addend; wraps modulo 2^64 like a linker.
        assert_eq!(
            bytes(RelocationKind::Abs64, inputs(0, -1, PLACE)),
            [0xff; 8]
        );
    }

    #[test]
    fn abs32_is_zero_extended() {
        assert_eq!(
            bytes(RelocationKind::Abs32, inputs(0x1000, 0x234, PLACE)),
            [0x34, 0x12, 0x00, 0x00]
        );
        assert_eq!(
            bytes(RelocationKind::Abs32, inputs(0xffff_fff0, 0xf, PLACE)),
            [0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn abs32_overflow_is_an_error() {
        // One past u32::MAX.
        assert_eq!(
            compute(RelocationKind::Abs32, inputs(0xffff_fff0, 0x10, PLACE)),
            Err(0x1_0000_0000)
        );
        // A kernel address does not zero-extend.
        assert!(compute(RelocationKind::Abs32, inputs(KERNEL_FN, 0, PLACE)).is_err());
        // Below zero.
        assert!(compute(RelocationKind::Abs32, inputs(0, -1, PLACE)).is_err());
    }

    #[test]
    fn abs32s_is_sign_extended() {
        // A kernel address is the sign-extension of 0x81234560.
        assert_eq!(
            bytes(RelocationKind::Abs32S, inputs(KERNEL_FN, 0, PLACE)),
            [0x60, 0x45, 0x23, 0x81]
        );
        assert_eq!(
            bytes(RelocationKind::Abs32S, inputs(0x7fff_fff0, 0xf, PLACE)),
            [0xff, 0xff, 0xff, 0x7f]
        );
    }

    #[test]
    fn abs32s_overflow_is_an_error() {
        assert_eq!(
            compute(RelocationKind::Abs32S, inputs(0x7fff_fff0, 0x10, PLACE)),
            Err(0x8000_0000)
        );
        // Just below the sign-extended range: 0xffffffff7fffffff.
        assert_eq!(
            compute(
                RelocationKind::Abs32S,
                inputs(0xffff_ffff_8000_0000, -1, PLACE)
            ),
            Err(-0x8000_0001)
        );
    }

    #[test]
    fn pc32_and_plt32_are_pc_relative() {
        for kind in [RelocationKind::Pc32, RelocationKind::Plt32] {
            // call rel32: S - 4 - P = 0x...8123_4560 - 4 - 0x...c000_1004 = -0x3edc_caa8
            assert_eq!(
                bytes(kind, inputs(KERNEL_FN, -4, PLACE)),
                (-0x3edc_caa8i32).to_le_bytes()
            );
            assert_eq!(
                bytes(kind, inputs(PLACE + 0x100, -4, PLACE)),
                [0xfc, 0x00, 0x00, 0x00]
            );
        }
    }

    #[test]
    fn pc32_limits() {
        // Exactly i32::MAX and i32::MIN fit; one more does not.
        const PLACE: u64 = 0xffff_ffff_0000_0000;
        assert_eq!(
            bytes(RelocationKind::Pc32, inputs(PLACE + 0x7fff_ffff, 0, PLACE)),
            [0xff, 0xff, 0xff, 0x7f]
        );
        assert_eq!(
            bytes(RelocationKind::Pc32, inputs(PLACE - 0x8000_0000, 0, PLACE)),
            [0x00, 0x00, 0x00, 0x80]
        );
        assert_eq!(
            compute(RelocationKind::Pc32, inputs(PLACE + 0x8000_0000, 0, PLACE)),
            Err(0x8000_0000)
        );
        assert_eq!(
            compute(
                RelocationKind::Plt32,
                inputs(PLACE - 0x8000_0000, -1, PLACE)
            ),
            Err(-0x8000_0001)
        );
        // A user-space address is far out of reach of a kernel module.
        assert!(compute(RelocationKind::Plt32, inputs(0x4000_0000_0000, -4, PLACE)).is_err());
    }

    #[test]
    fn pc64_is_pc_relative_and_wraps() {
        assert_eq!(
            bytes(RelocationKind::Pc64, inputs(KERNEL_FN, 0, PLACE)),
            (KERNEL_FN.wrapping_sub(PLACE)).to_le_bytes()
        );
        assert_eq!(
            bytes(RelocationKind::Pc64, inputs(PLACE + 8, 0, PLACE)),
            [8, 0, 0, 0, 0, 0, 0, 0]
        );
        // 4 GiB away: fine for 64 bits.
        assert_eq!(
            bytes(RelocationKind::Pc64, inputs(0x1_0000_0000, 0, 0)),
            [0, 0, 0, 0, 1, 0, 0, 0]
        );
    }

    #[test]
    fn got_kinds_point_at_the_slot_not_the_symbol() {
        const PLACE: u64 = 0xffff_ffff_0000_0000;
        for kind in [
            RelocationKind::GotPcRel,
            RelocationKind::GotPcRelX,
            RelocationKind::RexGotPcRelX,
        ] {
            let input = RelocationInputs {
                symbol: KERNEL_FN,
                addend: -4,
                place: PLACE,
                got_slot: PLACE + 0x2000,
            };
            // G + GOT + A - P = 0x2000 - 4
            assert_eq!(bytes(kind, input), [0xfc, 0x1f, 0x00, 0x00]);
            let far = RelocationInputs {
                got_slot: PLACE + 0x8000_0004,
                ..input
            };
            assert_eq!(compute(kind, far), Err(0x8000_0000));
        }
    }

    #[test]
    fn kinds_round_trip_through_elf_types() {
        for kind in RelocationKind::ALL {
            assert_eq!(RelocationKind::from_elf(kind.elf_type()), Some(kind));
            assert_eq!(kind.width() as usize, {
                let got = RelocationInputs {
                    symbol: 0,
                    addend: 0,
                    place: 0,
                    got_slot: 0,
                };
                compute(kind, got).unwrap().bytes().len()
            });
        }
        for unsupported in [
            3, 5, 6, 7, 8, 12, 13, 14, 15, 16, 19, 23, 25, 26, 37, 43, 1000,
        ] {
            assert_eq!(RelocationKind::from_elf(unsupported), None, "{unsupported}");
        }
    }
}
