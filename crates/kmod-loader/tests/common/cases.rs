//! Malformed modules: each one a real module with one field corrupted (or the file cut), and
//! the error the loader must give. The per-error tests and the committed corpus
//! (`tests/corpus/`) are both generated from this one list.

use kmod_loader::ErrorKind;

use super::edit::{Elf, Ra, Sh, St};

pub struct Case {
    /// Also the corpus file name (`NAME.ko`).
    pub name: &'static str,
    /// The fixture it starts from.
    pub base: &'static str,
    pub mutate: fn(&mut Elf),
    pub expected: ErrorKind,
}

const C: &str = "c/cfix.ko";
const LINUX: &str = "linux/libcrc32c.ko";

const SHT_PROGBITS: u64 = 1;
const SHT_SYMTAB: u64 = 2;
const SHT_REL: u64 = 9;
const SHF_WRITE: u64 = 1;
const SHN_COMMON: u64 = 0xfff2;
const STB_GLOBAL_NOTYPE: u64 = 0x10;

pub fn cases() -> Vec<Case> {
    use ErrorKind as K;
    let case = |name, base, mutate: fn(&mut Elf), expected| Case {
        name,
        base,
        mutate,
        expected,
    };
    vec![
        // ---- ELF header
        case("truncated_header", C, |e| e.truncate(40), K::Truncated),
        case("truncated_magic", C, |e| e.truncate(3), K::Truncated),
        case(
            "truncated_half",
            LINUX,
            |e| e.truncate(e.bytes.len() / 2),
            K::Truncated,
        ),
        case(
            "truncated_section_headers",
            C,
            |e| e.truncate(e.shoff() + 100),
            K::Truncated,
        ),
        case(
            "section_headers_offset_huge",
            C,
            |e| e.set(0x28, 8, u64::MAX - 63),
            K::Truncated,
        ),
        case(
            "bad_magic",
            C,
            |e| e.set(0, 4, u64::from(u32::from_le_bytes(*b"\x7fELG"))),
            K::BadMagic,
        ),
        case("bad_class_32", C, |e| e.set(4, 1, 1), K::BadClass),
        case(
            "bad_data_big_endian",
            C,
            |e| e.set(5, 1, 2),
            K::BadDataEncoding,
        ),
        case("bad_ident_version", C, |e| e.set(6, 1, 0), K::BadVersion),
        case("bad_e_version", C, |e| e.set(0x14, 4, 2), K::BadVersion),
        case(
            "not_relocatable_exec",
            C,
            |e| e.set(0x10, 2, 2),
            K::NotRelocatable,
        ),
        case(
            "not_relocatable_dyn",
            LINUX,
            |e| e.set(0x10, 2, 3),
            K::NotRelocatable,
        ),
        case("bad_machine_i386", C, |e| e.set(0x12, 2, 3), K::BadMachine),
        case(
            "bad_machine_aarch64",
            LINUX,
            |e| e.set(0x12, 2, 183),
            K::BadMachine,
        ),
        case("bad_ehsize", C, |e| e.set(0x34, 2, 52), K::BadHeaderSize),
        case("bad_shentsize", C, |e| e.set(0x3a, 2, 40), K::BadHeaderSize),
        case("no_sections", C, |e| e.set(0x3c, 2, 0), K::NoSections),
        case(
            "shstrndx_out_of_range",
            C,
            |e| e.set(0x3e, 2, 0xfff0),
            K::BadStringTableIndex,
        ),
        case(
            "shstrndx_not_strtab",
            C,
            |e| e.set(0x3e, 2, 2),
            K::BadStringTableIndex,
        ),
        // ---- sections
        case(
            "text_offset_past_end",
            C,
            |e| {
                let n = e.bytes.len() as u64;
                e.sh(".text", Sh::Offset, n)
            },
            K::SectionOutOfBounds,
        ),
        case(
            "text_offset_huge",
            C,
            |e| e.sh(".text", Sh::Offset, u64::MAX - 8),
            K::SectionOutOfBounds,
        ),
        case(
            "text_size_huge",
            C,
            |e| e.sh(".text", Sh::Size, u64::MAX),
            K::SectionOutOfBounds,
        ),
        case(
            "symtab_size_huge",
            LINUX,
            |e| e.sh(".symtab", Sh::Size, 1 << 62),
            K::SectionOutOfBounds,
        ),
        case(
            "shstrtab_out_of_bounds",
            C,
            |e| e.sh(".shstrtab", Sh::Offset, 1 << 40),
            K::SectionOutOfBounds,
        ),
        case(
            "overlap_data_on_text",
            C,
            |e| {
                let at = e.contents_at(".text") as u64;
                e.sh(".data", Sh::Offset, at)
            },
            K::SectionsOverlap,
        ),
        case(
            "overlap_text_on_header",
            LINUX,
            |e| e.sh(".text", Sh::Offset, 8),
            K::SectionsOverlap,
        ),
        case(
            "overlap_section_headers",
            C,
            |e| {
                let at = e.shoff() as u64;
                e.sh(".rodata", Sh::Offset, at)
            },
            K::SectionsOverlap,
        ),
        case(
            "section_name_out_of_range",
            C,
            |e| e.sh(".text", Sh::Name, 0xffff_ff00),
            K::BadSectionName,
        ),
        case(
            "alignment_not_power_of_two",
            C,
            |e| e.sh(".data", Sh::Align, 24),
            K::BadAlignment,
        ),
        case(
            "alignment_huge",
            C,
            |e| e.sh(".text", Sh::Align, 1 << 40),
            K::AlignmentTooLarge,
        ),
        case(
            "bss_size_huge",
            C,
            |e| e.sh(".bss", Sh::Size, 1 << 40),
            K::SectionTooLarge,
        ),
        case(
            "bss_size_max",
            LINUX,
            |e| e.sh(".bss", Sh::Size, u64::MAX),
            K::SectionTooLarge,
        ),
        case(
            "text_writable",
            C,
            |e| {
                let f = e.section_field(e.section(".text"), Sh::Flags);
                e.sh(".text", Sh::Flags, f | SHF_WRITE)
            },
            K::WriteAndExecute,
        ),
        case(
            "linux_text_writable",
            LINUX,
            |e| {
                let f = e.section_field(e.section(".text"), Sh::Flags);
                e.sh(".text", Sh::Flags, f | SHF_WRITE)
            },
            K::WriteAndExecute,
        ),
        // ---- symbol table
        case(
            "symtab_entsize",
            C,
            |e| e.sh(".symtab", Sh::EntSize, 16),
            K::BadEntrySize,
        ),
        case(
            "symtab_size_not_multiple",
            C,
            |e| {
                let s = e.section_field(e.section(".symtab"), Sh::Size);
                e.sh(".symtab", Sh::Size, s - 5)
            },
            K::BadTableSize,
        ),
        case(
            "symtab_link_not_strtab",
            C,
            |e| {
                let t = e.section(".text") as u64;
                e.sh(".symtab", Sh::Link, t)
            },
            K::BadLink,
        ),
        case(
            "symtab_link_out_of_range",
            C,
            |e| e.sh(".symtab", Sh::Link, 0xffff),
            K::BadLink,
        ),
        case(
            "no_symtab",
            C,
            |e| e.sh(".symtab", Sh::Type, SHT_PROGBITS),
            K::MissingSymbolTable,
        ),
        case(
            "two_symtabs",
            C,
            |e| e.sh(".strtab", Sh::Type, SHT_SYMTAB),
            K::MultipleSymbolTables,
        ),
        case(
            "symbol_name_out_of_range",
            C,
            |e| e.st("cfix_sum", St::Name, 0x00ff_ffff),
            K::BadSymbolName,
        ),
        case(
            "symbol_section_out_of_range",
            C,
            |e| e.st("cfix_sum", St::Shndx, 0x4000),
            K::BadSymbolSection,
        ),
        case(
            "symbol_section_reserved",
            C,
            |e| e.st("cfix_sum", St::Shndx, 0xff10),
            K::BadSymbolSection,
        ),
        case(
            "symbol_section_xindex",
            LINUX,
            |e| e.st("crc32c", St::Shndx, 0xffff),
            K::BadSymbolSection,
        ),
        case(
            "symbol_value_past_section",
            C,
            |e| e.st("cfix_sum", St::Value, 0x10_0000),
            K::SymbolOutsideSection,
        ),
        case(
            "common_symbol",
            C,
            |e| e.st("cfix_data_pointers", St::Shndx, SHN_COMMON),
            K::CommonSymbol,
        ),
        case(
            "duplicate_global",
            C,
            |e| {
                let n = e.symbol_field("cfix_sum", St::Name);
                e.st("cfix_reloc_table", St::Name, n)
            },
            K::DuplicateSymbol,
        ),
        // ---- relocations
        case(
            "rela_target_out_of_range",
            C,
            |e| e.sh(".rela.text", Sh::Info, 0xffff),
            K::BadRelocationTarget,
        ),
        case(
            "rela_target_null",
            C,
            |e| e.sh(".rela.text", Sh::Info, 0),
            K::BadRelocationTarget,
        ),
        case(
            "rel_instead_of_rela",
            C,
            |e| e.sh(".rela.text", Sh::Type, SHT_REL),
            K::RelNotSupported,
        ),
        case(
            "rela_entsize",
            C,
            |e| e.sh(".rela.data", Sh::EntSize, 16),
            K::BadEntrySize,
        ),
        case(
            "rela_link_not_symtab",
            C,
            |e| e.sh(".rela.data", Sh::Link, 1),
            K::BadLink,
        ),
        case(
            "relocation_type_got32",
            C,
            |e| e.ra(".rela.init.text", 0, Ra::Type, 3),
            K::UnsupportedRelocation,
        ),
        case(
            "relocation_type_tpoff32",
            LINUX,
            |e| e.ra(".rela.text", 0, Ra::Type, 23),
            K::UnsupportedRelocation,
        ),
        // The GOT family needs a GOT slot, which only code gets (ABI.md, "Sections").
        case(
            "relocation_gotpcrel_in_data",
            C,
            |e| e.ra(".rela.data", 0, Ra::Type, 9),
            K::UnsupportedRelocation,
        ),
        case(
            "relocation_symbol_out_of_range",
            C,
            |e| e.ra(".rela.data", 1, Ra::Sym, 0x00ff_ffff),
            K::RelocationSymbolOutOfRange,
        ),
        case(
            "relocation_offset_past_section",
            C,
            |e| e.ra(".rela.data", 0, Ra::Offset, 0x1000),
            K::RelocationOutsideSection,
        ),
        case(
            "relocation_offset_straddles_end",
            C,
            |e| e.ra(".rela.data", 3, Ra::Offset, 0x24),
            K::RelocationOutsideSection,
        ),
        case(
            "relocation_offset_huge",
            LINUX,
            |e| e.ra(".rela.text", 0, Ra::Offset, u64::MAX - 2),
            K::RelocationOutsideSection,
        ),
        case(
            "relocations_into_bss",
            C,
            |e| {
                let b = e.section(".bss") as u64;
                e.sh(".rela.data", Sh::Info, b)
            },
            K::RelocationInNobits,
        ),
        case(
            "relocation_against_modinfo",
            C,
            |e| {
                let s = e.symbol("__modinfo_name") as u64;
                e.ra(".rela.data", 0, Ra::Sym, s)
            },
            K::RelocationAgainstUnloadedSection,
        ),
        // ---- modinfo and exports
        case(
            "modinfo_not_utf8",
            C,
            |e| {
                let at = e.contents_at(".modinfo");
                e.bytes[at + 2] = 0xff
            },
            K::BadModinfo,
        ),
        case(
            "export_undefined",
            C,
            |e| e.st("cfix_sum", St::Shndx, 0),
            K::ExportNotDefined,
        ),
        // ---- layout, resolve and relocate: pass validation, fail later
        case(
            "core_region_too_large",
            C,
            |e| e.sh(".bss", Sh::Size, kmod_loader::MAX_REGION_SIZE),
            K::RegionTooLarge,
        ),
        case(
            "relocation_overflow_pc32",
            C,
            |e| e.ra(".rela.text", 0, Ra::Addend, 0x1_0000_0000),
            K::RelocationOverflow,
        ),
        case(
            "relocation_overflow_abs32",
            LINUX,
            |e| e.ra(".rela.init.text", 0, Ra::Type, 10),
            K::RelocationOverflow,
        ),
        case(
            "relocation_overflow_32s",
            LINUX,
            |e| e.ra(".rela.init.text", 0, Ra::Addend, 1 << 32),
            K::RelocationOverflow,
        ),
        case(
            "relocation_uses_unresolved_got_symbol",
            C,
            |e| {
                let s = e.symbol("_GLOBAL_OFFSET_TABLE_") as u64;
                e.ra(".rela.data", 0, Ra::Sym, s)
            },
            K::UnresolvedSymbolReferenced,
        ),
        // The weak hook made global: the stand-in kernel does not have it.
        case(
            "undefined_symbol_unknown_to_kernel",
            C,
            |e| e.st("kmod_optional_hook", St::Info, STB_GLOBAL_NOTYPE),
            K::UnknownSymbol,
        ),
    ]
}

/// Applies a case to its base fixture.
pub fn build(case: &Case) -> Vec<u8> {
    let mut elf = Elf::new(super::fixture(case.base));
    (case.mutate)(&mut elf);
    elf.bytes
}

/// Runs the whole host pipeline (as `load_on_host`) and returns the error kind.
pub fn outcome(bytes: &[u8]) -> Result<(), kmod_loader::Error> {
    super::load_on_host(bytes, &super::stand_in_kernel()).map(|_| ())
}
