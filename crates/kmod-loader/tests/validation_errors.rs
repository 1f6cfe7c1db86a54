//! One test per malformation: a real module with a single field corrupted must give exactly
//! the expected typed error (and never a panic). The cases live in `common/cases.rs`, which
//! also generates the committed corpus.

mod common;

use common::cases::{build, cases, outcome};

fn check(name: &str) {
    let case = cases()
        .into_iter()
        .find(|c| c.name == name)
        .expect("case exists");
    let bytes = build(&case);
    match outcome(&bytes) {
        Ok(()) => panic!("{name}: loaded, expected {}", case.expected),
        Err(error) => {
            assert_eq!(error.kind(), case.expected, "{name}: {error}");
            // The message names something: it is never just the variant.
            assert!(
                error.to_string().len() > 12,
                "{name}: terse message {error}"
            );
        }
    }
}

macro_rules! case_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*

        #[test]
        fn every_case_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for case in cases() {
                assert!(tested.contains(&case.name), "no test for case {}", case.name);
            }
        }
    };
}

case_tests!(
    truncated_header,
    truncated_magic,
    truncated_half,
    truncated_section_headers,
    section_headers_offset_huge,
    bad_magic,
    bad_class_32,
    bad_data_big_endian,
    bad_ident_version,
    bad_e_version,
    not_relocatable_exec,
    not_relocatable_dyn,
    bad_machine_i386,
    bad_machine_aarch64,
    bad_ehsize,
    bad_shentsize,
    no_sections,
    shstrndx_out_of_range,
    shstrndx_not_strtab,
    text_offset_past_end,
    text_offset_huge,
    text_size_huge,
    symtab_size_huge,
    shstrtab_out_of_bounds,
    overlap_data_on_text,
    overlap_text_on_header,
    overlap_section_headers,
    section_name_out_of_range,
    alignment_not_power_of_two,
    alignment_huge,
    bss_size_huge,
    bss_size_max,
    text_writable,
    linux_text_writable,
    symtab_entsize,
    symtab_size_not_multiple,
    symtab_link_not_strtab,
    symtab_link_out_of_range,
    no_symtab,
    two_symtabs,
    symbol_name_out_of_range,
    symbol_section_out_of_range,
    symbol_section_reserved,
    symbol_section_xindex,
    symbol_value_past_section,
    common_symbol,
    duplicate_global,
    rela_target_out_of_range,
    rela_target_null,
    rel_instead_of_rela,
    rela_entsize,
    rela_link_not_symtab,
    relocation_type_got32,
    relocation_type_tpoff32,
    relocation_gotpcrel_in_data,
    relocation_symbol_out_of_range,
    relocation_offset_past_section,
    relocation_offset_straddles_end,
    relocation_offset_huge,
    relocations_into_bss,
    relocation_against_modinfo,
    modinfo_not_utf8,
    export_undefined,
    core_region_too_large,
    relocation_overflow_pc32,
    relocation_overflow_abs32,
    relocation_overflow_32s,
    relocation_uses_unresolved_got_symbol,
    undefined_symbol_unknown_to_kernel,
);

#[test]
fn every_error_kind_reachable_from_a_file_is_covered() {
    use kmod_loader::ErrorKind as K;
    // Kinds that only API misuse can produce are tested in the API tests instead.
    let api_only = [
        K::DuplicateExport,
        K::RegionTooSmall,
        K::BadRegionBase,
        K::OutOfMemory,
    ];
    let covered: Vec<_> = cases().iter().map(|c| c.expected).collect();
    for kind in ALL_KINDS {
        assert!(
            covered.contains(&kind) || api_only.contains(&kind),
            "{kind} has no case"
        );
    }
}

const ALL_KINDS: [kmod_loader::ErrorKind; 44] = {
    use kmod_loader::ErrorKind as K;
    [
        K::Truncated,
        K::BadMagic,
        K::BadClass,
        K::BadDataEncoding,
        K::BadVersion,
        K::BadMachine,
        K::NotRelocatable,
        K::BadHeaderSize,
        K::NoSections,
        K::BadStringTableIndex,
        K::SectionOutOfBounds,
        K::SectionsOverlap,
        K::BadSectionName,
        K::BadAlignment,
        K::AlignmentTooLarge,
        K::SectionTooLarge,
        K::WriteAndExecute,
        K::BadEntrySize,
        K::BadTableSize,
        K::BadLink,
        K::MissingSymbolTable,
        K::MultipleSymbolTables,
        K::BadSymbolName,
        K::BadSymbolSection,
        K::SymbolOutsideSection,
        K::CommonSymbol,
        K::DuplicateSymbol,
        K::BadRelocationTarget,
        K::RelNotSupported,
        K::UnsupportedRelocation,
        K::RelocationSymbolOutOfRange,
        K::RelocationOutsideSection,
        K::RelocationInNobits,
        K::RelocationAgainstUnloadedSection,
        K::BadModinfo,
        K::ExportNotDefined,
        K::RegionTooLarge,
        K::UnknownSymbol,
        K::DuplicateExport,
        K::RegionTooSmall,
        K::BadRegionBase,
        K::OutOfMemory,
        K::RelocationOverflow,
        K::UnresolvedSymbolReferenced,
    ]
};
