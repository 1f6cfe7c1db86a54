//! Property tests: real modules mutated at random (byte flips, truncation, header, symbol and
//! relocation field overwrites) must give `Ok` or a typed `Err`, never a panic.
//!
//! Each property runs `PROPTEST_CASES` cases (default below); e.g.
//! `PROPTEST_CASES=100000 cargo test -p kmod-loader --release --test proptest_mutations`.

mod common;

use std::sync::OnceLock;

use common::edit::Elf;
use common::*;
use proptest::prelude::*;

const DEFAULT_CASES: u32 = 10_000;
/// Mutants whose regions would exceed this are only prepared, not copied: allocating and
/// clearing up to 1 GiB per case would make the test slow without exercising more parsing.
const MAX_HOST_REGION: u64 = 64 << 20;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn fixtures() -> &'static [(String, Vec<u8>)] {
    static FIXTURES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FIXTURES.get_or_init(all_fixtures)
}

/// Runs every step that the mutant survives; the assertion is that none panics.
fn exercise(bytes: &[u8]) {
    let provider = stand_in_kernel();
    let Ok(prepared) = kmod_loader::prepare(bytes, &provider) else {
        return;
    };
    if prepared.layout.core.size > MAX_HOST_REGION || prepared.layout.init.size > MAX_HOST_REGION {
        return;
    }
    let _ = load_on_host(bytes, &provider);
}

/// Values that tend to hit edge cases when written into header fields.
fn interesting() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(3),
        Just(8),
        Just(0x40),
        Just(0xff),
        Just(0xffff),
        Just(0xfff1),
        Just(0xfff2),
        Just(0xffff_ffff),
        Just(0x8000_0000),
        Just(1 << 30),
        Just(1 << 40),
        Just(u64::MAX),
        Just(u64::MAX - 7),
        0u64..0x10000,
        any::<u64>(),
    ]
}

/// A fixture plus a mutation: (fixture index, what to do).
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Vec<(usize, u8)>),
    Truncate(usize),
    ElfHeader {
        at: usize,
        width: usize,
        value: u64,
    },
    SectionHeader {
        index: usize,
        field: usize,
        value: u64,
    },
    Symbol {
        index: usize,
        field: usize,
        value: u64,
    },
    Relocation {
        nth: usize,
        field: usize,
        value: u64,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        prop::collection::vec((any::<usize>(), 1u8..), 1..16).prop_map(Mutation::Flip),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            prop::sample::select(vec![
                (4usize, 1usize),
                (5, 1),
                (6, 1),
                (16, 2),
                (18, 2),
                (20, 4),
                (40, 8),
                (52, 2),
                (58, 2),
                (60, 2),
                (62, 2)
            ]),
            interesting()
        )
            .prop_map(|((at, width), value)| Mutation::ElfHeader { at, width, value }),
        (any::<usize>(), 0usize..9, interesting()).prop_map(|(index, field, value)| {
            Mutation::SectionHeader {
                index,
                field,
                value,
            }
        }),
        (any::<usize>(), 0usize..5, interesting()).prop_map(|(index, field, value)| {
            Mutation::Symbol {
                index,
                field,
                value,
            }
        }),
        (any::<usize>(), 0usize..4, interesting())
            .prop_map(|(nth, field, value)| Mutation::Relocation { nth, field, value }),
    ]
}

const SH_FIELDS: [(usize, usize); 9] = [
    (0, 4),
    (4, 4),
    (8, 8),
    (24, 8),
    (32, 8),
    (40, 4),
    (44, 4),
    (48, 8),
    (56, 8),
];
const ST_FIELDS: [(usize, usize); 5] = [(0, 4), (4, 1), (6, 2), (8, 8), (16, 8)];
const RA_FIELDS: [(usize, usize); 4] = [(0, 8), (8, 4), (12, 4), (16, 8)];

fn apply(original: &[u8], mutation: &Mutation) -> Vec<u8> {
    let mut elf = Elf::new(original.to_vec());
    let len = elf.bytes.len();
    let section_table = |elf: &Elf, sh_type: u64| {
        (0..elf.shnum())
            .filter(|&i| elf.section_field(i, common::edit::Sh::Type) == sh_type)
            .collect::<Vec<_>>()
    };
    match mutation {
        Mutation::Flip(flips) => {
            for &(at, mask) in flips {
                elf.bytes[at % len] ^= mask;
            }
        }
        Mutation::Truncate(to) => elf.truncate(to % len),
        Mutation::ElfHeader { at, width, value } => elf.set(*at, *width, *value),
        Mutation::SectionHeader {
            index,
            field,
            value,
        } => {
            let (off, width) = SH_FIELDS[*field];
            let at = elf.shoff() + (index % elf.shnum()) * 64 + off;
            elf.set(at, width, *value);
        }
        Mutation::Symbol {
            index,
            field,
            value,
        } => {
            let symtab = section_table(&elf, 2)[0];
            let base = elf.section_field(symtab, common::edit::Sh::Offset) as usize;
            let count = elf.section_field(symtab, common::edit::Sh::Size) as usize / 24;
            let (off, width) = ST_FIELDS[*field];
            elf.set(base + (index % count) * 24 + off, width, *value);
        }
        Mutation::Relocation { nth, field, value } => {
            // Picks the nth relocation entry across all RELA sections.
            let entries: Vec<usize> = section_table(&elf, 4)
                .into_iter()
                .flat_map(|s| {
                    let base = elf.section_field(s, common::edit::Sh::Offset) as usize;
                    let count = elf.section_field(s, common::edit::Sh::Size) as usize / 24;
                    (0..count).map(move |i| base + i * 24)
                })
                .collect();
            let (off, width) = RA_FIELDS[*field];
            elf.set(entries[nth % entries.len()] + off, width, *value);
        }
    }
    elf.bytes
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_modules_never_panic(fixture in any::<prop::sample::Index>(), mutation in mutation()) {
        let (_, original) = fixture.get(fixtures());
        exercise(&apply(original, &mutation));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        fixture in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        // Keeps the real ELF header (so validation gets past it) over random contents.
        let (_, original) = fixture.get(fixtures());
        let mut bytes = original[..64].to_vec();
        bytes.extend_from_slice(&tail);
        exercise(&bytes);
    }
}

#[test]
fn unmutated_fixtures_load() {
    for (name, bytes) in fixtures() {
        load_on_host(bytes, &stand_in_kernel()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
