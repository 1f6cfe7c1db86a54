//! Step 1, **validate**: check every structure of the ELF file that later steps rely on, and
//! index it into a [`Module`].
//!
//! After validation, every offset, size and index the other steps use is known to be in
//! bounds, so they can read without re-checking the file (they still write only through
//! range-checked slices). Validation also decides, from each section's name and flags, where
//! the section goes ([`Disposition`]), and notes which symbols the GOT needs: the layout step
//! only assigns offsets.
//!
//! # What is checked once, and where
//!
//! Each fact is established by exactly one step, the first that needs it:
//!
//! - Every relocation's type, symbol index and field range, and that its symbol lives in a
//!   loaded section: for a relocation section whose target is executable, here, in one
//!   pass over the entries, which also counts them by kind and notes the symbols the GOT
//!   needs; [`crate::relocate()`] applies them without checking them again (its writes stay
//!   range-checked) and takes their counts from here. For any other target (data, tables),
//!   in [`crate::relocate()`], entry by entry as it applies them, with the same errors (the
//!   checks of this module, called from there): their entries are read once, not once to
//!   check and once to apply. The GOTPCREL family is accepted in code only, where compilers emit it
//!   and where the GOT slots it needs are found before the layout is made.
//! - Every symbol's section index and value, and its name's bounds and termination: here,
//!   in one pass over the symbol table (a name is terminated exactly when it starts at or
//!   before the string table's last NUL, so that costs one comparison). The table is not
//!   copied: later steps decode entries from the file.
//! - UTF-8, only for names read as text: section names (one ASCII pass over the section
//!   name table, names one by one only if it is not ASCII), export names, `.modinfo`.
//!   Undefined names are looked up as bytes ([`crate::SymbolProvider::lookup_bytes`]), and
//!   definitions are compared as bytes; a message that names a symbol decodes it lossily.
//!
//! Nothing on the success path builds an error value: faults found by the fast passes are
//! ORed into one flag, and only then does a slow pass find the first one, in file order,
//! with the message the checks have always given (`tests/corpus/MESSAGES` pins them).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use object::LittleEndian as LE;
use object::elf;
use object::pod;

use crate::counts::{RelocationCounts, ValidateCounts};
use crate::error::{Error, SectionRef};
use crate::relocate::{COUNT_FIELD_BITS, COUNT_FIELD_MAX, RelocationKind, type_info, type_info_of};

/// Size of a page: the unit of region permissions.
pub const PAGE_SIZE: u64 = 4096;
/// The largest region (and so the largest loaded section) the loader accepts: 1 GiB, half of
/// the ±2 GiB that 32-bit relocations can reach.
pub const MAX_REGION_SIZE: u64 = 1 << 30;
/// The largest section alignment the loader honours: regions are only page-aligned.
pub const MAX_SECTION_ALIGN: u64 = PAGE_SIZE;

const EHDR_SIZE: u16 = 64;
const SHDR_SIZE: u16 = 64;
const SYM_SIZE: u64 = 24;
const RELA_SIZE: u64 = 24;
/// The one undefined symbol Linux lets stay unresolved on x86-64: old GNU as emits it, unreferenced.
pub(crate) const IGNORED_UNDEFINED: &str = "_GLOBAL_OFFSET_TABLE_";
/// Prefix of the symbol that marks an export (ABI.md, "Exports").
pub const KSYMTAB_PREFIX: &str = "__ksymtab_";

/// Which of the two memory regions a section is loaded into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// Lives as long as the module.
    Core,
    /// `.init*` sections: freed once `init_module` has returned.
    Init,
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Core => "core",
            Self::Init => "init",
        })
    }
}

/// Page permissions of loaded memory. Never writable and executable at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Code: read and execute.
    ReadExecute,
    /// Constants, export tables, the GOT: read only.
    ReadOnly,
    /// Data and bss: read and write.
    ReadWrite,
}

/// Where validation decided a section goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Loaded into `region` with pages of `permission`.
    Load {
        /// Core or init.
        region: RegionKind,
        /// Page permission, from the section flags.
        permission: Permission,
    },
    /// Read from the file only (non-SHF_ALLOC sections, `.modinfo`, `__versions`).
    NotLoaded,
}

/// A byte range of the file, proved in bounds by validation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// The bytes of the span (empty if `data` is not the file it was made from).
    pub(crate) fn of(self, data: &[u8]) -> &[u8] {
        data.get(self.start..self.end).unwrap_or(&[])
    }
}

/// The span `offset..offset + size` of `data`, or `None` when out of bounds or overflowing.
fn file_span(data: &[u8], offset: u64, size: u64) -> Option<Span> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    (end <= data.len()).then_some(Span { start, end })
}

/// One section of a validated module: a view into the file.
#[derive(Clone, Copy, Debug)]
pub struct Section<'data> {
    /// Index in the section header table.
    pub index: u32,
    /// Name.
    pub name: &'data str,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_offset`: where the contents are in the file.
    pub offset: u64,
    /// Size in memory (for NOBITS, bytes to zero).
    pub size: u64,
    /// Alignment, at least 1.
    pub align: u64,
    /// `sh_link`.
    pub link: u32,
    /// `sh_info`.
    pub info: u32,
    /// `sh_entsize`.
    pub entsize: u64,
    /// Where it goes.
    pub disposition: Disposition,
    /// Contents in the file; empty for NOBITS.
    pub data: &'data [u8],
}

impl Section<'_> {
    /// Whether the section occupies no file space (`.bss`).
    pub fn is_nobits(&self) -> bool {
        self.sh_type == elf::SHT_NOBITS.0
    }
}

/// What validation keeps of a section: no borrowed data, so the table can be reused.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SectionEntry {
    /// The section name string table from the name's first byte to the table's end: the
    /// name is its bytes up to the first NUL (validation proved there is one).
    name_tail: Span,
    pub(crate) sh_type: u32,
    pub(crate) flags: u64,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) align: u64,
    pub(crate) link: u32,
    pub(crate) info: u32,
    pub(crate) entsize: u64,
    pub(crate) disposition: Disposition,
    pub(crate) contents: Span,
}

impl SectionEntry {
    pub(crate) fn is_nobits(&self) -> bool {
        self.sh_type == elf::SHT_NOBITS.0
    }

    /// The name's bytes.
    fn name<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        let tail = self.name_tail.of(data);
        tail.get(..memchr::memchr(0, tail).unwrap_or(0))
            .unwrap_or(&[])
    }
}

/// Binding of a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// STB_LOCAL.
    Local,
    /// STB_GLOBAL.
    Global,
    /// STB_WEAK.
    Weak,
    /// Any other value (GNU_UNIQUE, OS- or processor-specific): treated as global.
    Other(u8),
}

/// Where a symbol is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Definition {
    /// SHN_UNDEF: resolved at load time.
    Undefined,
    /// SHN_ABS: the value is the address.
    Absolute,
    /// Relative to the start of this section.
    Section(u32),
}

/// One symbol of a validated module: a view into the file.
#[derive(Clone, Copy, Debug)]
pub struct Symbol<'data> {
    /// Index in the symbol table.
    pub index: u32,
    /// The name's bytes, without the NUL (empty for section symbols; see
    /// [`Module::symbol_name`]). Not checked to be UTF-8: see [`Symbol::name`].
    pub name_bytes: &'data [u8],
    /// Binding.
    pub binding: Binding,
    /// `st_type` (STT_*).
    pub st_type: u8,
    /// Where it is defined.
    pub definition: Definition,
    /// `st_value`: offset in its section, or the absolute value.
    pub value: u64,
    /// `st_size`.
    pub size: u64,
}

impl<'data> Symbol<'data> {
    /// Whether this is a section symbol (STT_SECTION).
    pub fn is_section(&self) -> bool {
        self.st_type == elf::STT_SECTION.0
    }

    /// The name as text, if it is UTF-8.
    pub fn name(&self) -> Option<&'data str> {
        core::str::from_utf8(self.name_bytes).ok()
    }
}

// Per-symbol flags (`ModuleTables::symbol_flags`), one byte per symbol so that the
// relocation check reads a dense array.
/// A GOTPCREL-family relocation names the symbol: it has a GOT slot.
const USES_GOT: u8 = 1;
/// The symbol is defined in a section that is not loaded: it has no address.
const IN_UNLOADED_SECTION: u8 = 2;
/// Not a symbol: what the relocation check reads for an index past the table.
const OUT_OF_RANGE: u8 = 4;

/// A symbol table entry, decoded (from the file, on each use: validation keeps no copy).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SymbolEntry {
    pub(crate) st_name: u32,
    pub(crate) binding: Binding,
    pub(crate) st_type: u8,
    pub(crate) definition: Definition,
    pub(crate) value: u64,
    pub(crate) size: u64,
}

/// Decodes a symbol table entry of a validated module (whose section indices validation
/// checked).
#[inline]
pub(crate) fn decode_symbol(sym: &elf::Sym64<LE>) -> SymbolEntry {
    let shndx = sym.st_shndx.get(LE);
    SymbolEntry {
        st_name: sym.st_name.get(LE),
        binding: match sym.st_bind() {
            b if b == elf::STB_LOCAL => Binding::Local,
            b if b == elf::STB_GLOBAL => Binding::Global,
            b if b == elf::STB_WEAK => Binding::Weak,
            b => Binding::Other(b.0),
        },
        st_type: sym.st_type().0,
        definition: if shndx == elf::SHN_UNDEF {
            Definition::Undefined
        } else if shndx == elf::SHN_ABS {
            Definition::Absolute
        } else {
            Definition::Section(u32::from(shndx.0))
        },
        value: sym.st_value.get(LE),
        size: sym.st_size.get(LE),
    }
}

/// One relocation entry of a section that is loaded (its type is known to be supported, its
/// symbol index and its offset range in bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Offset in the target section.
    pub offset: u64,
    /// Type.
    pub kind: RelocationKind,
    /// Symbol index.
    pub symbol: u32,
    /// Addend.
    pub addend: i64,
}

/// A relocation section whose target section is loaded: a view into the file.
#[derive(Clone, Copy, Debug)]
pub struct RelocationSection<'data> {
    /// Index of the SHT_RELA section.
    pub index: u32,
    /// Index of the section it patches.
    pub target: u32,
    entries: &'data [elf::Rela64<LE>],
    kinds: KindSet,
    checked: bool,
}

impl<'data> RelocationSection<'data> {
    /// Its entries. Those of a section whose target is executable were checked by
    /// validation; the others are checked by [`crate::relocate()`] as it applies them, so
    /// before it has succeeded an entry of such a section may be invalid (an unsupported
    /// type then reads as [`RelocationKind::None`]).
    pub fn relocations(&self) -> impl ExactSizeIterator<Item = Relocation> + 'data {
        self.entries.iter().map(decode_rela)
    }

    /// The raw entries.
    pub(crate) fn entries(&self) -> &'data [elf::Rela64<LE>] {
        self.entries
    }

    /// The kinds its entries have (validation saw each of them; empty when
    /// [`Self::checked_by_validation`] is false).
    pub(crate) fn kinds(&self) -> KindSet {
        self.kinds
    }

    /// Whether validation checked the entries (the target is executable), or relocation
    /// checks them as it applies them.
    pub fn checked_by_validation(&self) -> bool {
        self.checked
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn decode_rela(rela: &elf::Rela64<LE>) -> Relocation {
    let r_type = rela.r_type(LE, false).0;
    Relocation {
        offset: rela.r_offset.get(LE),
        // Validation refused every entry whose type is not supported.
        kind: RelocationKind::from_elf(r_type).unwrap_or(RelocationKind::None),
        symbol: rela.r_sym(LE, false),
        addend: rela.r_addend.get(LE),
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct RelocationSectionEntry {
    index: u32,
    target: u32,
    entries: Span,
    kinds: KindSet,
    checked: bool,
}

/// A set of relocation kinds: bit [`RelocationKind::ordinal`] for each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KindSet(u16);

impl KindSet {
    /// The set of `kinds`.
    pub(crate) const fn of(kinds: &[RelocationKind]) -> Self {
        let mut bits = 0u16;
        let mut rest = kinds;
        while let [kind, tail @ ..] = rest {
            bits |= 1 << *kind as u8;
            rest = tail;
        }
        Self(bits)
    }

    /// Whether every kind of `self` is in `other`.
    pub(crate) fn is_subset(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }
}

/// An export: `__ksymtab_NAME` is defined, and so is `NAME` (symbol index `symbol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Export<'data> {
    /// The exported name.
    pub name: &'data str,
    /// Index of the symbol that defines it.
    pub symbol: u32,
}

/// A defined non-local symbol in the name index: its hash is kept so the table never rehashes
/// a name.
#[derive(Clone, Copy, Debug)]
struct GlobalEntry {
    hash: u64,
    index: u32,
    name_len: u32,
}

/// The tables a [`Module`] indexes the file with. They borrow nothing, so a
/// [`crate::Loader`] keeps them from one module to the next and validation stops
/// allocating once they have grown.
#[derive(Clone, Debug, Default)]
pub struct ModuleTables {
    sections: Vec<SectionEntry>,
    /// Each section's size and `IN_UNLOADED_SECTION` if it is not loaded (symbol checks).
    section_limits: Vec<(u64, u8)>,
    /// Defined non-local symbols (indices), for the name index.
    global_candidates: Vec<u32>,
    /// Defined symbols whose name starts with [`KSYMTAB_PREFIX`] (indices), in table order.
    export_candidates: Vec<u32>,
    /// Flags of each symbol (`USES_GOT`, …).
    symbol_flags: Vec<u8>,
    relocation_sections: Vec<RelocationSectionEntry>,
    undefined: Vec<u32>,
    got_symbols: Vec<u32>,
    globals: HashTable<GlobalEntry>,
    hasher: DefaultHashBuilder,
    /// Scratch of the overlap check.
    parts: OverlapRuns,
}

impl ModuleTables {
    fn clear(&mut self) {
        self.sections.clear();
        self.section_limits.clear();
        self.global_candidates.clear();
        self.export_candidates.clear();
        self.symbol_flags.clear();
        self.relocation_sections.clear();
        self.undefined.clear();
        self.got_symbols.clear();
        self.globals.clear();
        self.parts.clear();
    }
}

/// A validated module: indexes into the file bytes, which it borrows.
#[derive(Clone, Debug)]
pub struct Module<'data> {
    data: &'data [u8],
    /// The symbol table.
    symtab: &'data [elf::Sym64<LE>],
    /// The symbol string table.
    strtab: &'data [u8],
    tables: ModuleTables,
    exports: Vec<Export<'data>>,
    modinfo: &'data str,
    name: &'data str,
    counts: ValidateCounts,
}

impl<'data> Module<'data> {
    fn view(&self, index: u32, entry: &SectionEntry) -> Section<'data> {
        Section {
            index,
            // Checked UTF-8 by validation; the file bytes cannot have changed since.
            name: core::str::from_utf8(entry.name(self.data)).unwrap_or(""),
            sh_type: entry.sh_type,
            flags: entry.flags,
            offset: entry.offset,
            size: entry.size,
            align: entry.align,
            link: entry.link,
            info: entry.info,
            entsize: entry.entsize,
            disposition: entry.disposition,
            data: entry.contents.of(self.data),
        }
    }

    /// All sections, by index (index 0 is the null section).
    pub fn sections(&self) -> impl ExactSizeIterator<Item = Section<'data>> + '_ {
        self.tables
            .sections
            .iter()
            .enumerate()
            .map(|(i, entry)| self.view(index_u32(i), entry))
    }

    /// The section with this index.
    pub fn section(&self, index: u32) -> Option<Section<'data>> {
        Some(self.view(index, self.section_entry(index)?))
    }

    /// The first section with this name.
    pub fn section_by_name(&self, name: &str) -> Option<Section<'data>> {
        let (i, entry) = self
            .tables
            .sections
            .iter()
            .enumerate()
            .find(|(_, s)| s.name(self.data) == name.as_bytes())?;
        Some(self.view(index_u32(i), entry))
    }

    pub(crate) fn section_entries(&self) -> &[SectionEntry] {
        &self.tables.sections
    }

    pub(crate) fn section_entry(&self, index: u32) -> Option<&SectionEntry> {
        self.tables.sections.get(usize::try_from(index).ok()?)
    }

    /// The contents of a section, from its table entry.
    pub(crate) fn contents(&self, entry: &SectionEntry) -> &'data [u8] {
        entry.contents.of(self.data)
    }

    /// Number of symbols, including the null symbol.
    pub fn symbol_count(&self) -> usize {
        self.symtab.len()
    }

    fn symbol_view(&self, index: u32, entry: &SymbolEntry) -> Symbol<'data> {
        Symbol {
            index,
            name_bytes: c_bytes(self.strtab, entry.st_name).unwrap_or(&[]),
            binding: entry.binding,
            st_type: entry.st_type,
            definition: entry.definition,
            value: entry.value,
            size: entry.size,
        }
    }

    /// All symbols, by index (index 0 is the null symbol).
    pub fn symbols(&self) -> impl ExactSizeIterator<Item = Symbol<'data>> + '_ {
        self.symtab
            .iter()
            .enumerate()
            .map(|(i, sym)| self.symbol_view(index_u32(i), &decode_symbol(sym)))
    }

    /// The symbol with this index.
    pub fn symbol(&self, index: u32) -> Option<Symbol<'data>> {
        Some(self.symbol_view(index, &self.symbol_entry(index)?))
    }

    /// The raw symbol table.
    pub(crate) fn symtab(&self) -> &'data [elf::Sym64<LE>] {
        self.symtab
    }

    pub(crate) fn symbol_entries(&self) -> impl ExactSizeIterator<Item = SymbolEntry> + 'data {
        self.symtab.iter().map(decode_symbol)
    }

    pub(crate) fn symbol_entry(&self, index: u32) -> Option<SymbolEntry> {
        self.symtab
            .get(usize::try_from(index).ok()?)
            .map(decode_symbol)
    }

    /// The name bytes of a symbol table entry.
    pub(crate) fn name_bytes(&self, entry: &SymbolEntry) -> &'data [u8] {
        c_bytes(self.strtab, entry.st_name).unwrap_or(&[])
    }

    /// The undefined symbols (the null symbol excepted), in symbol table order.
    pub fn undefined_symbols(&self) -> &[u32] {
        &self.tables.undefined
    }

    /// A symbol's name for messages: section symbols are named after their section, and a
    /// name that is not UTF-8 is decoded lossily.
    pub fn symbol_name(&self, index: u32) -> String {
        let Some(entry) = self.symbol_entry(index) else {
            return String::new();
        };
        let own = self.name_bytes(&entry);
        let bytes = match entry.definition {
            Definition::Section(s) if own.is_empty() || entry.st_type == elf::STT_SECTION.0 => {
                self.section_entry(s).map_or(&[][..], |s| s.name(self.data))
            }
            _ => own,
        };
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// The defined non-local symbol with this name (global wins over weak).
    pub fn find_symbol(&self, name: &str) -> Option<Symbol<'data>> {
        self.global_index(name.as_bytes())
            .and_then(|index| self.symbol(index))
    }

    fn global_index(&self, name: &[u8]) -> Option<u32> {
        let hash = self.tables.hasher.hash_one(name);
        self.tables
            .globals
            .find(hash, |g| {
                self.symbol_entry(g.index)
                    .is_some_and(|e| self.name_bytes(&e) == name)
            })
            .map(|g| g.index)
    }

    /// Relocation sections whose targets are loaded (the others are skipped, as Linux does).
    pub fn relocation_sections(&self) -> impl ExactSizeIterator<Item = RelocationSection<'data>> {
        let data = self.data;
        self.tables.relocation_sections.iter().map(move |r| {
            RelocationSection {
                index: r.index,
                target: r.target,
                // Validation proved the span holds whole entries.
                entries: pod::slice_from_all_bytes(r.entries.of(data)).unwrap_or(&[]),
                kinds: r.kinds,
                checked: r.checked,
            }
        })
    }

    /// The symbols GOTPCREL-family relocations use, each once, in the order of first use.
    pub fn got_symbols(&self) -> &[u32] {
        &self.tables.got_symbols
    }

    /// The module's exports (`__ksymtab_NAME` symbols), in symbol table order.
    pub fn exports(&self) -> &[Export<'data>] {
        &self.exports
    }

    /// `.modinfo` as `(key, value)` pairs, in file order. An entry without `=` has an empty value.
    pub fn modinfo(&self) -> impl Iterator<Item = (&'data str, &'data str)> + 'data {
        modinfo_pairs(self.modinfo)
    }

    /// The module's name: `.modinfo`'s `name=`, or empty.
    pub fn name(&self) -> &'data str {
        self.name
    }

    /// What validation counted.
    pub fn counts(&self) -> &ValidateCounts {
        &self.counts
    }

    /// Gives back the tables, for the next module.
    pub(crate) fn into_tables(self) -> ModuleTables {
        self.tables
    }

    pub(crate) fn section_ref(&self, index: u32) -> SectionRef {
        section_ref(self.data, &self.tables.sections, index)
    }

    /// The name errors use for the module.
    pub(crate) fn display_name(&self) -> &'data str {
        if self.name.is_empty() {
            "(unnamed)"
        } else {
            self.name
        }
    }
}

fn modinfo_pairs(modinfo: &str) -> impl Iterator<Item = (&str, &str)> {
    modinfo
        .split('\0')
        .filter(|entry| !entry.is_empty())
        .map(|entry| entry.split_once('=').unwrap_or((entry, "")))
}

/// Counts `.modinfo`'s entries and finds the value of its first `name` entry (what
/// [`modinfo_pairs`] would give, one NUL search per entry instead of a `char` search).
fn scan_modinfo(modinfo: &str) -> (usize, &str) {
    let bytes = modinfo.as_bytes();
    let mut entries = 0usize;
    let mut name = None;
    let mut start = 0usize;
    for end in memchr::memchr_iter(0, bytes).chain(core::iter::once(bytes.len())) {
        if end > start {
            entries = entries.saturating_add(1);
            if name.is_none() {
                let entry = bytes.get(start..end).unwrap_or(&[]);
                // The key is what precedes the first `=`; an entry without one is all key.
                if entry == b"name" {
                    name = Some("");
                } else if entry.starts_with(b"name=") {
                    // Both ends are ASCII bytes (`=`, NUL or the end): char boundaries.
                    name = modinfo.get(start.saturating_add(5)..end);
                }
            }
        }
        start = end.saturating_add(1);
    }
    (entries, name.unwrap_or(""))
}

/// `data[offset..offset + size]`, or `None` when out of bounds or overflowing.
fn file_range(data: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    data.get(start..end)
}

/// The bytes of the NUL-terminated string at `offset` of a string table, without the NUL.
fn c_bytes(table: &[u8], offset: u32) -> Option<&[u8]> {
    let tail = table.get(usize::try_from(offset).ok()?..)?;
    let len = memchr::memchr(0, tail)?;
    tail.get(..len)
}

/// The NUL-terminated UTF-8 string at `offset` of a string table.
fn c_str(table: &[u8], offset: u32) -> Option<&str> {
    core::str::from_utf8(c_bytes(table, offset)?).ok()
}

/// A section as errors name it (the name decoded lossily: it may be the broken part).
fn section_ref(data: &[u8], sections: &[SectionEntry], index: u32) -> SectionRef {
    let name = usize::try_from(index)
        .ok()
        .and_then(|i| sections.get(i))
        .map_or(&[][..], |s| s.name(data));
    SectionRef {
        index,
        name: String::from_utf8_lossy(name).into_owned(),
    }
}

/// Bytes of a section header table with `shnum` entries (at most 65535 × 64: cannot overflow).
fn section_table_size(shnum: u16) -> u64 {
    u64::from(shnum).saturating_mul(u64::from(SHDR_SIZE))
}

fn file_size(data: &[u8]) -> u64 {
    u64::try_from(data.len()).unwrap_or(u64::MAX)
}

fn index_u32(index: usize) -> u32 {
    // Callers iterate tables whose counts were checked to fit u32 (sections: u16, symbols:
    // a bounded slice of 24-byte entries), so this never saturates in practice.
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Decides where a section goes from its flags and name (`name_tail`: the string table from
/// the name on, NUL-terminated) (ABI.md, "Sections").
fn disposition(name_tail: &[u8], flags: u64) -> Disposition {
    let alloc = flags & elf::SHF_ALLOC.0 != 0;
    // Linux drops SHF_ALLOC from these two before layout: they are read, never loaded.
    if !alloc || name_is(name_tail, b".modinfo") || name_is(name_tail, b"__versions") {
        return Disposition::NotLoaded;
    }
    let region = if name_tail.starts_with(b".init") {
        RegionKind::Init
    } else {
        RegionKind::Core
    };
    let permission = if flags & elf::SHF_EXECINSTR.0 != 0 {
        Permission::ReadExecute
    } else if flags & elf::SHF_WRITE.0 != 0 {
        Permission::ReadWrite
    } else {
        Permission::ReadOnly
    };
    Disposition::Load { region, permission }
}

/// Validates `data` as a kmodlab (or Linux) x86-64 module and indexes it.
///
/// Never panics, whatever `data` holds: every malformation is an [`Error`].
pub fn validate(data: &[u8]) -> Result<Module<'_>, Error> {
    validate_reusing(data, &mut ModuleTables::default())
}

/// [`validate()`], building the module's tables in `spare`'s memory. On success the tables
/// move into the module ([`crate::Loader::recycle`] gives them back); on error they stay in
/// `spare`.
pub(crate) fn validate_reusing<'data>(
    data: &'data [u8],
    spare: &mut ModuleTables,
) -> Result<Module<'data>, Error> {
    spare.clear();
    let found = index(data, spare)?;
    Ok(Module {
        data,
        symtab: found.symtab,
        strtab: found.strtab,
        tables: core::mem::take(spare),
        exports: found.exports,
        modinfo: found.modinfo,
        name: found.name,
        counts: found.counts,
    })
}

/// What [`index`] found besides the tables.
struct Found<'data> {
    symtab: &'data [elf::Sym64<LE>],
    strtab: &'data [u8],
    exports: Vec<Export<'data>>,
    modinfo: &'data str,
    name: &'data str,
    counts: ValidateCounts,
}

fn index<'data>(data: &'data [u8], tables: &mut ModuleTables) -> Result<Found<'data>, Error> {
    let header = check_header(data)?;
    let mut counts = ValidateCounts::default();
    read_sections(data, header, &mut tables.sections)?;
    counts.sections = tables.sections.len();
    counts.loaded_sections = tables
        .sections
        .iter()
        .filter(|s| s.disposition != Disposition::NotLoaded)
        .count();
    check_overlaps(data, header, &tables.sections, &mut tables.parts)?;

    let symtab = read_symbols(data, tables)?;
    counts.symbols = symtab.entries.len();
    counts.undefined_symbols = tables.undefined.len();
    read_relocations(data, tables, symtab.entries, symtab.index, &mut counts)?;
    index_globals(symtab.entries, symtab.strtab, tables)?;
    let exports = find_exports(symtab.entries, symtab.strtab, tables)?;
    counts.exports = exports.len();
    let modinfo = read_modinfo(data, &tables.sections)?;
    let (entries, name) = scan_modinfo(modinfo);
    counts.modinfo_entries = entries;
    Ok(Found {
        symtab: symtab.entries,
        strtab: symtab.strtab,
        exports,
        modinfo,
        name,
        counts,
    })
}

#[derive(Clone, Copy)]
struct HeaderFields {
    shoff: u64,
    shnum: u16,
    shstrndx: u16,
}

fn check_header(data: &[u8]) -> Result<HeaderFields, Error> {
    let truncated = || Error::Truncated {
        what: "ELF header",
        offset: 0,
        size: u64::from(EHDR_SIZE),
        file_size: file_size(data),
    };
    // The magic is checked before the length so that a short non-ELF file says "bad magic".
    let magic = data.get(..4).ok_or_else(truncated)?;
    if magic != elf::ELFMAG {
        let mut found = [0u8; 4];
        found.copy_from_slice(magic);
        return Err(Error::BadMagic { found });
    }
    let (header, _) = pod::from_bytes::<elf::FileHeader64<LE>>(data).map_err(|()| truncated())?;
    let ident = &header.e_ident;
    if ident.class != elf::ELFCLASS64 {
        return Err(Error::BadClass {
            class: ident.class.0,
        });
    }
    if ident.data != elf::ELFDATA2LSB {
        return Err(Error::BadDataEncoding {
            encoding: ident.data.0,
        });
    }
    if ident.version != elf::EV_CURRENT {
        return Err(Error::BadVersion {
            version: u32::from(ident.version.0),
        });
    }
    let file_type = header.e_type.get(LE);
    if file_type != elf::ET_REL {
        return Err(Error::NotRelocatable {
            file_type: file_type.0,
        });
    }
    let machine = header.e_machine.get(LE);
    if machine != elf::EM_X86_64 {
        return Err(Error::BadMachine { machine: machine.0 });
    }
    let version = header.e_version.get(LE);
    if version != u32::from(elf::EV_CURRENT.0) {
        return Err(Error::BadVersion { version });
    }
    let ehsize = header.e_ehsize.get(LE);
    if ehsize != EHDR_SIZE {
        return Err(Error::BadHeaderSize {
            field: "e_ehsize",
            found: ehsize,
            expected: EHDR_SIZE,
        });
    }
    let shnum = header.e_shnum.get(LE);
    if shnum == 0 {
        return Err(Error::NoSections);
    }
    let shentsize = header.e_shentsize.get(LE);
    if shentsize != SHDR_SIZE {
        return Err(Error::BadHeaderSize {
            field: "e_shentsize",
            found: shentsize,
            expected: SHDR_SIZE,
        });
    }
    let shoff = header.e_shoff.get(LE);
    let table_size = section_table_size(shnum);
    if file_range(data, shoff, table_size).is_none() {
        return Err(Error::Truncated {
            what: "section header table",
            offset: shoff,
            size: table_size,
            file_size: file_size(data),
        });
    }
    let shstrndx = header.e_shstrndx.get(LE).0;
    if shstrndx >= shnum {
        return Err(Error::BadStringTableIndex {
            index: u32::from(shstrndx),
            sections: u32::from(shnum),
        });
    }
    Ok(HeaderFields {
        shoff,
        shnum,
        shstrndx,
    })
}

fn section_headers(data: &[u8], header: HeaderFields) -> &[elf::SectionHeader64<LE>] {
    // check_header proved the table is inside the file.
    file_range(data, header.shoff, section_table_size(header.shnum))
        .and_then(|bytes| pod::slice_from_all_bytes::<elf::SectionHeader64<LE>>(bytes).ok())
        .unwrap_or(&[])
}

fn read_sections(
    data: &[u8],
    header: HeaderFields,
    sections: &mut Vec<SectionEntry>,
) -> Result<(), Error> {
    let headers = section_headers(data, header);
    let shstrtab_header = headers
        .get(usize::from(header.shstrndx))
        .filter(|h| h.sh_type.get(LE) == elf::SHT_STRTAB)
        .ok_or_else(|| Error::BadStringTableIndex {
            index: u32::from(header.shstrndx),
            sections: u32::from(header.shnum),
        })?;
    let shstrtab_span = file_span(
        data,
        shstrtab_header.sh_offset.get(LE),
        shstrtab_header.sh_size.get(LE),
    )
    .ok_or_else(|| Error::SectionOutOfBounds {
        section: SectionRef {
            index: u32::from(header.shstrndx),
            name: String::new(),
        },
        offset: shstrtab_header.sh_offset.get(LE),
        size: shstrtab_header.sh_size.get(LE),
        file_size: file_size(data),
    })?;
    let shstrtab = shstrtab_span.of(data);
    // A name is NUL-terminated exactly when it starts at or before the table's last NUL, and
    // every name of an ASCII table is UTF-8: each name then costs one comparison.
    let names_end = memchr::memrchr(0, shstrtab).map_or(0, |last| last.saturating_add(1));
    let ascii = shstrtab.is_ascii();

    sections.reserve(headers.len());
    for (i, sh) in headers.iter().enumerate() {
        let index = index_u32(i);
        let name_offset = sh.sh_name.get(LE);
        let bad_name = || Error::BadSectionName {
            index,
            offset: u64::from(name_offset),
        };
        let name_at = usize::try_from(name_offset)
            .ok()
            .filter(|&at| at < names_end)
            .ok_or_else(bad_name)?;
        if !ascii {
            c_str(shstrtab, name_offset).ok_or_else(bad_name)?;
        }
        let name_tail = shstrtab.get(name_at..).unwrap_or(&[]);
        let sh_type = sh.sh_type.get(LE).0;
        let flags = sh.sh_flags.get(LE).0;
        let size = sh.sh_size.get(LE);
        let offset = sh.sh_offset.get(LE);
        let section_ref = || SectionRef {
            index,
            name: String::from_utf8_lossy(c_bytes(name_tail, 0).unwrap_or(&[])).into_owned(),
        };
        let nobits = sh_type == elf::SHT_NOBITS.0;
        let contents = if nobits || sh_type == elf::SHT_NULL.0 {
            Span::default()
        } else {
            file_span(data, offset, size).ok_or_else(|| Error::SectionOutOfBounds {
                section: section_ref(),
                offset,
                size,
                file_size: file_size(data),
            })?
        };
        let raw_align = sh.sh_addralign.get(LE);
        if raw_align > 1 && !raw_align.is_power_of_two() {
            return Err(Error::BadAlignment {
                section: section_ref(),
                alignment: raw_align,
            });
        }
        let align = raw_align.max(1);
        if flags & elf::SHF_WRITE.0 != 0 && flags & elf::SHF_EXECINSTR.0 != 0 {
            return Err(Error::WriteAndExecute {
                section: section_ref(),
            });
        }
        let disposition = if sh_type == elf::SHT_NULL.0 {
            Disposition::NotLoaded
        } else {
            disposition(name_tail, flags)
        };
        if disposition != Disposition::NotLoaded {
            if align > MAX_SECTION_ALIGN {
                return Err(Error::AlignmentTooLarge {
                    section: section_ref(),
                    alignment: align,
                    max: MAX_SECTION_ALIGN,
                });
            }
            if size > MAX_REGION_SIZE {
                return Err(Error::SectionTooLarge {
                    section: section_ref(),
                    size,
                    max: MAX_REGION_SIZE,
                });
            }
        }
        sections.push(SectionEntry {
            name_tail: Span {
                start: shstrtab_span.start.saturating_add(name_at),
                end: shstrtab_span.end,
            },
            sh_type,
            flags,
            offset,
            size,
            align,
            link: sh.sh_link.get(LE),
            info: sh.sh_info.get(LE),
            entsize: sh.sh_entsize.get(LE),
            disposition,
            contents,
        });
    }
    Ok(())
}

/// A part of the file, for the overlap check.
#[derive(Clone, Copy, Debug)]
enum Part {
    Header,
    SectionHeaders,
    Section(u32),
}

/// Refuses files whose parts (header, section header table, section contents) share bytes:
/// a well-formed object never does, and a crafted one could make one section's relocations
/// patch another's contents.
///
/// A linker writes two runs of parts, each in section order and ascending: the header and
/// the contents of the sections that are not relocation tables, and the relocation tables
/// (with GNU as they follow all contents, with `ld -r` they sit among them). When each run is
/// ascending with no part starting before the previous one ends, the check is a merge of the
/// two runs, each part compared with the other run's next one, and a comparison of the
/// section header table with every part: a few instructions a section. Otherwise (a file
/// packed differently) all parts are sorted and checked in order. Only when a part overlaps
/// are they sorted again with their names, to report the same pair whatever the packing.
fn check_overlaps(
    data: &[u8],
    header: HeaderFields,
    sections: &[SectionEntry],
    runs: &mut OverlapRuns,
) -> Result<(), Error> {
    let table = (
        header.shoff,
        header
            .shoff
            .saturating_add(section_table_size(header.shnum)),
    );
    let is_relocations =
        |s: &SectionEntry| s.sh_type == elf::SHT_RELA.0 || s.sh_type == elf::SHT_REL.0;
    let OverlapRuns {
        contents,
        relocations,
        all,
    } = runs;
    contents.push((0, u64::from(EHDR_SIZE)));
    for s in sections {
        if s.contents.start != s.contents.end {
            // read_sections proved offset + size lies inside the file.
            let part = (s.offset, s.offset.saturating_add(s.size));
            if is_relocations(s) {
                relocations.push(part);
            } else {
                contents.push(part);
            }
        }
    }
    if parts_overlap(contents, relocations, table, all) {
        report_overlap(data, header, sections)?;
    }
    Ok(())
}

/// Whether any two of the non-empty ranges of `contents`, `relocations` and `table` share
/// bytes (`all` is scratch for a file that is not packed in the usual order).
fn parts_overlap(
    contents: &[(u64, u64)],
    relocations: &[(u64, u64)],
    table: (u64, u64),
    all: &mut Vec<(u64, u64)>,
) -> bool {
    if ascending_and_disjoint(contents) && ascending_and_disjoint(relocations) {
        runs_overlap(contents, relocations)
            || contents
                .iter()
                .chain(relocations.iter())
                .any(|&(start, end)| start < table.1 && table.0 < end)
    } else {
        // Sorted by start, a range that overlaps any earlier one overlaps the one just
        // before it (every range ends at or after its start).
        all.clear();
        all.extend(contents.iter().chain(relocations.iter()).copied());
        all.push(table);
        all.sort_unstable();
        !ascending_and_disjoint(all)
    }
}

/// The scratch lists of [`check_overlaps`]: `(start, end)` of each part.
#[derive(Clone, Debug, Default)]
pub(crate) struct OverlapRuns {
    contents: Vec<(u64, u64)>,
    relocations: Vec<(u64, u64)>,
    all: Vec<(u64, u64)>,
}

impl OverlapRuns {
    fn clear(&mut self) {
        self.contents.clear();
        self.relocations.clear();
        self.all.clear();
    }
}

/// Whether each range starts at or after the end of the one before it (so the ranges are
/// sorted and share no byte).
fn ascending_and_disjoint(ranges: &[(u64, u64)]) -> bool {
    ranges
        .windows(2)
        .all(|pair| matches!(pair, [(_, end), (start, _)] if start >= end))
}

/// Whether a range of `a` shares bytes with a range of `b`, both [`ascending_and_disjoint`]:
/// in a merge of the two by start, a range that overlaps one of the other list overlaps the
/// other list's next range when it is visited (anything later starts later still, and what
/// came before it ended before the ranges of its own list that precede it).
fn runs_overlap(a: &[(u64, u64)], b: &[(u64, u64)]) -> bool {
    let (mut a, mut b) = (a, b);
    while let (Some(&(a_start, a_end)), Some(&(b_start, b_end))) = (a.first(), b.first()) {
        if a_start <= b_start {
            if a_end > b_start {
                return true;
            }
            a = a.get(1..).unwrap_or(&[]);
        } else {
            if b_end > a_start {
                return true;
            }
            b = b.get(1..).unwrap_or(&[]);
        }
    }
    false
}

/// The exact overlap report: the first pair, in `(start, end)` order, that shares bytes.
#[cold]
fn report_overlap(
    data: &[u8],
    header: HeaderFields,
    sections: &[SectionEntry],
) -> Result<(), Error> {
    let mut parts: Vec<(u64, u64, Part)> = Vec::with_capacity(sections.len().saturating_add(2));
    parts.push((0, u64::from(EHDR_SIZE), Part::Header));
    let table_end = header
        .shoff
        .saturating_add(section_table_size(header.shnum));
    parts.push((header.shoff, table_end, Part::SectionHeaders));
    for (i, s) in sections.iter().enumerate() {
        if s.contents.start == s.contents.end {
            continue;
        }
        let end = s.offset.saturating_add(s.size);
        parts.push((s.offset, end, Part::Section(index_u32(i))));
    }
    parts.sort_unstable_by_key(|&(start, end, _)| (start, end));
    let describe = |part: Part| -> String {
        match part {
            Part::Header => String::from("the ELF header"),
            Part::SectionHeaders => String::from("the section header table"),
            Part::Section(i) => {
                let section = section_ref(data, sections, i);
                alloc::format!("section [{i}] {}", section.name)
            }
        }
    };
    let mut furthest: Option<(u64, Part)> = None;
    for &(start, end, part) in &parts {
        if let Some((prev_end, prev)) = furthest
            && start < prev_end
        {
            return Err(Error::SectionsOverlap {
                first: describe(prev),
                second: describe(part),
            });
        }
        if furthest.is_none_or(|(prev_end, _)| end > prev_end) {
            furthest = Some((end, part));
        }
    }
    Ok(())
}

struct SymbolTable<'data> {
    index: u32,
    entries: &'data [elf::Sym64<LE>],
    strtab: &'data [u8],
}

fn check_table_shape(
    data: &[u8],
    sections: &[SectionEntry],
    index: u32,
    entsize: u64,
) -> Result<(), Error> {
    let Some(section) = usize::try_from(index).ok().and_then(|i| sections.get(i)) else {
        return Ok(());
    };
    if section.entsize != entsize {
        return Err(Error::BadEntrySize {
            section: section_ref(data, sections, index),
            entsize: section.entsize,
            expected: entsize,
        });
    }
    if section.size.checked_rem(entsize) != Some(0) {
        return Err(Error::BadTableSize {
            section: section_ref(data, sections, index),
            size: section.size,
            entsize,
        });
    }
    Ok(())
}

/// The name of a symbol for an error message, decoded lossily.
fn lossy_name(strtab: &[u8], st_name: u32) -> String {
    String::from_utf8_lossy(c_bytes(strtab, st_name).unwrap_or(&[])).into_owned()
}

fn read_symbols<'data>(
    data: &'data [u8],
    tables: &mut ModuleTables,
) -> Result<SymbolTable<'data>, Error> {
    let sections = &tables.sections;
    let mut symtabs = sections
        .iter()
        .enumerate()
        .filter(|(_, s)| s.sh_type == elf::SHT_SYMTAB.0);
    let (symtab_index, symtab) = symtabs.next().ok_or(Error::MissingSymbolTable)?;
    let symtab_index = index_u32(symtab_index);
    if let Some((second, _)) = symtabs.next() {
        return Err(Error::MultipleSymbolTables {
            first: section_ref(data, sections, symtab_index),
            second: section_ref(data, sections, index_u32(second)),
        });
    }
    check_table_shape(data, sections, symtab_index, SYM_SIZE)?;
    let strtab = sections
        .get(usize::try_from(symtab.link).unwrap_or(usize::MAX))
        .filter(|s| s.sh_type == elf::SHT_STRTAB.0)
        .ok_or_else(|| Error::BadLink {
            section: section_ref(data, sections, symtab_index),
            link: symtab.link,
            expected: "a string table",
        })?
        .contents
        .of(data);
    let table_too_large = || Error::BadTableSize {
        section: section_ref(data, sections, symtab_index),
        size: symtab.size,
        entsize: SYM_SIZE,
    };
    let entries = pod::slice_from_all_bytes::<elf::Sym64<LE>>(symtab.contents.of(data))
        .map_err(|()| table_too_large())?;
    if u32::try_from(entries.len()).is_err() {
        return Err(table_too_large());
    }
    // A name is NUL-terminated inside the table exactly when it starts at or before the
    // table's last NUL: one comparison per symbol instead of a scan.
    let names_end = memchr::memrchr(0, strtab).map_or(0, |last| last.saturating_add(1));
    if !scan_symbols(entries, strtab, names_end, tables) {
        return Err(symbol_fault(
            data,
            &tables.sections,
            entries,
            strtab,
            names_end,
        ));
    }
    Ok(SymbolTable {
        index: symtab_index,
        entries,
        strtab,
    })
}

/// Checks every symbol and records what later steps need (flags, undefined symbols, defined
/// non-local ones, defined ones named like an export): the per-symbol loop of validation,
/// with one branch per symbol kind, which the table's order (locals, then globals, most
/// undefined ones together) makes predictable. Faults are ORed, not branched on: returns
/// `false` when some symbol is wrong, and [`symbol_fault`] then finds the first fault.
fn scan_symbols(
    entries: &[elf::Sym64<LE>],
    strtab: &[u8],
    names_end: usize,
    tables: &mut ModuleTables,
) -> bool {
    let ModuleTables {
        sections,
        section_limits,
        global_candidates,
        export_candidates,
        symbol_flags,
        undefined,
        ..
    } = tables;
    section_limits.extend(sections.iter().map(|s| {
        let flag = if s.disposition == Disposition::NotLoaded {
            IN_UNLOADED_SECTION
        } else {
            0
        };
        (s.size, flag)
    }));
    // What every index past the sections reads (such an index is a fault).
    section_limits.push((0, 0));
    // One more: the relocation scan's sentinel for indices past the table.
    symbol_flags.resize(entries.len().saturating_add(1), OUT_OF_RANGE | ALWAYS);
    let mut lists = SymbolLists {
        undefined: core::mem::take(undefined),
        globals: core::mem::take(global_candidates),
        exports: core::mem::take(export_candidates),
    };
    let ok = scan_symbol_entries(
        entries,
        strtab,
        names_end,
        section_limits,
        sections.len(),
        symbol_flags,
        &mut lists,
    );
    *undefined = lists.undefined;
    *global_candidates = lists.globals;
    *export_candidates = lists.exports;
    ok
}

/// The lists [`scan_symbol_entries`] fills, moved out of the tables so that the loop keeps
/// them in registers (through `tables` it would reload every field after each store).
struct SymbolLists {
    undefined: Vec<u32>,
    globals: Vec<u32>,
    exports: Vec<u32>,
}

/// The loop of [`scan_symbols`].
#[inline(never)]
fn scan_symbol_entries(
    entries: &[elf::Sym64<LE>],
    strtab: &[u8],
    names_end: usize,
    section_limits: &[(u64, u8)],
    section_count: usize,
    symbol_flags: &mut [u8],
    lists: &mut SymbolLists,
) -> bool {
    const PREFIX_LEN: usize = KSYMTAB_PREFIX.len();
    let prefix: &[u8; PREFIX_LEN] = KSYMTAB_PREFIX
        .as_bytes()
        .first_chunk()
        .unwrap_or(&[0; PREFIX_LEN]);
    // Section indices a symbol may use: below the section count and below SHN_LORESERVE
    // (SHN_COMMON and the other reserved values are faults).
    let usable = section_count.min(usize::from(elf::SHN_LORESERVE));
    // Indices past the sections read the sentinel; they are faults (`shndx >= usable`).
    let Some(last_limit) = section_limits.len().checked_sub(1) else {
        return false;
    };
    let mut bad = false;
    for ((i, sym), flags) in entries.iter().enumerate().zip(symbol_flags.iter_mut()) {
        let st_name = usize::try_from(sym.st_name.get(LE)).unwrap_or(usize::MAX);
        let shndx = usize::from(sym.st_shndx.get(LE).0);
        let value = sym.st_value.get(LE);
        let in_section =
            shndx != usize::from(elf::SHN_UNDEF.0) && shndx != usize::from(elf::SHN_ABS.0);
        let (size, unloaded) = section_limits
            .get(shndx.min(last_limit))
            .copied()
            .unwrap_or((0, 0));
        bad |= (st_name >= names_end) | (in_section & ((shndx >= usable) | (value > size)));
        *flags = ALWAYS | if in_section { unloaded } else { 0 };
        let index = index_u32(i);
        if shndx == usize::from(elf::SHN_UNDEF.0) {
            if i != 0 {
                lists.undefined.push(index);
            }
            continue;
        }
        if sym.st_bind() != elf::STB_LOCAL && sym.st_type() != elf::STT_SECTION {
            lists.globals.push(index);
        }
        // A fixed-size comparison: this runs for every defined symbol.
        if strtab
            .get(st_name..)
            .and_then(|tail| tail.first_chunk::<PREFIX_LEN>())
            == Some(prefix)
        {
            lists.exports.push(index);
        }
    }
    !bad
}

/// The first fault among the symbols, in table order and, for one symbol, in the order the
/// checks are documented (name, COMMON, section index, value).
#[cold]
fn symbol_fault(
    data: &[u8],
    sections: &[SectionEntry],
    entries: &[elf::Sym64<LE>],
    strtab: &[u8],
    names_end: usize,
) -> Error {
    for (i, sym) in entries.iter().enumerate() {
        let index = index_u32(i);
        let st_name = sym.st_name.get(LE);
        if usize::try_from(st_name).map_or(true, |offset| offset >= names_end) {
            return Error::BadSymbolName {
                index,
                offset: u64::from(st_name),
            };
        }
        let shndx = sym.st_shndx.get(LE);
        let value = sym.st_value.get(LE);
        if shndx == elf::SHN_UNDEF || shndx == elf::SHN_ABS {
            continue;
        }
        if shndx == elf::SHN_COMMON {
            return Error::CommonSymbol {
                symbol: lossy_name(strtab, st_name),
            };
        }
        let Some(section) = sections
            .get(usize::from(shndx.0))
            .filter(|_| !shndx.is_reserved())
        else {
            return Error::BadSymbolSection {
                index,
                symbol: lossy_name(strtab, st_name),
                shndx: shndx.0,
            };
        };
        // A symbol may sit at the very end (`__stop_*`-style markers), not past it.
        if value > section.size {
            return Error::SymbolOutsideSection {
                symbol: lossy_name(strtab, st_name),
                section: section_ref(data, sections, u32::from(shndx.0)),
                value,
                section_size: section.size,
            };
        }
    }
    // scan_symbols found a fault: one of the checks above repeats it.
    Error::BadTableSize {
        section: SectionRef {
            index: 0,
            name: String::new(),
        },
        size: 0,
        entsize: SYM_SIZE,
    }
}

/// Checks every relocation section whose target is loaded, and every entry of it.
fn read_relocations(
    data: &[u8],
    tables: &mut ModuleTables,
    symbols: &[elf::Sym64<LE>],
    symtab_index: u32,
    counts: &mut ValidateCounts,
) -> Result<(), Error> {
    let ModuleTables {
        sections,
        symbol_flags,
        relocation_sections,
        got_symbols,
        ..
    } = tables;
    let symbol_count = index_u32(symbols.len());
    let mut by_kind = [0u64; RelocationKind::ALL.len()];
    for (i, section) in sections.iter().enumerate() {
        let index = index_u32(i);
        let is_rela = section.sh_type == elf::SHT_RELA.0;
        let is_rel = section.sh_type == elf::SHT_REL.0;
        if !is_rela && !is_rel {
            continue;
        }
        let target_index = section.info;
        let target = sections
            .get(usize::try_from(target_index).unwrap_or(usize::MAX))
            .filter(|_| target_index != 0)
            .ok_or_else(|| Error::BadRelocationTarget {
                section: section_ref(data, sections, index),
                target: target_index,
            })?;
        if target.disposition == Disposition::NotLoaded {
            // Linux skips relocation sections whose target is not SHF_ALLOC (debug info,
            // .modinfo); so do we, without reading them.
            counts.skipped_relocation_sections =
                counts.skipped_relocation_sections.saturating_add(1);
            continue;
        }
        if is_rel {
            return Err(Error::RelNotSupported {
                section: section_ref(data, sections, index),
            });
        }
        check_table_shape(data, sections, index, RELA_SIZE)?;
        if section.link != symtab_index {
            return Err(Error::BadLink {
                section: section_ref(data, sections, index),
                link: section.link,
                expected: "the symbol table",
            });
        }
        let bytes = section.contents.of(data);
        if target.is_nobits() && !bytes.is_empty() {
            return Err(Error::RelocationInNobits {
                section: section_ref(data, sections, target_index),
            });
        }
        let entries = pod::slice_from_all_bytes::<elf::Rela64<LE>>(bytes).map_err(|()| {
            Error::BadTableSize {
                section: section_ref(data, sections, index),
                size: section.size,
                entsize: RELA_SIZE,
            }
        })?;
        let mut kinds = KindSet::default();
        // Only code can use the GOT, and the layout needs the GOT's size: the entries of a
        // section of code are checked here, the others where they are applied (one read of
        // them instead of two).
        let checked = matches!(
            target.disposition,
            Disposition::Load {
                permission: Permission::ReadExecute,
                ..
            }
        );
        if !checked {
            counts.relocations_checked_when_applied = counts
                .relocations_checked_when_applied
                .saturating_add(u64::try_from(entries.len()).unwrap_or(u64::MAX));
        } else if !scan_entries(entries, target.size, symbol_flags, &mut by_kind, &mut kinds) {
            // Something in this section is wrong or needs more than the scan does: go over
            // it again, one entry at a time, in order (without the scan's sentinel).
            let flags = symbol_flags.get_mut(..symbols.len()).unwrap_or_default();
            check_entries(entries, target.size, flags, got_symbols).map_err(|fault| {
                fault.into_error(data, sections, symbols, target_index, symbol_count)
            })?;
        }
        relocation_sections.push(RelocationSectionEntry {
            index,
            target: target_index,
            entries: section.contents,
            kinds,
            checked,
        });
    }
    counts.relocation_sections = relocation_sections.len();
    let mut relocations = RelocationCounts::default();
    for (kind, &count) in RelocationKind::ALL.iter().zip(by_kind.iter()) {
        relocations.add_many(*kind, count);
    }
    counts.relocations = relocations;
    Ok(())
}

/// The checks of [`check_entries`] for one entry of a relocation section whose target is not
/// executable (that validation left to relocation), with the same errors in the same order;
/// a GOTPCREL-family type, which needs a GOT slot that only code sections get, is refused as
/// unsupported there. Relocation calls it for the entries its fast loop does not apply.
#[cold]
pub(crate) fn check_entry_when_applied(
    module: &Module<'_>,
    rela: &elf::Rela64<LE>,
    target: u32,
) -> Result<(), Error> {
    let symbols = module.symtab;
    let sections = &module.tables.sections;
    let data = module.data;
    let target_size = module.section_entry(target).map_or(0, |t| t.size);
    let fault = (|| {
        let offset = rela.r_offset.get(LE);
        let r_type = rela.r_type(LE, false).0;
        let info = type_info_of(r_type);
        if info.kind.is_none() || info.got {
            return Err(EntryFault::Unsupported { offset, r_type });
        }
        let symbol = rela.r_sym(LE, false);
        let flags = usize::try_from(symbol)
            .ok()
            .filter(|&i| i < symbols.len())
            .and_then(|i| module.tables.symbol_flags.get(i))
            .copied()
            .ok_or(EntryFault::SymbolOutOfRange { offset, symbol })?;
        let width = info.width;
        if offset
            .checked_add(width)
            .is_none_or(|end| end > target_size)
        {
            return Err(EntryFault::Outside { offset, width });
        }
        if width != 0 && flags & IN_UNLOADED_SECTION != 0 {
            return Err(EntryFault::Unloaded { offset, symbol });
        }
        Ok(())
    })();
    fault.map_err(|fault| {
        fault.into_error(data, sections, symbols, target, index_u32(symbols.len()))
    })
}

/// What is wrong with a relocation entry: plain values, so the loop builds no error (the
/// caller names the section and symbol).
enum EntryFault {
    Unsupported { offset: u64, r_type: u32 },
    SymbolOutOfRange { offset: u64, symbol: u32 },
    Outside { offset: u64, width: u64 },
    Unloaded { offset: u64, symbol: u32 },
}

impl EntryFault {
    fn into_error(
        self,
        data: &[u8],
        sections: &[SectionEntry],
        symbols: &[elf::Sym64<LE>],
        target: u32,
        symbol_count: u32,
    ) -> Error {
        let section = section_ref(data, sections, target);
        match self {
            Self::Unsupported { offset, r_type } => Error::UnsupportedRelocation {
                section,
                offset,
                r_type,
            },
            Self::SymbolOutOfRange { offset, symbol } => Error::RelocationSymbolOutOfRange {
                section,
                offset,
                symbol,
                symbols: symbol_count,
            },
            Self::Outside { offset, width } => Error::RelocationOutsideSection {
                size: usize::try_from(target)
                    .ok()
                    .and_then(|t| sections.get(t))
                    .map_or(0, |t| t.size),
                section,
                offset,
                width,
            },
            Self::Unloaded { offset, symbol } => {
                let entry = usize::try_from(symbol)
                    .ok()
                    .and_then(|s| symbols.get(s))
                    .map(decode_symbol);
                let home = match entry.map(|e| e.definition) {
                    Some(Definition::Section(s)) => s,
                    _ => 0,
                };
                let symbol_section = section_ref(data, sections, home);
                let strtab = symbol_strtab(data, sections);
                let own = entry.map_or(String::new(), |e| lossy_name(strtab, e.st_name));
                Error::RelocationAgainstUnloadedSection {
                    section,
                    offset,
                    symbol: if own.is_empty() {
                        symbol_section.name.clone()
                    } else {
                        own
                    },
                    symbol_section,
                }
            }
        }
    }
}

/// The symbol string table (for error messages, after validation found it).
fn symbol_strtab<'a>(data: &'a [u8], sections: &[SectionEntry]) -> &'a [u8] {
    sections
        .iter()
        .find(|s| s.sh_type == elf::SHT_SYMTAB.0)
        .and_then(|s| sections.get(usize::try_from(s.link).ok()?))
        .map_or(&[][..], |s| s.contents.of(data))
}

/// Set in every symbol's flags as the scan reads them, so that one mask test also catches a
/// type that is rare whatever its symbol.
const ALWAYS: u8 = 0x80;

/// What the validation scan reads about a relocation type.
#[derive(Clone, Copy, Debug)]
struct EntryCheck {
    /// 1 in the kind's field of the packed counter.
    unit: u128,
    /// Bytes written.
    width: u64,
    /// Symbol flags (with [`ALWAYS`]) that make an entry of this type rare: `OUT_OF_RANGE` for
    /// every type, `IN_UNLOADED_SECTION` for types that write, `ALWAYS` for unsupported types
    /// and for the GOTPCREL family (whose symbols [`check_entries`] gives GOT slots).
    mask: u8,
}

const fn entry_check(r_type: u32) -> EntryCheck {
    let info = type_info(r_type);
    let mut mask = OUT_OF_RANGE;
    if info.width != 0 {
        mask |= IN_UNLOADED_SECTION;
    }
    if info.kind.is_none() || info.got {
        mask |= ALWAYS;
    }
    EntryCheck {
        unit: info.count_unit,
        width: info.width,
        mask,
    }
}

/// [`EntryCheck`] of every ELF type up to 42, then one for every larger type.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build, it cannot panic"
)]
const ENTRY_CHECKS: [EntryCheck; 44] = {
    let mut table = [entry_check(u32::MAX); 44];
    let mut r_type = 0;
    while r_type < 43 {
        table[r_type] = entry_check(r_type as u32);
        r_type += 1;
    }
    table
};

/// Checks and counts one relocation section's entries, the hot loop of validation: returns
/// `false` when some entry is wrong or rare (unsupported type, symbol out of range, field
/// outside the section, a symbol without an address, a GOT kind), or the section is too small
/// for the fast test of field ranges, which [`check_entries`] then handles exactly.
///
/// `symbol_flags` has one more element than there are symbols: `OUT_OF_RANGE`, which every
/// index past the table reads.
fn scan_entries(
    entries: &[elf::Rela64<LE>],
    target_size: u64,
    symbol_flags: &[u8],
    by_kind: &mut [u64; RelocationKind::ALL.len()],
    kinds: &mut KindSet,
) -> bool {
    let mut ok = target_size >= 8;
    for chunk in entries.chunks(COUNT_FIELD_MAX) {
        let (chunk_ok, packed) = scan_chunk(chunk, target_size, symbol_flags);
        ok &= chunk_ok;
        for (field, count) in by_kind.iter_mut().enumerate() {
            let shift = COUNT_FIELD_BITS.saturating_mul(index_u32(field));
            let n = packed.checked_shr(shift).unwrap_or(0) & u128::from(COUNT_FIELD_MAX as u32);
            *count = count.wrapping_add(u64::try_from(n).unwrap_or(0));
            if n != 0 {
                kinds.0 |= 1u16.checked_shl(index_u32(field)).unwrap_or(0);
            }
        }
    }
    ok
}

/// [`scan_entries`] for at most [`COUNT_FIELD_MAX`] entries of a section of at least 8 bytes;
/// returns whether none is rare, and the packed kind counter. No branch per entry: faults are
/// ORed, kinds are counted in 12-bit fields of one register.
#[inline(never)]
fn scan_chunk(entries: &[elf::Rela64<LE>], target_size: u64, symbol_flags: &[u8]) -> (bool, u128) {
    const LAST: usize = ENTRY_CHECKS.len() - 1;
    const NO_CHECK: EntryCheck = entry_check(u32::MAX);
    // The sentinel: indices past the table are clamped to it (no branch, no bounds failure).
    let Some(sentinel) = symbol_flags.len().checked_sub(1) else {
        return (false, 0);
    };
    let mut rare = 0u8;
    let mut packed = 0u128;
    for rela in entries {
        let offset = rela.r_offset.get(LE);
        let info = rela.r_info.get(LE);
        let r_type = usize::try_from(info as u32).map_or(LAST, |t| t.min(LAST));
        let check = ENTRY_CHECKS.get(r_type).unwrap_or(&NO_CHECK);
        let symbol = usize::try_from(info >> 32).map_or(sentinel, |s| s.min(sentinel));
        let flags = symbol_flags
            .get(symbol)
            .copied()
            .unwrap_or(OUT_OF_RANGE | ALWAYS);
        // The field `offset..offset + width` lies inside the section, without an overflowing
        // sum: the section has at least 8 bytes, and widths are at most 8.
        let outside = offset > target_size.wrapping_sub(check.width);
        rare |= (flags & check.mask) | u8::from(outside);
        packed = packed.wrapping_add(check.unit);
    }
    (rare == 0, packed)
}

/// Checks one relocation section's entries in order, reporting the first fault, and gives
/// GOT slots to the symbols GOT kinds use (in order of first use). The entries were counted
/// already.
fn check_entries(
    entries: &[elf::Rela64<LE>],
    target_size: u64,
    symbol_flags: &mut [u8],
    got_symbols: &mut Vec<u32>,
) -> Result<(), EntryFault> {
    for rela in entries {
        let offset = rela.r_offset.get(LE);
        let r_type = rela.r_type(LE, false).0;
        let info = type_info_of(r_type);
        if info.kind.is_none() {
            return Err(EntryFault::Unsupported { offset, r_type });
        }
        let symbol_index = rela.r_sym(LE, false);
        let flags = symbol_flags
            .get_mut(usize::try_from(symbol_index).unwrap_or(usize::MAX))
            .ok_or(EntryFault::SymbolOutOfRange {
                offset,
                symbol: symbol_index,
            })?;
        let width = info.width;
        if offset
            .checked_add(width)
            .is_none_or(|end| end > target_size)
        {
            return Err(EntryFault::Outside { offset, width });
        }
        if width != 0 && *flags & IN_UNLOADED_SECTION != 0 {
            return Err(EntryFault::Unloaded {
                offset,
                symbol: symbol_index,
            });
        }
        if info.got && *flags & USES_GOT == 0 {
            *flags |= USES_GOT;
            got_symbols.push(symbol_index);
        }
    }
    Ok(())
}

fn index_globals(
    symbols: &[elf::Sym64<LE>],
    strtab: &[u8],
    tables: &mut ModuleTables,
) -> Result<(), Error> {
    let ModuleTables {
        global_candidates,
        globals,
        hasher,
        ..
    } = tables;
    globals.reserve(global_candidates.len(), |g| g.hash);
    let binding_of = |index: u32| {
        usize::try_from(index)
            .ok()
            .and_then(|i| symbols.get(i))
            .map(|s| s.st_bind())
    };
    for &index in global_candidates.iter() {
        let Some(sym) = usize::try_from(index).ok().and_then(|i| symbols.get(i)) else {
            continue;
        };
        let st_name = sym.st_name.get(LE);
        let name = c_bytes(strtab, st_name).unwrap_or(&[]);
        if name.is_empty() {
            continue;
        }
        let weak = sym.st_bind() == elf::STB_WEAK;
        let hash = hasher.hash_one(name);
        let name_of = |g: &GlobalEntry| {
            usize::try_from(g.index)
                .ok()
                .and_then(|i| symbols.get(i))
                .and_then(|s| {
                    let start = usize::try_from(s.st_name.get(LE)).ok()?;
                    strtab.get(start..start.checked_add(usize::try_from(g.name_len).ok()?)?)
                })
        };
        match globals.entry(
            hash,
            |g| g.name_len as usize == name.len() && name_of(g) == Some(name),
            |g| g.hash,
        ) {
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(GlobalEntry {
                    hash,
                    index,
                    name_len: index_u32(name.len()),
                });
            }
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let existing_is_weak = binding_of(o.get().index) == Some(elf::STB_WEAK);
                match (existing_is_weak, weak) {
                    (true, false) => o.get_mut().index = index,
                    (_, true) => {}
                    (false, false) => {
                        return Err(Error::DuplicateSymbol {
                            symbol: String::from_utf8_lossy(name).into_owned(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

fn find_exports<'data>(
    symbols: &[elf::Sym64<LE>],
    strtab: &'data [u8],
    tables: &ModuleTables,
) -> Result<Vec<Export<'data>>, Error> {
    const PREFIX_LEN: usize = KSYMTAB_PREFIX.len();
    let prefix: &[u8; PREFIX_LEN] = KSYMTAB_PREFIX
        .as_bytes()
        .first_chunk()
        .unwrap_or(&[0; PREFIX_LEN]);
    let mut exports = Vec::new();
    // The symbol scan found the defined symbols named `__ksymtab_…`.
    for &index in &tables.export_candidates {
        let Some(sym) = usize::try_from(index)
            .ok()
            .and_then(|i| symbols.get(i))
            .map(decode_symbol)
        else {
            continue;
        };
        let exported_bytes = c_bytes(strtab, sym.st_name)
            .and_then(|name| name.get(prefix.len()..))
            .unwrap_or(&[]);
        if exported_bytes.is_empty() {
            continue;
        }
        // The exported name goes into export tables as text.
        let exported = core::str::from_utf8(exported_bytes).map_err(|_| Error::BadSymbolName {
            index,
            offset: u64::from(sym.st_name),
        })?;
        // ABI.md wants the exported symbol global; Linux also exports file-local functions,
        // so a unique local definition is accepted when there is no global one.
        let global = {
            let hash = tables.hasher.hash_one(exported_bytes);
            tables
                .globals
                .find(hash, |g| {
                    usize::try_from(g.index)
                        .ok()
                        .and_then(|i| symbols.get(i))
                        .and_then(|s| c_bytes(strtab, s.st_name.get(LE)))
                        == Some(exported_bytes)
                })
                .map(|g| g.index)
        };
        let definition = global.or_else(|| {
            let mut locals = symbols
                .iter()
                .map(decode_symbol)
                .enumerate()
                .filter(|(_, s)| {
                    s.binding == Binding::Local
                        && s.definition != Definition::Undefined
                        && names_equal(strtab, s.st_name, exported_bytes)
                });
            let (first, _) = locals.next()?;
            locals.next().is_none().then_some(index_u32(first))
        });
        // An export must have an address once loaded: defined in a loaded section, or absolute.
        let symbol = definition
            .filter(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| symbols.get(i))
                    .map(decode_symbol)
                    .is_some_and(|s| match s.definition {
                        Definition::Section(section) => tables
                            .sections
                            .get(usize::try_from(section).unwrap_or(usize::MAX))
                            .is_some_and(|sec| sec.disposition != Disposition::NotLoaded),
                        Definition::Absolute => true,
                        Definition::Undefined => false,
                    })
            })
            .ok_or_else(|| Error::ExportNotDefined {
                export: String::from(exported),
            })?;
        exports.push(Export {
            name: exported,
            symbol,
        });
    }
    Ok(exports)
}

/// Whether the NUL-terminated string at the start of `tail` is exactly `name`: a comparison of
/// fixed size, which compiles to a few integer compares instead of a call.
fn name_is<const N: usize>(tail: &[u8], name: &[u8; N]) -> bool {
    tail.first_chunk::<N>() == Some(name) && tail.get(N) == Some(&0)
}

/// Whether the string at `offset` of `strtab` is exactly `name`.
fn names_equal(strtab: &[u8], offset: u32, name: &[u8]) -> bool {
    let Ok(start) = usize::try_from(offset) else {
        return false;
    };
    let Some(end) = start.checked_add(name.len()) else {
        return false;
    };
    strtab.get(start..end) == Some(name) && strtab.get(end) == Some(&0)
}

fn read_modinfo<'data>(data: &'data [u8], sections: &[SectionEntry]) -> Result<&'data str, Error> {
    let Some(section) = sections
        .iter()
        .find(|s| name_is(s.name_tail.of(data), b".modinfo") && !s.is_nobits())
    else {
        return Ok("");
    };
    core::str::from_utf8(section.contents.of(data)).map_err(|e| Error::BadModinfo {
        offset: u64::try_from(e.valid_up_to()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod overlap_tests {
    use super::parts_overlap;

    /// The check must agree with comparing every pair, for parts packed in the usual order
    /// (each run ascending), and any other way.
    #[test]
    fn overlap_check_agrees_with_every_pair() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut all = Vec::new();
        let (mut fast, mut overlapping) = (0, 0);
        for round in 0..50_000 {
            let mut runs: [Vec<(u64, u64)>; 2] = Default::default();
            for run in runs.iter_mut() {
                let mut at = next() % 16;
                for _ in 0..next() % 6 {
                    // Mostly a linker's packing (ascending, gaps), sometimes not.
                    let start = if next() % 8 == 0 {
                        next() % 96
                    } else {
                        at + next() % 4
                    };
                    let end = start + 1 + next() % 12;
                    run.push((start, end));
                    at = end;
                }
            }
            let table_start = next() % 128;
            let table = (table_start, table_start + 1 + next() % 32);
            let parts: Vec<(u64, u64)> = runs[0]
                .iter()
                .chain(runs[1].iter())
                .copied()
                .chain([table])
                .collect();
            let mut expected = false;
            for (i, a) in parts.iter().enumerate() {
                for b in &parts[i + 1..] {
                    expected |= a.0 < b.1 && b.0 < a.1;
                }
            }
            let got = parts_overlap(&runs[0], &runs[1], table, &mut all);
            assert_eq!(got, expected, "round {round}: {runs:?} {table:?}");
            fast += usize::from(runs.iter().all(|r| r.windows(2).all(|w| w[1].0 >= w[0].1)));
            overlapping += usize::from(expected);
        }
        // Both paths and both answers were exercised.
        assert!(fast > 10_000 && fast < 49_000, "{fast}");
        assert!(overlapping > 5_000 && overlapping < 45_000, "{overlapping}");
    }
}
