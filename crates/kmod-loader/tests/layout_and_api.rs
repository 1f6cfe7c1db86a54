//! Layout (alignment, W^X, init/core split, GOT), resolution and the API's own checks, on
//! synthetic objects built with exact sections and relocations.

mod common;

use common::synth::*;
use common::*;
use kmod_loader::{
    Error, ErrorKind, ExportTable, FnProvider, Permission, ProvidedSymbol, ProviderId, RegionKind,
    RegionMemory, Regions, RelocationKind, layout, resolve, validate,
};

const R_X86_64_64: u32 = 1;
const R_X86_64_PC32: u32 = 2;
const R_X86_64_PLT32: u32 = 4;
const R_X86_64_GOTPCREL: u32 = 9;
const R_X86_64_32: u32 = 10;
const R_X86_64_32S: u32 = 11;
const R_X86_64_PC64: u32 = 24;
const R_X86_64_GOTPCRELX: u32 = 41;
const R_X86_64_REX_GOTPCRELX: u32 = 42;

fn kernel_with<const N: usize>(
    symbols: [(&'static str, u64); N],
) -> impl kmod_loader::SymbolProvider {
    FnProvider(move |name: &str| {
        symbols
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, address)| ProvidedSymbol {
                address,
                provider: KERNEL,
            })
    })
}

#[test]
fn sections_are_aligned_and_grouped_by_permission() {
    let mut s = Synth::new();
    let text = s.text(".text", &[0x90; 3], 1);
    s.text(".text.hot", &[0xc3; 5], 64);
    s.rodata(".rodata", &[1; 7], 16);
    s.data(".data", &[2; 9], 4096);
    s.bss(".bss", 100, 32);
    s.rodata("__ksymtab", &[0; 16], 8);
    s.global("anchor", text, 0);
    let data = s.build();
    let module = validate(&data).unwrap();
    let layout = layout(&module).unwrap();

    let placement = |name: &str| {
        layout
            .placement(module.section_by_name(name).unwrap().index)
            .unwrap()
    };
    for (name, align) in [
        (".text", 1),
        (".text.hot", 64),
        (".rodata", 16),
        (".data", 4096),
        (".bss", 32),
        ("__ksymtab", 8),
    ] {
        let p = placement(name);
        assert_eq!(p.offset % align, 0, "{name} misaligned at {:#x}", p.offset);
        assert_eq!(p.region, RegionKind::Core);
    }
    assert_eq!(placement(".text").permission, Permission::ReadExecute);
    assert_eq!(
        placement(".text.hot").offset,
        64,
        "3 bytes of .text, then 64-aligned"
    );
    assert_eq!(placement(".rodata").permission, Permission::ReadOnly);
    assert_eq!(placement("__ksymtab").permission, Permission::ReadOnly);
    assert_eq!(placement(".data").permission, Permission::ReadWrite);
    assert_eq!(placement(".bss").permission, Permission::ReadWrite);
    // Runs are page-aligned, in RX, R, RW order, contiguous, and cover the region.
    let ranges = &layout.core.ranges;
    assert_eq!(
        ranges.iter().map(|r| r.permission).collect::<Vec<_>>(),
        [
            Permission::ReadExecute,
            Permission::ReadOnly,
            Permission::ReadWrite
        ]
    );
    assert_eq!(ranges[0].start, 0);
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
    }
    assert_eq!(ranges.last().unwrap().end, layout.core.size);
    for r in ranges {
        assert_eq!((r.start % 4096, r.end % 4096), (0, 0));
    }
    // Every section lies inside the run of its permission.
    for (_, p) in layout.placements() {
        let run = ranges
            .iter()
            .find(|r| r.permission == p.permission)
            .unwrap();
        assert!(run.start <= p.offset && p.offset + p.size <= run.end);
    }
    assert_eq!(layout.core.size, 3 * 4096);
    assert_eq!(layout.init.size, 0);
    assert_eq!(layout.counts().core.sections, 6);
    assert_eq!(layout.counts().core.section_bytes, 3 + 5 + 7 + 9 + 100 + 16);
}

#[test]
fn writable_and_executable_sections_are_refused() {
    let mut s = Synth::new();
    s.section(
        ".text.wx",
        SHF_ALLOC | SHF_WRITE | SHF_EXECINSTR,
        &[0x90],
        1,
    );
    let err = validate(&s.build()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WriteAndExecute);
    assert!(err.to_string().contains(".text.wx"), "{err}");
}

#[test]
fn init_sections_go_to_the_init_region_and_modinfo_is_not_loaded() {
    let mut s = Synth::new();
    let init = s.text(".init.text", &[0xc3; 4], 16);
    s.section(".init.data", SHF_ALLOC | SHF_WRITE, &[1; 8], 8);
    s.section(".init.rodata", SHF_ALLOC, &[2; 8], 8);
    s.text(".exit.text", &[0xc3; 4], 16);
    s.text(".text", &[0xc3; 4], 16);
    s.section(".modinfo", SHF_ALLOC, b"name=synth\0license=GPL\0", 1);
    s.section("__versions", SHF_ALLOC, &[0; 64], 32);
    s.section(".comment", 0, b"gcc\0", 1);
    s.global("init_module", init, 0);
    let data = s.build();
    let module = validate(&data).unwrap();
    assert_eq!(module.name(), "synth");
    let layout = layout(&module).unwrap();
    let placement = |name: &str| layout.placement(module.section_by_name(name).unwrap().index);
    assert_eq!(placement(".init.text").unwrap().region, RegionKind::Init);
    assert_eq!(
        placement(".init.text").unwrap().permission,
        Permission::ReadExecute
    );
    assert_eq!(placement(".init.data").unwrap().region, RegionKind::Init);
    assert_eq!(
        placement(".init.data").unwrap().permission,
        Permission::ReadWrite
    );
    assert_eq!(
        placement(".init.rodata").unwrap().permission,
        Permission::ReadOnly
    );
    assert_eq!(placement(".exit.text").unwrap().region, RegionKind::Core);
    assert_eq!(placement(".text").unwrap().region, RegionKind::Core);
    for unloaded in [".modinfo", "__versions", ".comment", ".symtab", ".strtab"] {
        assert_eq!(placement(unloaded), None, "{unloaded}");
    }
    assert_eq!(layout.init.size, 3 * 4096);
    assert_eq!(layout.core.size, 4096);

    let host = load_on_host(&data, &kernel_with([])).unwrap();
    let init_module = host.loaded.symbol("init_module").unwrap();
    assert_eq!(
        (init_module.region, init_module.address),
        (RegionKind::Init, INIT_BASE + init_module.offset)
    );
    assert_eq!(&host.init[init_module.offset as usize..][..4], [0xc3; 4]);
    assert_eq!(
        host.loaded.modinfo,
        [
            ("name".into(), "synth".into()),
            ("license".into(), "GPL".into())
        ]
    );
}

#[test]
fn got_slots_are_reserved_once_per_symbol_in_read_only_core() {
    let mut s = Synth::new();
    let text = s.text(".text", &[0; 32], 16);
    s.rodata(".rodata", &[0; 24], 8);
    let a = s.undefined("kernel_a", false);
    let b = s.undefined("kernel_b", false);
    s.reloc(text, 0, a, -4, R_X86_64_GOTPCREL);
    s.reloc(text, 8, a, -4, R_X86_64_GOTPCRELX);
    s.reloc(text, 16, b, -4, R_X86_64_REX_GOTPCRELX);
    s.reloc(text, 24, b, -4, R_X86_64_PLT32); // not through the GOT
    let data = s.build();
    let module = validate(&data).unwrap();
    let layout = layout(&module).unwrap();
    assert_eq!(layout.got_symbols().len(), 2);
    assert_eq!(layout.counts().got_slots, 2);
    let ro = layout
        .core
        .ranges
        .iter()
        .find(|r| r.permission == Permission::ReadOnly)
        .unwrap();
    let rodata = layout
        .placement(module.section_by_name(".rodata").unwrap().index)
        .unwrap();
    let got = layout.got_offset();
    assert_eq!(got % 8, 0);
    assert!(
        got >= rodata.offset + rodata.size,
        "GOT after read-only sections"
    );
    assert!(
        ro.start <= got && got + 16 <= ro.end,
        "GOT inside the read-only run"
    );

    const A: u64 = 0xffff_ffff_8100_1000;
    const B: u64 = 0xffff_ffff_8100_2000;
    let host = load_on_host(&data, &kernel_with([("kernel_a", A), ("kernel_b", B)])).unwrap();
    let slot =
        |i: u64| u64::from_le_bytes(host.core[(got + 8 * i) as usize..][..8].try_into().unwrap());
    assert_eq!([slot(0), slot(1)], [A, B]);
    let field = |at: usize| i32::from_le_bytes(host.core[at..at + 4].try_into().unwrap()) as i64;
    let text_at = CORE_BASE as i64;
    // GOTPCREL fields = slot - 4 - place.
    assert_eq!(field(0), (CORE_BASE + got) as i64 - 4 - text_at);
    assert_eq!(field(8), (CORE_BASE + got) as i64 - 4 - (text_at + 8));
    assert_eq!(field(16), (CORE_BASE + got + 8) as i64 - 4 - (text_at + 16));
    assert_eq!(host.loaded.counts.relocate.got_slots, 2);
}

#[test]
fn no_got_without_got_relocations() {
    let data = fixture("linux/crc7.ko");
    let module = validate(&data).unwrap();
    let layout = layout(&module).unwrap();
    assert!(layout.got_symbols().is_empty());
    assert_eq!(layout.counts().got_slots, 0);
}

/// Builds a module with one relocation of `r_type` in `.text` at offset 4 against `target`.
fn one_relocation(r_type: u32, addend: i64) -> Vec<u8> {
    let mut s = Synth::new();
    let text = s.text(".text", &[0; 16], 16);
    let target = s.undefined("target", false);
    s.reloc(text, 4, target, addend, r_type);
    s.build()
}

#[test]
fn every_relocation_type_writes_exact_bytes_at_its_place() {
    const S: u64 = 0xffff_ffff_8123_4560;
    let place = CORE_BASE + 4;
    let cases: [(u32, i64, &[u8]); 5] = [
        (R_X86_64_64, 0x10, &(S + 0x10).to_le_bytes()),
        (R_X86_64_32S, 0, &[0x60, 0x45, 0x23, 0x81]),
        (
            R_X86_64_PC32,
            -4,
            &((S as i64 - 4 - place as i64) as i32).to_le_bytes(),
        ),
        (
            R_X86_64_PLT32,
            -4,
            &((S as i64 - 4 - place as i64) as i32).to_le_bytes(),
        ),
        (R_X86_64_PC64, 0, &S.wrapping_sub(place).to_le_bytes()),
    ];
    for (r_type, addend, expected) in cases {
        let host = load_on_host(
            &one_relocation(r_type, addend),
            &kernel_with([("target", S)]),
        )
        .unwrap();
        assert_eq!(&host.core[4..4 + expected.len()], expected, "type {r_type}");
        // Bytes around the field are untouched.
        assert_eq!(host.core[..4], [0; 4]);
        assert!(host.core[4 + expected.len()..16].iter().all(|&b| b == 0));
    }
    let host = load_on_host(
        &one_relocation(R_X86_64_32, 0x34),
        &kernel_with([("target", 0x1200)]),
    )
    .unwrap();
    assert_eq!(host.core[4..8], [0x34, 0x12, 0, 0]);
}

#[test]
fn out_of_range_relocations_are_errors_naming_the_place() {
    let user = 0x0000_4000_0000_0000;
    for r_type in [R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_32S, R_X86_64_32] {
        let err = load_on_host(
            &one_relocation(r_type, -4),
            &kernel_with([("target", user)]),
        )
        .err()
        .unwrap_or_else(|| panic!("type {r_type} loaded"));
        let Error::RelocationOverflow {
            section,
            offset,
            symbol,
            ..
        } = &err
        else {
            panic!("type {r_type}: {err}")
        };
        assert_eq!(
            (section.name.as_str(), *offset, symbol.as_str()),
            (".text", 4, "target")
        );
    }
    // A GOTPCREL in init whose GOT slot (in core) is more than 2 GiB away.
    let mut s = Synth::new();
    let init = s.text(".init.text", &[0; 8], 16);
    let target = s.undefined("target", false);
    s.reloc(init, 0, target, -4, R_X86_64_GOTPCREL);
    let data = s.build();
    let prepared = kmod_loader::prepare(&data, &kernel_with([("target", 1)])).unwrap();
    let mut core = vec![0; prepared.layout.core.size as usize];
    let mut init = vec![0; prepared.layout.init.size as usize];
    let err = prepared
        .finish(Regions {
            core: RegionMemory {
                base: CORE_BASE,
                bytes: &mut core,
            },
            init: RegionMemory {
                base: CORE_BASE - (4 << 30),
                bytes: &mut init,
            },
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RelocationOverflow);
    assert!(matches!(
        err,
        Error::RelocationOverflow {
            kind: RelocationKind::GotPcRel,
            ..
        }
    ));
}

#[test]
fn weak_undefined_symbols_resolve_to_zero_and_unknown_ones_are_named() {
    let mut s = Synth::new();
    let text = s.text(".text", &[0xff; 16], 16);
    let weak = s.undefined("maybe_there", true);
    let strong = s.undefined("must_be_there", false);
    s.reloc(text, 0, weak, 0, R_X86_64_64);
    s.reloc(text, 8, strong, 0, R_X86_64_64);
    s.section(".modinfo", SHF_ALLOC, b"name=needy\0", 1);
    let data = s.build();
    let host = load_on_host(
        &data,
        &kernel_with([("must_be_there", 0xffff_ffff_8000_0000)]),
    )
    .unwrap();
    assert_eq!(host.core[..8], [0; 8]);
    assert_eq!(host.loaded.counts.resolve.weak_unresolved, 1);

    let module = validate(&data).unwrap();
    let err = resolve(&module, &kernel_with([])).unwrap_err();
    assert_eq!(
        err,
        Error::UnknownSymbol {
            module: "needy".into(),
            symbol: "must_be_there".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "module `needy`: unknown symbol `must_be_there`"
    );
}

#[test]
fn providers_are_recorded_as_dependencies() {
    let mut table = ExportTable::new();
    table
        .insert("from_kernel", 0xffff_ffff_8100_0000, KERNEL)
        .unwrap();
    let mut other = ExportTable::new();
    other
        .insert("from_module", 0xffff_ffff_c100_0000, ProviderId(42))
        .unwrap();
    let mut s = Synth::new();
    let text = s.text(".text", &[0; 16], 16);
    let a = s.undefined("from_kernel", false);
    let b = s.undefined("from_module", false);
    s.reloc(text, 0, a, 0, R_X86_64_64);
    s.reloc(text, 8, b, 0, R_X86_64_64);
    let data = s.build();
    let module = validate(&data).unwrap();
    // A tuple chains providers: first the kernel, then the modules.
    let resolution = resolve(&module, &(&table, &other)).unwrap();
    assert_eq!(resolution.providers(), [KERNEL, ProviderId(42)]);
    assert_eq!(resolution.counts().resolved, 2);
    let host = load_on_host(&data, &(&table, &other)).unwrap();
    let deps: Vec<_> = host
        .loaded
        .dependencies
        .iter()
        .map(|d| (d.symbol.as_str(), d.provider))
        .collect();
    assert_eq!(
        deps,
        [("from_kernel", KERNEL), ("from_module", ProviderId(42))]
    );
}

#[test]
fn caller_memory_is_checked() {
    let data = fixture("c/cfix.ko");
    let prepared = kmod_loader::prepare(&data, &stand_in_kernel()).unwrap();
    let core_size = prepared.layout.core.size as usize;
    let init_size = prepared.layout.init.size as usize;
    let (mut core, mut init) = (vec![0; core_size], vec![0; init_size]);
    let mut short = vec![0; core_size - 1];

    let err = prepared
        .finish(Regions {
            core: RegionMemory {
                base: CORE_BASE,
                bytes: &mut short,
            },
            init: RegionMemory {
                base: INIT_BASE,
                bytes: &mut init,
            },
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RegionTooSmall);

    let err = prepared
        .finish(Regions {
            core: RegionMemory {
                base: CORE_BASE + 8,
                bytes: &mut core,
            },
            init: RegionMemory {
                base: INIT_BASE,
                bytes: &mut init,
            },
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRegionBase);

    let err = prepared
        .finish(Regions {
            core: RegionMemory {
                base: CORE_BASE,
                bytes: &mut core,
            },
            init: RegionMemory {
                base: u64::MAX - 4095,
                bytes: &mut init,
            },
        })
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::BadRegionBase,
        "region wrapping the address space"
    );

    let err = kmod_loader::load(&data, &stand_in_kernel(), |_| None).unwrap_err();
    assert_eq!(
        err,
        Error::OutOfMemory {
            core: core_size as u64,
            init: init_size as u64
        }
    );

    let loaded = kmod_loader::load(&data, &stand_in_kernel(), |_| {
        Some(Regions {
            core: RegionMemory {
                base: CORE_BASE,
                bytes: &mut core,
            },
            init: RegionMemory {
                base: INIT_BASE,
                bytes: &mut init,
            },
        })
    })
    .unwrap();
    assert_eq!(loaded.name, "cfix");
}

#[test]
fn steps_report_counts() {
    let data = fixture("c/cfix.ko");
    let host = load_on_host(&data, &stand_in_kernel()).unwrap();
    let counts = host.loaded.counts;
    assert_eq!(counts.validate.sections, 28);
    // Validation checks (and counts by type) the relocations of code; relocation checks the
    // others as it applies them, and its counts hold all of them.
    assert_eq!(counts.validate.relocation_entries(), 36); // readelf -r cfix.ko | grep -c R_X86
    assert_eq!(counts.validate.relocations.total(), 24);
    assert_eq!(counts.validate.relocations_checked_when_applied, 12);
    let applied = counts.relocate.applied;
    assert_eq!(applied.total(), 36);
    assert_eq!(
        (applied.none, applied.abs64, applied.abs32, applied.pc64),
        (1, 9, 1, 1)
    );
    for kind in kmod_loader::RelocationKind::ALL {
        assert!(
            applied.get(kind) >= counts.validate.relocations.get(kind),
            "{kind}"
        );
    }
    assert_eq!(
        applied.get(kmod_loader::RelocationKind::Pc32),
        counts.validate.relocations.pc32
    );
    assert_eq!(counts.validate.exports, 1);
    assert_eq!(counts.validate.modinfo_entries, 7);
    assert_eq!(counts.layout.core.size, host.core.len() as u64);
    assert_eq!(counts.layout.init.size, host.init.len() as u64);
    // Every byte of both regions is copied or zeroed, once.
    assert_eq!(
        counts.copy.bytes_copied + counts.copy.bytes_zeroed,
        (host.core.len() + host.init.len()) as u64
    );
    assert!(counts.copy.bytes_copied > 0 && counts.copy.bytes_zeroed > 0);
    assert_eq!(counts.resolve.undefined, 5); // kmod_{alloc,free,print,optional_hook}, _GLOBAL_OFFSET_TABLE_
}

#[test]
fn exports_must_live_in_loaded_sections() {
    // A __ksymtab_X whose X sits in .modinfo (never loaded) would export no address.
    let mut s = Synth::new();
    let text = s.text(".text", &[0xc3], 1);
    let modinfo = s.section(".modinfo", SHF_ALLOC, b"name=bad\0", 1);
    let ksymtab = s.rodata("__ksymtab", &[0; 16], 8);
    s.global("real", text, 0);
    s.global("__ksymtab_real", ksymtab, 0);
    s.global("ghost", modinfo, 0);
    s.global("__ksymtab_ghost", ksymtab, 8);
    let err = validate(&s.build()).unwrap_err();
    assert_eq!(
        err,
        Error::ExportNotDefined {
            export: "ghost".into()
        }
    );
}
