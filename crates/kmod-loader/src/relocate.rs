//! Steps 4 and 5, **copy** and **relocate**: fill the caller's region memory with the
//! sections' contents, then patch it.
//!
//! The caller owns the memory: it passes each region as a base virtual address (where the
//! region will run) and a byte slice to write (the same memory in a kernel; a `Vec` on the
//! host). Every write goes through a range-checked sub-slice.
//!
//! Copying writes every byte of both regions exactly once: section contents are copied, and
//! NOBITS sections, the GOT and the padding between sections are zeroed, so nothing of what
//! the memory held before is visible to the module. Relocating trusts what validation proved
//! about the entries of code sections (supported type, symbol index, field inside its
//! section) and does not decode or count them again. The entries of other sections, which
//! validation leaves to this step, are checked as they are applied: a loop per common kind
//! applies each entry that is plainly right (supported, the symbol has an address, the
//! field fits and lies inside the section), and the first one that is not gets validation's
//! exact checks and message. All writes are range-checked, so a loader bug cannot become a
//! wild write.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use object::LittleEndian as LE;
use object::elf;

use crate::counts::{CopyCounts, RelocateCounts};
use crate::error::{Error, SectionRef};
use crate::layout::{GOT_SLOT_SIZE, Layout};
use crate::resolve::{Resolution, Source};
use crate::validate::{KindSet, Module, PAGE_SIZE, RegionKind};

/// The relocation types the loader applies (x86-64 psABI names). The discriminant is the
/// kind's position in [`RelocationKind::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RelocationKind {
    /// R_X86_64_NONE: nothing.
    None = 0,
    /// R_X86_64_64: `S + A`, 64 bits.
    Abs64 = 1,
    /// R_X86_64_32: `S + A`, must fit 32 bits zero-extended.
    Abs32 = 5,
    /// R_X86_64_32S: `S + A`, must fit 32 bits sign-extended.
    Abs32S = 6,
    /// R_X86_64_PC32: `S + A - P`, signed 32 bits.
    Pc32 = 2,
    /// R_X86_64_PLT32: `L + A - P`; without PLTs, `L = S`.
    Plt32 = 3,
    /// R_X86_64_PC64: `S + A - P`, 64 bits.
    Pc64 = 7,
    /// R_X86_64_GOTPCREL: `G + GOT + A - P`, signed 32 bits.
    GotPcRel = 4,
    /// R_X86_64_GOTPCRELX: as GOTPCREL (relaxable; applied unrelaxed).
    GotPcRelX = 8,
    /// R_X86_64_REX_GOTPCRELX: as GOTPCREL (relaxable; applied unrelaxed).
    RexGotPcRelX = 9,
}

/// What the relocation loops need to know about one ELF relocation type, so that decoding
/// an entry is one table load and applying it takes no branch per kind: the psABI formula as
/// data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TypeInfo {
    /// The kind, `None` for a type the loader does not support.
    pub(crate) kind: Option<RelocationKind>,
    /// Bytes written: 0 (R_X86_64_NONE, unsupported types), 4 or 8.
    pub(crate) width: u64,
    /// The value is `G + GOT + A - P` (the GOT slot stands for `S`).
    pub(crate) got: bool,
    /// ANDed with `P` before it is subtracted: all ones for PC-relative kinds, else 0.
    pub(crate) place_mask: u64,
    /// Added to a 32-bit result before its fit test (the sum must be below 2^32): 0 for
    /// R_X86_64_32, which the CPU zero-extends, 2^31 for the sign-extended kinds.
    pub(crate) fit_bias: u64,
    /// 1 in this kind's 12-bit field of validation's packed counter ([`COUNT_FIELD_BITS`]).
    pub(crate) count_unit: u128,
}

/// Width of one kind's field in validation's packed relocation counter: ten 12-bit fields
/// fit one `u128`, which is flushed every [`COUNT_FIELD_MAX`] entries.
pub(crate) const COUNT_FIELD_BITS: u32 = 12;
/// The most entries counted before the packed counter must be flushed.
pub(crate) const COUNT_FIELD_MAX: usize = (1 << COUNT_FIELD_BITS) - 1;

pub(crate) const fn type_info(r_type: u32) -> TypeInfo {
    let Some(kind) = RelocationKind::decode(r_type) else {
        return TypeInfo {
            kind: None,
            width: 0,
            got: false,
            place_mask: 0,
            fit_bias: 0,
            count_unit: 0,
        };
    };
    let (width, pc_relative, got, zero_extended) = match kind {
        RelocationKind::None => (0, false, false, false),
        RelocationKind::Abs64 => (8, false, false, false),
        RelocationKind::Pc64 => (8, true, false, false),
        RelocationKind::Abs32 => (4, false, false, true),
        RelocationKind::Abs32S => (4, false, false, false),
        RelocationKind::Pc32 | RelocationKind::Plt32 => (4, true, false, false),
        RelocationKind::GotPcRel | RelocationKind::GotPcRelX | RelocationKind::RexGotPcRelX => {
            (4, true, true, false)
        }
    };
    TypeInfo {
        kind: Some(kind),
        width,
        got,
        place_mask: if pc_relative { u64::MAX } else { 0 },
        fit_bias: if zero_extended { 0 } else { 1 << 31 },
        count_unit: 1u128.wrapping_shl(COUNT_FIELD_BITS.wrapping_mul(kind as u32)),
    }
}

/// A 44-entry table of `$rule(r_type)` for every ELF relocation type up to 42, then
/// `$rule(u32::MAX)` standing for every larger (unsupported) type; built at compile time.
macro_rules! per_elf_type {
    ($rule:ident) => {{
        let mut table = [$rule(u32::MAX); 44];
        let mut r_type = 0;
        while r_type < 43 {
            table[r_type] = $rule(r_type as u32);
            // (Bounded by the loop condition; `+=` would trip the arithmetic lint.)
            r_type = r_type.wrapping_add(1);
        }
        table
    }};
}

/// [`TypeInfo`] of every ELF type up to 42 (the largest supported), then one entry that
/// stands for every larger type (unsupported).
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build, it cannot panic"
)]
const TYPES: [TypeInfo; 44] = per_elf_type!(type_info);

/// The [`TypeInfo`] of ELF type `r_type`.
#[inline(always)]
pub(crate) fn type_info_of(r_type: u32) -> &'static TypeInfo {
    const LAST: usize = TYPES.len() - 1;
    let index = usize::try_from(r_type).map_or(LAST, |t| t.min(LAST));
    TYPES.get(index).unwrap_or(&UNSUPPORTED)
}

const UNSUPPORTED: TypeInfo = type_info(u32::MAX);

/// What the relocation loop reads about a type: [`TypeInfo`]'s fields it uses, in 24 bytes.
#[derive(Clone, Copy, Debug)]
struct ApplyRule {
    place_mask: u64,
    fit_bias: u64,
    width: u8,
    got: bool,
    supported: bool,
}

const fn apply_rule(r_type: u32) -> ApplyRule {
    let info = type_info(r_type);
    ApplyRule {
        place_mask: info.place_mask,
        fit_bias: info.fit_bias,
        width: info.width as u8,
        got: info.got,
        supported: info.kind.is_some(),
    }
}

/// [`ApplyRule`] of every ELF type up to 42, then one for every larger type.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build, it cannot panic"
)]
const APPLY_RULES: [ApplyRule; 44] = {
    let mut table = [apply_rule(u32::MAX); 44];
    let mut r_type = 0;
    while r_type < 43 {
        table[r_type] = apply_rule(r_type as u32);
        r_type += 1;
    }
    table
};

#[inline(always)]
fn apply_rule_of(r_type: u32) -> &'static ApplyRule {
    const LAST: usize = APPLY_RULES.len() - 1;
    const NO_RULE: ApplyRule = apply_rule(u32::MAX);
    let index = usize::try_from(r_type).map_or(LAST, |t| t.min(LAST));
    APPLY_RULES.get(index).unwrap_or(&NO_RULE)
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

    /// The kind's position in [`Self::ALL`].
    #[inline]
    pub fn ordinal(self) -> usize {
        self as usize
    }

    /// The kind for an ELF `r_type`, if the loader supports it.
    #[inline]
    pub fn from_elf(r_type: u32) -> Option<Self> {
        type_info_of(r_type).kind
    }

    const fn decode(r_type: u32) -> Option<Self> {
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
    #[inline]
    pub fn width(self) -> u64 {
        type_info_of(self.elf_type()).width
    }

    /// Whether it goes through a GOT slot.
    #[inline]
    pub fn uses_got(self) -> bool {
        type_info_of(self.elf_type()).got
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

/// A relocated field's value, before it is written.
#[derive(Clone, Copy)]
enum Field {
    Nothing,
    Four(u32),
    Eight(u64),
}

/// The psABI arithmetic of every kind, shared by [`compute`] and the relocation loop.
#[inline(always)]
fn field(kind: RelocationKind, inputs: RelocationInputs) -> Result<Field, i128> {
    let symbol_plus_addend = inputs.symbol.wrapping_add_signed(inputs.addend);
    let pc_relative = |target: u64| target.wrapping_sub(inputs.place);
    // Reinterpreting the 64-bit result as two's complement is the point: a kernel address
    // such as 0xffff_ffff_8100_0000 is the sign-extension of a negative 32-bit value.
    let signed32 = |value: u64| -> Result<Field, i128> {
        let value = value as i64;
        match i32::try_from(value) {
            Ok(v) => Ok(Field::Four(v as u32)),
            Err(_) => Err(i128::from(value)),
        }
    };
    match kind {
        RelocationKind::None => Ok(Field::Nothing),
        RelocationKind::Abs64 => Ok(Field::Eight(symbol_plus_addend)),
        RelocationKind::Pc64 => Ok(Field::Eight(pc_relative(symbol_plus_addend))),
        RelocationKind::Abs32 => match u32::try_from(symbol_plus_addend) {
            Ok(v) => Ok(Field::Four(v)),
            Err(_) => Err(i128::from(symbol_plus_addend)),
        },
        RelocationKind::Abs32S => signed32(symbol_plus_addend),
        RelocationKind::Pc32 | RelocationKind::Plt32 => signed32(pc_relative(symbol_plus_addend)),
        RelocationKind::GotPcRel | RelocationKind::GotPcRelX | RelocationKind::RexGotPcRelX => {
            signed32(pc_relative(
                inputs.got_slot.wrapping_add_signed(inputs.addend),
            ))
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
    Ok(match field(kind, inputs)? {
        Field::Nothing => Patch::Nothing,
        Field::Four(v) => Patch::Bytes4(v.to_le_bytes()),
        Field::Eight(v) => Patch::Bytes8(v.to_le_bytes()),
    })
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

/// Zeroes `bytes[from..to]` (nothing when the range is empty); returns how many bytes.
fn zero(bytes: &mut [u8], from: u64, to: u64) -> u64 {
    if to <= from {
        return 0;
    }
    let range = usize::try_from(from)
        .ok()
        .zip(usize::try_from(to).ok())
        .and_then(|(from, to)| bytes.get_mut(from..to));
    match range {
        Some(range) => {
            range.fill(0);
            to.saturating_sub(from)
        }
        None => 0,
    }
}

/// Copies every loaded section into its region and zeroes the rest (NOBITS, padding, GOT):
/// each byte of the regions is written once.
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
        let provided = regions.len(region);
        let Some(bytes) = region_slice(regions, region, 0, size) else {
            return Err(Error::RegionTooSmall {
                region,
                needed: size,
                provided,
            });
        };
        // `written` is the end of the prefix of the region already written: sections come in
        // offset order, and the gap before each is zeroed as it is reached.
        let mut written = 0u64;
        for &index in layout.order(region) {
            let (Some(placement), Some(section)) =
                (layout.placement(index), module.section_entry(index))
            else {
                continue;
            };
            counts.sections = counts.sections.saturating_add(1);
            counts.bytes_zeroed =
                counts
                    .bytes_zeroed
                    .saturating_add(zero(bytes, written, placement.offset));
            let end = placement.offset.saturating_add(placement.size);
            if section.is_nobits() {
                counts.bytes_zeroed = counts.bytes_zeroed.saturating_add(zero(
                    bytes,
                    placement.offset.max(written),
                    end,
                ));
            } else {
                let contents = module.contents(section);
                let len = u64::try_from(contents.len()).unwrap_or(u64::MAX);
                let destination = usize::try_from(placement.offset)
                    .ok()
                    .and_then(|start| bytes.get_mut(start..start.checked_add(contents.len())?))
                    .ok_or_else(|| Error::RegionTooSmall {
                        region,
                        needed: placement.offset.saturating_add(len),
                        provided,
                    })?;
                destination.copy_from_slice(contents);
                counts.bytes_copied = counts.bytes_copied.saturating_add(len);
            }
            written = written.max(end);
        }
        counts.bytes_zeroed = counts
            .bytes_zeroed
            .saturating_add(zero(bytes, written, size));
    }
    Ok(counts)
}

/// The final address of every symbol of a module, by symbol index; `None` for a symbol that
/// has no address (in a section that is not loaded, or an ignored undefined symbol).
#[derive(Clone, Debug, Default)]
pub struct SymbolAddresses {
    /// The address, 0 where there is none.
    addresses: Vec<u64>,
    /// Whether there is one.
    present: Vec<bool>,
    /// Scratch: each section's final address, if it is loaded.
    section_bases: Vec<Option<u64>>,
}

impl SymbolAddresses {
    /// Computes the addresses for regions placed at `bases`.
    pub fn new(
        module: &Module<'_>,
        layout: &Layout,
        resolution: &Resolution,
        bases: RegionBases,
    ) -> Self {
        let mut addresses = Self::default();
        addresses.fill(module, layout, resolution, bases);
        addresses
    }

    /// Recomputes the addresses in place (keeping the memory).
    pub(crate) fn fill(
        &mut self,
        module: &Module<'_>,
        layout: &Layout,
        resolution: &Resolution,
        bases: RegionBases,
    ) {
        self.addresses.clear();
        self.present.clear();
        // Each loaded section's final address, then each symbol's from its section's.
        self.section_bases.clear();
        self.section_bases
            .extend(layout.placement_slice().iter().map(|placement| {
                // No overflow: `Regions::check` proved each region's end addressable, and a
                // placement lies inside its region.
                placement.map(|p| bases.get(p.region).wrapping_add(p.offset))
            }));
        let section_bases = &self.section_bases;
        // SHN_UNDEF needs no test of its own: section 0 (SHT_NULL) is never loaded.
        let address_of = |sym: &elf::Sym64<LE>| {
            let shndx = sym.st_shndx.get(LE);
            let value = sym.st_value.get(LE);
            if shndx == elf::SHN_ABS {
                Some(value)
            } else {
                // No overflow: validation proved `value` at most its section's size.
                section_bases
                    .get(usize::from(shndx.0))
                    .copied()
                    .flatten()
                    .map(|base| base.wrapping_add(value))
            }
        };
        let symbols = module.symtab();
        self.addresses.resize(symbols.len(), 0);
        self.present.resize(symbols.len(), false);
        for ((sym, slot), present) in symbols
            .iter()
            .zip(self.addresses.iter_mut())
            .zip(self.present.iter_mut())
        {
            let address = address_of(sym);
            *slot = address.unwrap_or(0);
            *present = address.is_some();
        }
        // The null symbol: relocations against index 0 use S = 0.
        self.set(0, Some(0));
        for resolved in resolution.symbols() {
            let address = match resolved.source {
                Source::Provider(_) | Source::WeakUnresolved => Some(resolved.address),
                Source::Ignored => None,
            };
            self.set(resolved.symbol, address);
        }
    }

    fn set(&mut self, index: u32, address: Option<u64>) {
        let Ok(i) = usize::try_from(index) else {
            return;
        };
        if let (Some(slot), Some(present)) = (self.addresses.get_mut(i), self.present.get_mut(i)) {
            *slot = address.unwrap_or(0);
            *present = address.is_some();
        }
    }

    /// The address of symbol `index`.
    pub fn get(&self, index: u32) -> Option<u64> {
        let i = usize::try_from(index).ok()?;
        self.present
            .get(i)
            .copied()
            .unwrap_or(false)
            .then(|| self.addresses.get(i).copied())
            .flatten()
    }
}

/// Fills the GOT and applies every relocation of every loaded section, in place, checking
/// the entries of sections whose target is not executable (validation checked the others):
/// an invalid one is the error validation gives for the same fault in code.
///
/// Run [`copy_sections`] first. `resolution` must come from the same module.
pub fn relocate(
    module: &Module<'_>,
    layout: &Layout,
    resolution: &Resolution,
    regions: &mut Regions<'_>,
) -> Result<RelocateCounts, Error> {
    relocate_with(
        module,
        layout,
        resolution,
        regions,
        &mut SymbolAddresses::default(),
    )
}

/// [`relocate`], computing the symbol addresses in `addresses`' memory.
pub(crate) fn relocate_with(
    module: &Module<'_>,
    layout: &Layout,
    resolution: &Resolution,
    regions: &mut Regions<'_>,
    addresses: &mut SymbolAddresses,
) -> Result<RelocateCounts, Error> {
    regions.check(layout)?;
    let bases = regions.bases();
    addresses.fill(module, layout, resolution, bases);
    let mut counts = RelocateCounts::default();

    for (slot_index, &symbol) in layout.got_symbols().iter().enumerate() {
        let address = addresses
            .get(symbol)
            .ok_or_else(|| Error::UnresolvedSymbolReferenced {
                section: SectionRef {
                    index: 0,
                    name: String::from("(GOT)"),
                },
                offset: layout.got_offset(),
                symbol: module.symbol_name(symbol),
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

    let got = GotSlots {
        layout,
        core_base: bases.core,
    };
    // Every symbol a relocation that writes may use has an address: validation refused those
    // in sections that are not loaded, and resolution gave one to every undefined symbol,
    // except the ones it ignored (an unknown `_GLOBAL_OFFSET_TABLE_`). Only with those (or
    // with a resolution of another module) is each address checked.
    let check_addresses = resolution
        .symbols()
        .iter()
        .any(|r| r.source == Source::Ignored)
        || resolution.symbols().len() != module.undefined_symbols().len();
    let mut checked_here = [0u64; RelocationKind::ALL.len()];
    for section in module.relocation_sections() {
        let target = section.target;
        let Some(placement) = layout.placement(target) else {
            continue;
        };
        let place_base = bases
            .get(placement.region)
            .checked_add(placement.offset)
            .unwrap_or(0);
        let provided = regions.len(placement.region);
        let memory = region_slice(regions, placement.region, placement.offset, placement.size)
            .ok_or_else(|| Error::RegionTooSmall {
                region: placement.region,
                needed: placement.offset.saturating_add(placement.size),
                provided,
            })?;
        let entries = section.entries();
        if !section.checked_by_validation() {
            apply_checking(
                module,
                target,
                entries,
                memory,
                place_base,
                addresses,
                &got,
                &mut checked_here,
            )?;
            continue;
        }
        let kinds = section.kinds();
        if check_addresses {
            apply::<true>(entries, memory, place_base, addresses, &got)
        } else if kinds.is_subset(PC_RELATIVE_32) {
            apply_signed_32::<true>(entries, memory, place_base, &addresses.addresses)
        } else if kinds.is_subset(SIGNED_32) {
            apply_signed_32::<false>(entries, memory, place_base, &addresses.addresses)
        } else if kinds.is_subset(ABSOLUTE_64) {
            apply_absolute_64(entries, memory, &addresses.addresses)
        } else {
            apply::<false>(entries, memory, place_base, addresses, &got)
        }
        .map_err(|fault| fault.into_error(module, target, placement.size))?;
    }
    // Validation counted the entries it checked, this loop the others; all are applied.
    counts.applied = module.counts().relocations;
    for (kind, &count) in RelocationKind::ALL.iter().zip(checked_here.iter()) {
        counts.applied.add_many(*kind, count);
    }
    Ok(counts)
}

/// What [`apply_and_check`] reads about a relocation type.
#[derive(Clone, Copy, Debug)]
struct CheckedRule {
    /// 1 in the kind's field of the packed counter.
    unit: u128,
    place_mask: u64,
    fit_bias: u64,
    /// 4 or 8; 0 for the types the loop leaves to the exact path (R_X86_64_NONE, the GOT
    /// family, unsupported types).
    width: u8,
}

const fn checked_rule(r_type: u32) -> CheckedRule {
    let info = type_info(r_type);
    let handled = info.kind.is_some() && !info.got && info.width != 0;
    CheckedRule {
        unit: info.count_unit,
        place_mask: info.place_mask,
        fit_bias: info.fit_bias,
        width: if handled { info.width as u8 } else { 0 },
    }
}

/// [`CheckedRule`] of every ELF type up to 42, then one for every larger type.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build, it cannot panic"
)]
const CHECKED_RULES: [CheckedRule; 44] = per_elf_type!(checked_rule);

/// Checks and applies the entries of a relocation section that validation left unchecked
/// (its target is not executable): [`apply_and_check`] applies every entry that is plainly
/// right, and each one it stops at gets validation's exact checks
/// ([`crate::validate::check_entry_when_applied`], the same errors validation gives for a
/// section of code), then [`apply`]'s. Counts by kind into `by_kind`.
#[allow(
    clippy::too_many_arguments,
    reason = "the pieces of relocate_with's state the one section's loops read"
)]
fn apply_checking(
    module: &Module<'_>,
    target: u32,
    entries: &[elf::Rela64<LE>],
    memory: &mut [u8],
    place_base: u64,
    addresses: &SymbolAddresses,
    got: &GotSlots<'_>,
    by_kind: &mut [u64; RelocationKind::ALL.len()],
) -> Result<(), Error> {
    let size = u64::try_from(memory.len()).unwrap_or(u64::MAX);
    // Most sections hold one kind (ORC and exception tables: PC-relative; pointer tables:
    // 64-bit absolute): a loop for that kind applies them while they last, the general
    // loop the rest.
    let (symbols, present) = (&addresses.addresses[..], &addresses.present[..]);
    let first_type = entries.first().map_or(0, |rela| rela.r_type(LE, false).0);
    let applied = if first_type == elf::R_X86_64_PC32.0 || first_type == elf::R_X86_64_PLT32.0 {
        let (applied, plt32) = apply_pc32_run(entries, memory, place_base, symbols, present);
        add_count(by_kind, RelocationKind::Plt32, plt32);
        add_count(by_kind, RelocationKind::Pc32, applied.saturating_sub(plt32));
        applied
    } else if first_type == elf::R_X86_64_64.0 {
        let applied = apply_abs64_run(entries, memory, symbols, present);
        add_count(by_kind, RelocationKind::Abs64, applied);
        applied
    } else {
        0
    };
    let mut rest = entries
        .get(usize::try_from(applied).unwrap_or(usize::MAX)..)
        .unwrap_or(&[]);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(COUNT_FIELD_MAX));
        let (stopped, packed) = apply_and_check(chunk, memory, place_base, symbols, present);
        for (field, count) in by_kind.iter_mut().enumerate() {
            let shift = COUNT_FIELD_BITS.saturating_mul(u32::try_from(field).unwrap_or(0));
            let n = packed.checked_shr(shift).unwrap_or(0) & u128::from(COUNT_FIELD_MAX as u32);
            *count = count.wrapping_add(u64::try_from(n).unwrap_or(0));
        }
        let Some(at) = stopped else {
            rest = after;
            continue;
        };
        let Some(rela) = chunk.get(at) else {
            break;
        };
        crate::validate::check_entry_when_applied(module, rela, target)?;
        apply::<true>(
            core::slice::from_ref(rela),
            memory,
            place_base,
            addresses,
            got,
        )
        .map_err(|fault| fault.into_error(module, target, size))?;
        if let Some(kind) = RelocationKind::from_elf(rela.r_type(LE, false).0)
            && let Some(count) = by_kind.get_mut(kind.ordinal())
        {
            *count = count.saturating_add(1);
        }
        rest = rest.get(at.saturating_add(1)..).unwrap_or(&[]);
    }
    Ok(())
}

fn add_count(by_kind: &mut [u64; RelocationKind::ALL.len()], kind: RelocationKind, n: u64) {
    if let Some(count) = by_kind.get_mut(kind.ordinal()) {
        *count = count.saturating_add(n);
    }
}

/// [`apply_and_check`] for a run of R_X86_64_PC32 and R_X86_64_PLT32 entries at the start of
/// `entries`: returns how many it applied (it stops, writing nothing of it, at the first
/// entry of another type or that is not plainly right), and how many of those were PLT32.
#[inline(never)]
fn apply_pc32_run(
    entries: &[elf::Rela64<LE>],
    memory: &mut [u8],
    place_base: u64,
    addresses: &[u64],
    present: &[bool],
) -> (u64, u64) {
    const PC32: u32 = elf::R_X86_64_PC32.0;
    const PLT32: u32 = elf::R_X86_64_PLT32.0;
    let mut applied = 0u64;
    let mut plt32 = 0u64;
    for rela in entries {
        let offset = rela.r_offset.get(LE);
        let info = rela.r_info.get(LE);
        let r_type = info as u32;
        let symbol = usize::try_from(info >> 32).unwrap_or(usize::MAX);
        if r_type != PC32 && r_type != PLT32 {
            break;
        }
        let (Some(&address), Some(true)) = (addresses.get(symbol), present.get(symbol).copied())
        else {
            break;
        };
        let value = address
            .wrapping_add_signed(rela.r_addend.get(LE))
            .wrapping_sub(place_base.wrapping_add(offset));
        // The field must give back the whole value when the CPU sign-extends it.
        if value.wrapping_add(1 << 31) > u64::from(u32::MAX)
            || !put(memory, offset, (value as u32).to_le_bytes())
        {
            break;
        }
        applied = applied.wrapping_add(1);
        plt32 = plt32.wrapping_add(u64::from(r_type == PLT32));
    }
    (applied, plt32)
}

/// [`apply_pc32_run`] for R_X86_64_64 entries.
#[inline(never)]
fn apply_abs64_run(
    entries: &[elf::Rela64<LE>],
    memory: &mut [u8],
    addresses: &[u64],
    present: &[bool],
) -> u64 {
    const R64: u32 = elf::R_X86_64_64.0;
    let mut applied = 0u64;
    for rela in entries {
        let offset = rela.r_offset.get(LE);
        let info = rela.r_info.get(LE);
        let symbol = usize::try_from(info >> 32).unwrap_or(usize::MAX);
        if info as u32 != R64 {
            break;
        }
        let (Some(&address), Some(true)) = (addresses.get(symbol), present.get(symbol).copied())
        else {
            break;
        };
        let value = address.wrapping_add_signed(rela.r_addend.get(LE));
        if !put(memory, offset, value.to_le_bytes()) {
            break;
        }
        applied = applied.wrapping_add(1);
    }
    applied
}

/// The loop of [`apply_checking`] for at most [`COUNT_FIELD_MAX`] entries: applies entries
/// while each is of a type it handles (no GOT, something to write), names a symbol that has
/// an address, and fits its field inside the section; returns the index of the first that
/// is not (nothing of it written), and the packed count by kind of those it applied.
#[inline(never)]
fn apply_and_check(
    entries: &[elf::Rela64<LE>],
    memory: &mut [u8],
    place_base: u64,
    addresses: &[u64],
    present: &[bool],
) -> (Option<usize>, u128) {
    const LAST: usize = CHECKED_RULES.len() - 1;
    const NOT_HANDLED: CheckedRule = checked_rule(u32::MAX);
    let mut packed = 0u128;
    for (i, rela) in entries.iter().enumerate() {
        let offset = rela.r_offset.get(LE);
        let info = rela.r_info.get(LE);
        let r_type = usize::try_from(info as u32).map_or(LAST, |t| t.min(LAST));
        let rule = CHECKED_RULES.get(r_type).unwrap_or(&NOT_HANDLED);
        let symbol = usize::try_from(info >> 32).unwrap_or(usize::MAX);
        let (Some(&address), Some(true)) = (addresses.get(symbol), present.get(symbol).copied())
        else {
            return (Some(i), packed);
        };
        let value = address
            .wrapping_add_signed(rela.r_addend.get(LE))
            .wrapping_sub(place_base.wrapping_add(offset) & rule.place_mask);
        let written = match rule.width {
            8 => put(memory, offset, value.to_le_bytes()),
            // The field must give back the whole value when the CPU extends it.
            4 => {
                value.wrapping_add(rule.fit_bias) <= u64::from(u32::MAX)
                    && put(memory, offset, (value as u32).to_le_bytes())
            }
            _ => false,
        };
        if !written {
            return (Some(i), packed);
        }
        packed = packed.wrapping_add(rule.unit);
    }
    (None, packed)
}

/// GOT slot addresses, for the GOTPCREL family.
struct GotSlots<'a> {
    layout: &'a Layout,
    core_base: u64,
}

impl GotSlots<'_> {
    fn address(&self, symbol: u32) -> Option<u64> {
        self.core_base
            .checked_add(self.layout.got_slot_offset(symbol)?)
    }
}

/// Why a relocation could not be applied: plain values, so the loop builds no error.
enum ApplyFault {
    Overflow {
        offset: u64,
        kind: RelocationKind,
        symbol: u32,
        value: i128,
    },
    NoAddress {
        offset: u64,
        symbol: u32,
    },
    Outside {
        offset: u64,
        r_type: u32,
    },
    Unsupported {
        offset: u64,
        r_type: u32,
    },
}

impl ApplyFault {
    #[cold]
    fn overflow(offset: u64, r_type: u32, symbol: u32, value: u64) -> Self {
        let kind = RelocationKind::from_elf(r_type).unwrap_or(RelocationKind::None);
        Self::Overflow {
            offset,
            kind,
            symbol,
            // As `compute` reports it: R_X86_64_32's value unsigned, the others signed.
            value: if kind == RelocationKind::Abs32 {
                i128::from(value)
            } else {
                i128::from(value as i64)
            },
        }
    }

    fn into_error(self, module: &Module<'_>, target: u32, size: u64) -> Error {
        let section = module.section_ref(target);
        match self {
            Self::Overflow {
                offset,
                kind,
                symbol,
                value,
            } => Error::RelocationOverflow {
                section,
                offset,
                kind,
                symbol: module.symbol_name(symbol),
                value,
            },
            Self::NoAddress { offset, symbol } => Error::UnresolvedSymbolReferenced {
                section,
                offset,
                symbol: module.symbol_name(symbol),
            },
            Self::Outside { offset, r_type } => Error::RelocationOutsideSection {
                section,
                offset,
                width: type_info_of(r_type).width,
                size,
            },
            Self::Unsupported { offset, r_type } => Error::UnsupportedRelocation {
                section,
                offset,
                r_type,
            },
        }
    }
}

/// Writes `bytes` at `memory[at..]`, if they fit.
#[inline(always)]
fn put<const N: usize>(memory: &mut [u8], at: u64, bytes: [u8; N]) -> bool {
    let field = usize::try_from(at)
        .ok()
        .and_then(|at| memory.get_mut(at..))
        .and_then(|tail| tail.first_chunk_mut::<N>());
    match field {
        Some(field) => {
            *field = bytes;
            true
        }
        None => false,
    }
}

/// Applies one section's relocations to `memory`, the target section's bytes, which run at
/// `place_base`: the hot loop of loading. Each entry is applied as its type's [`TypeInfo`]
/// says, which gives the same bytes as [`compute`] (a unit test holds the two together).
/// With `CHECK_ADDRESSES`, a symbol without an address is an error; without, validation has
/// proved that none is used.
#[inline(never)]
fn apply<const CHECK_ADDRESSES: bool>(
    entries: &[elf::Rela64<LE>],
    memory: &mut [u8],
    place_base: u64,
    addresses: &SymbolAddresses,
    got: &GotSlots<'_>,
) -> Result<(), ApplyFault> {
    let (symbols, present) = (&addresses.addresses[..], &addresses.present[..]);
    for rela in entries {
        let offset = rela.r_offset.get(LE);
        let r_type = rela.r_type(LE, false).0;
        let rule = apply_rule_of(r_type);
        if rule.width == 0 {
            if !rule.supported {
                return Err(ApplyFault::Unsupported { offset, r_type });
            }
            continue;
        }
        let symbol = rela.r_sym(LE, false);
        let index = usize::try_from(symbol).unwrap_or(usize::MAX);
        let Some(&address) = symbols.get(index) else {
            return Err(ApplyFault::NoAddress { offset, symbol });
        };
        if CHECK_ADDRESSES && !present.get(index).copied().unwrap_or(false) {
            return Err(ApplyFault::NoAddress { offset, symbol });
        }
        let target = if rule.got {
            got.address(symbol)
                .ok_or(ApplyFault::NoAddress { offset, symbol })?
        } else {
            address
        };
        let place = place_base.wrapping_add(offset);
        let value = target
            .wrapping_add_signed(rela.r_addend.get(LE))
            .wrapping_sub(place & rule.place_mask);
        let written = if rule.width == 8 {
            put(memory, offset, value.to_le_bytes())
        } else {
            // The field must give back the whole value when the CPU extends it.
            if value.wrapping_add(rule.fit_bias) > u64::from(u32::MAX) {
                return Err(ApplyFault::overflow(offset, r_type, symbol, value));
            }
            put(memory, offset, (value as u32).to_le_bytes())
        };
        if !written {
            return Err(ApplyFault::Outside { offset, r_type });
        }
    }
    Ok(())
}

/// The kinds [`apply_signed_32`] handles: 32-bit signed fields, `S + A - P` or `S + A`.
const SIGNED_32: KindSet = KindSet::of(&[
    RelocationKind::Pc32,
    RelocationKind::Plt32,
    RelocationKind::Abs32S,
]);
/// The kinds of [`SIGNED_32`] that are PC-relative (`S + A - P`): the ORC unwind tables,
/// the exception tables and most other tables of 32-bit offsets are nothing else.
const PC_RELATIVE_32: KindSet = KindSet::of(&[RelocationKind::Pc32, RelocationKind::Plt32]);
/// The kind [`apply_absolute_64`] handles.
const ABSOLUTE_64: KindSet = KindSet::of(&[RelocationKind::Abs64]);

/// `P`'s mask in [`SIGNED_32`]'s formula, by ELF type modulo 16: all ones for PC32 (2) and
/// PLT32 (4), 0 for 32S (11).
const SIGNED_32_PLACE_MASK: [u64; 16] = {
    // Written out, not indexed into (the crate denies indexing even in constants); the
    // assertion ties the positions to the ELF numbers.
    assert!(elf::R_X86_64_PC32.0 == 2 && elf::R_X86_64_PLT32.0 == 4 && elf::R_X86_64_32S.0 == 11);
    const ALL: u64 = u64::MAX;
    [0, 0, ALL, 0, ALL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
};

/// [`apply`] for a section whose entries are all of the [`SIGNED_32`] kinds (validation
/// says which kinds a section has): most of a kernel module's relocations (code, ORC
/// tables, exception tables), in a loop without a branch per kind. With `PC_ONLY`, all are
/// of the [`PC_RELATIVE_32`] kinds.
#[inline(never)]
fn apply_signed_32<const PC_ONLY: bool>(
    entries: &[elf::Rela64<LE>],
    memory: &mut [u8],
    place_base: u64,
    addresses: &[u64],
) -> Result<(), ApplyFault> {
    for rela in entries {
        let offset = rela.r_offset.get(LE);
        let info = rela.r_info.get(LE);
        let symbol = (info >> 32) as u32;
        let Some(&address) = addresses.get(symbol as usize) else {
            return Err(ApplyFault::NoAddress { offset, symbol });
        };
        let place_mask = if PC_ONLY {
            u64::MAX
        } else {
            SIGNED_32_PLACE_MASK
                .get((info & 15) as usize)
                .copied()
                .unwrap_or(0)
        };
        let value = address
            .wrapping_add_signed(rela.r_addend.get(LE))
            .wrapping_sub(place_base.wrapping_add(offset) & place_mask);
        // The field must give back the whole value when the CPU sign-extends it.
        if value.wrapping_add(1 << 31) > u64::from(u32::MAX) {
            return Err(ApplyFault::overflow(offset, info as u32, symbol, value));
        }
        if !put(memory, offset, (value as u32).to_le_bytes()) {
            return Err(ApplyFault::Outside {
                offset,
                r_type: info as u32,
            });
        }
    }
    Ok(())
}

/// [`apply`] for a section whose entries are all R_X86_64_64 (data: pointer tables).
#[inline(never)]
fn apply_absolute_64(
    entries: &[elf::Rela64<LE>],
    memory: &mut [u8],
    addresses: &[u64],
) -> Result<(), ApplyFault> {
    for rela in entries {
        let offset = rela.r_offset.get(LE);
        let info = rela.r_info.get(LE);
        let symbol = (info >> 32) as u32;
        let Some(&address) = addresses.get(symbol as usize) else {
            return Err(ApplyFault::NoAddress { offset, symbol });
        };
        let value = address.wrapping_add_signed(rela.r_addend.get(LE));
        if !put(memory, offset, value.to_le_bytes()) {
            return Err(ApplyFault::Outside {
                offset,
                r_type: info as u32,
            });
        }
    }
    Ok(())
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

    /// The relocation loop (`apply`, table-driven) writes what `compute` (the psABI formulas)
    /// says, and refuses what it refuses, for every kind over edge and pseudo-random inputs.
    #[test]
    fn the_loop_agrees_with_compute() {
        use object::{I64, U64};
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let edges = [
            0,
            1,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            KERNEL_FN,
            PLACE,
            u64::MAX,
            0xffff_ffff_8000_0000,
        ];
        let mut cases = 0;
        for kind in RelocationKind::ALL {
            for round in 0..2000 {
                let pick = |r: u64| edges[(r % edges.len() as u64) as usize];
                let (symbol, slot, place_base) = if round < 100 {
                    (pick(next()), pick(next()), pick(next()) & !0xf)
                } else {
                    (
                        next(),
                        PLACE + (next() % 0x1_0000_0000),
                        PLACE - (next() % 0x1000) * 16,
                    )
                };
                let addend = match round % 4 {
                    0 => -4,
                    1 => 0,
                    2 => (next() % 0x2000) as i64 - 0x1000,
                    _ => next() as i64,
                };
                let offset = 8u64;
                let rela = elf::Rela64::<LE> {
                    r_offset: U64::new(LE, offset),
                    r_info: U64::new(LE, (1u64 << 32) | u64::from(kind.elf_type())),
                    r_addend: I64::new(LE, addend),
                };
                // A region never wraps the address space, so neither does its GOT.
                let slot = slot.max(0x40);
                let mut layout = Layout::default();
                layout.set_got_for_test(1, 0x40);
                let got = GotSlots {
                    layout: &layout,
                    core_base: slot.wrapping_sub(0x40),
                };
                let got_slot = got.address(1).unwrap_or(0);
                let mut memory = [0xaau8; 24];
                let addresses = SymbolAddresses {
                    addresses: alloc::vec![0, symbol],
                    present: alloc::vec![true, true],
                    section_bases: Vec::new(),
                };
                let result = apply::<true>(
                    core::slice::from_ref(&rela),
                    &mut memory,
                    place_base,
                    &addresses,
                    &got,
                );
                let expected = compute(
                    kind,
                    RelocationInputs {
                        symbol,
                        addend,
                        place: place_base.wrapping_add(offset),
                        got_slot,
                    },
                );
                match (expected, result) {
                    (Ok(patch), Ok(())) => {
                        let mut want = [0xaau8; 24];
                        want[8..8 + patch.bytes().len()].copy_from_slice(patch.bytes());
                        assert_eq!(memory, want, "{kind} S={symbol:#x} A={addend:#x}");
                    }
                    (Err(value), Err(ApplyFault::Overflow { value: got, .. })) => {
                        assert_eq!(value, got, "{kind}");
                        assert_eq!(memory, [0xaa; 24], "{kind}: nothing written");
                    }
                    (expected, _) => panic!(
                        "{kind} S={symbol:#x} A={addend:#x}: compute says {expected:?}, the loop disagrees"
                    ),
                }
                cases += 1;
            }
        }
        assert_eq!(cases, 20_000);
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
