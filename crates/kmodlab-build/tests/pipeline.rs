//! The module build pipeline, end to end: builds the whole module set (nested cargo, gcc,
//! ld; a few seconds when warm, well under a minute from clean) into a scratch directory and
//! checks what ABI.md promises about every `.ko`, independently of the pipeline's own checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use kmodlab_build::BuildDirs;
use kmodlab_build::modules::{BuiltModules, ModuleSource, build_modules};
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

const ALLOWED_ALLOC_SECTIONS: &[&str] = &[
    ".text",
    ".init.text",
    ".exit.text",
    ".rodata",
    ".data",
    ".bss",
    "__ksymtab",
    "__ksymtab_strings",
    ".modinfo",
];

fn dirs(out: &str) -> BuildDirs {
    let repo_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-pipeline");
    BuildDirs {
        repo_root,
        target_root: scratch.join("target"),
        out_dir: scratch.join(out),
    }
}

/// The module set, built once for all tests of this file.
fn built() -> &'static BuiltModules {
    static BUILT: OnceLock<BuiltModules> = OnceLock::new();
    BUILT.get_or_init(|| {
        kmodlab_build::ensure_guest_target().expect("guest target");
        build_modules(&dirs("out")).unwrap_or_else(|e| panic!("{e}"))
    })
}

#[test]
fn builds_the_whole_module_set() {
    let b = built();
    let names: Vec<&str> = b.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "autoload",
            "big",
            "callbench",
            "crc32",
            "cstats",
            "faulty",
            "hello",
            "kvclient",
            "kvstore",
            "params",
            "ramblk",
            "rival"
        ]
    );
    assert_eq!(b.get("cstats").unwrap().source, ModuleSource::C);
    assert_eq!(b.get("big").unwrap().source, ModuleSource::Generated);
    assert_eq!(b.get("hello").unwrap().source, ModuleSource::Rust);
    let entries: Vec<String> = b
        .archive_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert!(entries.contains(&"lib/modules/kvclient.ko".to_owned()));
    assert!(entries.contains(&"lib/modules/modules.dep".to_owned()));
}

/// Every `.ko`'s undefined symbols are kernel API functions or exports of another module,
/// read straight from the ELF symbol tables.
#[test]
fn only_kernel_api_and_module_exports_are_undefined() {
    let b = built();
    let mut exports: BTreeMap<String, String> = BTreeMap::new();
    let mut undefined: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &b.modules {
        let data = std::fs::read(&m.path).unwrap();
        let file = object::File::parse(data.as_slice()).unwrap();
        for sym in file.symbols() {
            let name = sym.name().unwrap().to_owned();
            if sym.is_undefined() {
                if !name.is_empty() {
                    undefined.entry(m.name.clone()).or_default().insert(name);
                }
            } else if let Some(x) = name.strip_prefix("__ksymtab_") {
                exports.insert(x.to_owned(), m.name.clone());
            }
        }
    }
    for (module, syms) in &undefined {
        for sym in syms {
            let kernel = kmod_api::KERNEL_API_SYMBOLS.contains(&sym.as_str());
            let other = exports.get(sym).is_some_and(|owner| owner != module);
            assert!(kernel || other, "{module}.ko: undefined `{sym}`");
        }
    }
    // The chain and the cross-language dependency really are symbol dependencies.
    assert!(undefined["kvclient"].contains("kvstore_put"));
    assert!(undefined["kvstore"].contains("ramblk_read"));
    assert!(undefined["kvstore"].contains("crc32_compute"));
    assert!(undefined["cstats"].contains("crc32_compute"));
    assert_eq!(
        undefined["hello"],
        BTreeSet::from(["kmod_print".to_owned()])
    );
}

#[test]
fn modules_dep_has_the_chain() {
    let b = built();
    let text = std::fs::read_to_string(b.modules_dep.as_ref().unwrap()).unwrap();
    assert!(
        text.contains("kvclient.ko: kvstore.ko ramblk.ko crc32.ko\n"),
        "{text}"
    );
    assert!(text.contains("kvstore.ko: ramblk.ko crc32.ko\n"), "{text}");
    assert!(text.contains("cstats.ko: crc32.ko\n"), "{text}");
    assert!(text.contains("callbench.ko: crc32.ko\n"), "{text}");
    assert!(text.contains("hello.ko:\n"), "{text}");
    assert_eq!(
        b.get("kvclient").unwrap().depends,
        ["kvstore", "ramblk", "crc32"]
    );
}

#[test]
fn modules_follow_the_abi() {
    for m in &built().modules {
        let data = std::fs::read(&m.path).unwrap();
        let file = ElfFile64::<Endianness>::parse(data.as_slice()).unwrap();
        let endian = file.endian();
        assert_eq!(file.elf_header().e_type(endian), elf::ET_REL, "{}", m.name);
        let mut sections = BTreeMap::new();
        for s in file.sections() {
            let header = s.elf_section_header();
            let name = s.name().unwrap().to_owned();
            if header.sh_flags(endian).0 & elf::SHF_ALLOC.0 != 0 {
                assert!(
                    ALLOWED_ALLOC_SECTIONS.contains(&name.as_str()),
                    "{}: {name}",
                    m.name
                );
                let wx = elf::SHF_WRITE.0 | elf::SHF_EXECINSTR.0;
                assert_ne!(
                    header.sh_flags(endian).0 & wx,
                    wx,
                    "{}: {name} is W+X",
                    m.name
                );
            }
            assert_eq!(
                header.sh_addr(endian),
                0,
                "{}: {name} has an address",
                m.name
            );
            assert!(!name.starts_with(".debug"), "{}: {name}", m.name);
            sections.insert(name, s.index());
        }
        let symbol_section = |wanted: &str| {
            file.symbols()
                .find(|s| s.name() == Ok(wanted) && s.is_definition())
                .and_then(|s| s.section_index())
        };
        assert_eq!(
            symbol_section("init_module"),
            sections.get(".init.text").copied(),
            "{}",
            m.name
        );
        assert_eq!(
            symbol_section("cleanup_module"),
            sections.get(".exit.text").copied(),
            "{}",
            m.name
        );
        for sym in file.symbols() {
            let name = sym.name().unwrap();
            if name.starts_with("__kmod_param_") {
                assert_eq!(
                    sym.section_index(),
                    sections.get(".data").copied(),
                    "{}: {name}",
                    m.name
                );
            }
        }
        let modinfo = file.section_by_name(".modinfo").unwrap().data().unwrap();
        let name_entry = format!("name={}\0", m.name);
        assert!(
            modinfo
                .windows(name_entry.len())
                .any(|w| w == name_entry.as_bytes()),
            "{}",
            m.name
        );
    }
}

#[test]
fn parameters_hold_their_defaults() {
    let b = built();
    let data = std::fs::read(&b.get("params").unwrap().path).unwrap();
    let file = object::File::parse(data.as_slice()).unwrap();
    let bytes_of = |name: &str, len: usize| -> Vec<u8> {
        let sym = file
            .symbol_by_name(name)
            .unwrap_or_else(|| panic!("{name}"));
        let section = file.section_by_index(sym.section_index().unwrap()).unwrap();
        let at = sym.address() as usize - section.address() as usize;
        section.data().unwrap()[at..at + len].to_vec()
    };
    assert_eq!(bytes_of("__kmod_param_count", 8), 3i64.to_le_bytes());
    assert_eq!(bytes_of("__kmod_param_offset", 8), (-1i64).to_le_bytes());
    assert_eq!(bytes_of("__kmod_param_verbose", 1), [0]);
    // charp: {ptr, len}; the pointer is a relocation to the default string, the length 5.
    assert_eq!(
        bytes_of("__kmod_param_greeting", 16)[8..],
        5u64.to_le_bytes()
    );
}

#[test]
fn big_has_over_100k_relocations_of_mixed_types() {
    let b = built();
    let data = std::fs::read(&b.get("big").unwrap().path).unwrap();
    let file = ElfFile64::<Endianness>::parse(data.as_slice()).unwrap();
    let endian = file.endian();
    let symtab = file.elf_symbol_table();
    let mut by_kind: BTreeMap<(u32, bool), usize> = BTreeMap::new();
    let mut total = 0;
    for s in file.sections() {
        let header = s.elf_section_header();
        let Some((relas, _)) = header.rela(endian, data.as_slice()).unwrap() else {
            continue;
        };
        for r in relas {
            let sym = symtab
                .symbol(object::SymbolIndex(r.r_sym(endian, false) as usize))
                .unwrap();
            let against_section = sym.st_type() == elf::STT_SECTION;
            *by_kind
                .entry((r.r_type(endian, false).0, against_section))
                .or_default() += 1;
            total += 1;
        }
    }
    assert!(total >= 100_000, "{total}");
    for (ty, against_section) in [
        (elf::R_X86_64_64, true),
        (elf::R_X86_64_64, false),
        (elf::R_X86_64_PC32, true),
        (elf::R_X86_64_PC32, false),
        (elf::R_X86_64_32S, true),
        (elf::R_X86_64_32S, false),
        (elf::R_X86_64_PLT32, false),
        (elf::R_X86_64_PC64, false),
        (elf::R_X86_64_REX_GOTPCRELX, false),
    ] {
        let n = by_kind.get(&(ty.0, against_section)).copied().unwrap_or(0);
        assert!(
            n >= 1000,
            "{ty:?} against {}: {n}",
            if against_section { "section" } else { "symbol" }
        );
    }
}

#[test]
fn rebuilding_gives_identical_modules() {
    let first = built();
    let second = build_modules(&dirs("out-again")).unwrap();
    for (a, b) in first.modules.iter().zip(&second.modules) {
        assert_eq!(a.name, b.name);
        assert!(
            std::fs::read(&a.path).unwrap() == std::fs::read(&b.path).unwrap(),
            "{} differs between two builds",
            a.name
        );
    }
}

#[test]
fn unresolvable_symbols_fail_the_build_by_name() {
    let fixtures =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kmod-tools/tests/fixtures/kmodlab");
    let entry = |name: &str| kmod_tools::depmod::Entry {
        relpath: format!("{name}.ko"),
        module: kmod_tools::ModuleFile::open(&fixtures.join(format!("{name}.ko"))).unwrap(),
    };
    let err = kmodlab_build::modules::check_undefined(&[entry("kvclient"), entry("hello")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kvclient.ko: undefined symbol `kvstore_put`"),
        "{err}"
    );
    assert!(!err.contains("hello.ko"), "{err}");
    let all = ["kvclient", "kvstore", "ramblk", "crc32"].map(entry);
    kmodlab_build::modules::check_undefined(&all).unwrap();
}

#[test]
fn built_modules_are_signed_by_the_target_directorys_key() {
    use std::os::unix::fs::PermissionsExt;
    let built = built();
    let key_dir = dirs("out").target_root.join("module-signing");
    let key_path = key_dir.join("signing_key.pem");
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the generated key is readable by its owner only"
    );
    let key = kmod_tools::sign::read_key(&key_path).unwrap();
    let public = std::fs::read(key_dir.join("signing_key.pub.der")).unwrap();
    let trusted = kmod_sig::TrustedKey::from_spki_der(&public).unwrap();
    assert_eq!(trusted.identity(), key.identity());
    for m in &built.modules {
        let file = std::fs::read(&m.path).unwrap();
        let checked = kmod_sig::check(&file, Some(&trusted));
        assert_eq!(
            checked.outcome.as_ref().map(|v| &v.identity),
            Ok(key.identity()),
            "{}",
            m.name
        );
        assert!(checked.module.len() < file.len());
        assert_eq!(m.size, file.len() as u64);
    }
}

/// The export signatures of the module set (ABI.md "Export signatures"), in their canonical
/// form: every export has one, read from the `.ko` with `kmod-calls`, in a section that is
/// not SHF_ALLOC.
#[test]
fn every_export_has_its_call_signature() {
    let expected: &[(&str, &[&str])] = &[
        (
            "crc32",
            &[
                "adler32_compute(in[@1], u64) -> u32",
                "crc32_compute(in[@1], u64) -> u32",
                "crc32_update(u32, in[@2], u64) -> u32",
            ],
        ),
        (
            "cstats",
            &["cstats_summarize(in[@1*4], u64, out[24]) -> i32"],
        ),
        (
            "kvstore",
            &[
                "kvstore_count() -> u64",
                "kvstore_delete(in[@1], u64) -> i32",
                "kvstore_get(in[@1], u64, out[@3], u64, outlen[@2]) -> i32",
                "kvstore_put(in[@1], u64, in[@3], u64) -> i32",
            ],
        ),
        ("rival", &["rival_token() -> u64"]),
        (
            "ramblk",
            &[
                "ramblk_block_count() -> u64",
                "ramblk_block_size() -> u32",
                "ramblk_read(u64, out[@2], u64) -> i32",
                "ramblk_write(u64, in[@2], u64) -> i32",
            ],
        ),
    ];
    for m in &built().modules {
        let data = std::fs::read(&m.path).unwrap();
        let table = kmod_calls::ExportTable::from_module(&data).unwrap();
        let mut got: Vec<String> = table.iter().map(|e| e.to_string()).collect();
        got.sort();
        let want = expected
            .iter()
            .find(|(name, _)| *name == m.name)
            .map_or(&[][..], |(_, sigs)| *sigs);
        assert_eq!(got, want, "{}", m.name);
        table
            .check_exports(m.exports.iter().map(String::as_str))
            .unwrap();
        let file = ElfFile64::<Endianness>::parse(data.as_slice()).unwrap();
        if let Some(s) = file.section_by_name(kmod_calls::SECTION) {
            let flags = s.elf_section_header().sh_flags(file.endian()).0;
            assert_eq!(flags, 0, "{}", m.name);
        }
    }
}

/// What the monolithic kernel loads does not depend on the signature section: each module
/// loads (validate, layout, resolve, copy, relocate) to byte-identical regions with the
/// same placements, exports and `.modinfo` as the same file without the section.
#[test]
fn the_monolithic_loader_ignores_the_signature_section() {
    use kmod_loader::{ExportTable, ProviderId, RegionMemory, Regions};
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-pipeline/stripped");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut with_section = 0;
    for m in &built().modules {
        let data = std::fs::read(&m.path).unwrap();
        if kmod_calls::find_section(&data).unwrap().is_none() {
            continue;
        }
        with_section += 1;
        let stripped = scratch.join(format!("{}.ko", m.name));
        let status = std::process::Command::new("objcopy")
            .args(["--remove-section", kmod_calls::SECTION])
            .arg(&m.path)
            .arg(&stripped)
            .status()
            .unwrap();
        assert!(status.success());
        let without = std::fs::read(&stripped).unwrap();
        assert!(kmod_calls::find_section(&without).unwrap().is_none());
        // Without its signatures the module would not build: its exports are undeclared.
        let module = kmod_tools::ModuleFile::open(&stripped).unwrap();
        let first = module.exports().next().unwrap();
        let err = kmodlab_build::modules::check_signatures(&stripped, &module)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(&format!(
                "{}: export `{first}` has no call signature, so no other module's server can \
                 call it; declare it with kmod_api::export! (Rust) or EXPORT_SYMBOL_SIG (C), \
                 see modules/ABI.md \"Export signatures\"",
                stripped.display()
            )),
            "{err}"
        );
        kmodlab_build::modules::check_signatures(
            &m.path,
            &kmod_tools::ModuleFile::open(&m.path).unwrap(),
        )
        .unwrap();
        let module = kmod_loader::validate(&data).unwrap();
        let sig = module
            .sections()
            .find(|s| s.name == kmod_calls::SECTION)
            .unwrap();
        assert_eq!(
            sig.disposition,
            kmod_loader::validate::Disposition::NotLoaded,
            "{}",
            m.name
        );
        // Monolithic (top 2 GiB) and microkernel server (low 2 GiB) bases; every import at
        // an address near them.
        for base in [0xffff_ffff_a000_0000u64, 0x4000_0000] {
            let load = |bytes: &[u8]| {
                let mut provider = ExportTable::new();
                for (i, import) in m.imports.iter().enumerate() {
                    provider
                        .insert(import, base + 0x80_0000 + 16 * i as u64, ProviderId(1))
                        .unwrap();
                }
                let prepared = kmod_loader::prepare(bytes, &provider).unwrap();
                let mut core = vec![0u8; prepared.layout.core.size as usize];
                let mut init = vec![0u8; prepared.layout.init.size as usize];
                let loaded = prepared
                    .finish(Regions {
                        core: RegionMemory {
                            base,
                            bytes: &mut core,
                        },
                        init: RegionMemory {
                            base: base + 0x40_0000,
                            bytes: &mut init,
                        },
                    })
                    .unwrap();
                let placed: Vec<_> = loaded
                    .sections
                    .iter()
                    .map(|s| (s.name.clone(), s.placement, s.address))
                    .collect();
                (core, init, placed, loaded.exports, loaded.modinfo)
            };
            assert!(load(&data) == load(&without), "{} at {base:#x}", m.name);
        }
    }
    assert_eq!(with_section, 5);
}
