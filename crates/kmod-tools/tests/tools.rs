//! modinfo, depmod and objstat on kmodlab modules, real Linux modules (fixtures/README.md)
//! and synthetic objects; and robustness against malformed input.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use kmod_tools::depmod::{self, Entry, KernelExports};
use kmod_tools::ko::read_module_bytes;
use kmod_tools::objstat::{ObjStat, Region};
use kmod_tools::{ModuleFile, ToolError, modinfo};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn bytes(rel: &str) -> Vec<u8> {
    read_module_bytes(&fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn open(rel: &str) -> ModuleFile {
    ModuleFile::open(&fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- modinfo ----

#[test]
fn modinfo_kmodlab_module_prints_like_linux() {
    let m = open("kmodlab/params.ko");
    let text = modinfo::render(&m.modinfo, "/lib/modules/params.ko", None, '\n');
    assert_eq!(
        text,
        "filename:       /lib/modules/params.ko\n\
         version:        1.0\n\
         license:        GPL\n\
         description:    Shows every parameter type and rejects out-of-range values\n\
         author:         kmodlab\n\
         name:           params\n\
         parm:           count:how many times to greet (0..=10) (int)\n\
         parm:           verbose:print each greeting on its own line (bool)\n\
         parm:           greeting:the word to greet with (1..=32 bytes) (charp)\n\
         parm:           offset:any i64; printed back to check sign handling (int)\n"
    );
}

#[test]
fn modinfo_linux_module_matches_kmod_modinfo() {
    // The expected text is what /sbin/modinfo (kmod 30) printed for this file, minus the
    // signature lines it derives from the appended signature (not .modinfo).
    let m = open("linux/kernel/drivers/char/hangcheck-timer.ko");
    let text = modinfo::render(&m.modinfo, "/x/hangcheck-timer.ko", None, '\n');
    assert_eq!(
        text,
        "filename:       /x/hangcheck-timer.ko\n\
         version:        0.9.1\n\
         license:        GPL\n\
         description:    Hangcheck-timer detects when the system has gone out to lunch past a certain margin.\n\
         author:         Oracle\n\
         srcversion:     B1206270492EE734A253EE2\n\
         depends:        \n\
         retpoline:      Y\n\
         intree:         Y\n\
         name:           hangcheck_timer\n\
         vermagic:       6.1.0-50-cloud-amd64 SMP preempt mod_unload modversions \n\
         parm:           hangcheck_tick:Timer delay. (int)\n\
         parm:           hangcheck_margin:If the hangcheck timer has been delayed more than hangcheck_margin seconds, the driver will fire. (int)\n\
         parm:           hangcheck_reboot:If nonzero, the machine will reboot when the timer margin is exceeded. (int)\n\
         parm:           hangcheck_dump_tasks:If nonzero, the machine will dump the system task state when the timer margin is exceeded. (int)\n"
    );
}

#[test]
fn modinfo_fields() {
    let m = open("linux/kernel/net/802/garp.ko");
    assert_eq!(
        modinfo::render(&m.modinfo, "f", Some("depends"), '\n'),
        "stp,llc\n"
    );
    assert_eq!(
        modinfo::render(&m.modinfo, "f", Some("filename"), '\n'),
        "f\n"
    );
    assert_eq!(
        modinfo::render(&m.modinfo, "f", Some("nosuchfield"), '\n'),
        ""
    );
    let p = open("kmodlab/kvclient.ko");
    assert_eq!(
        modinfo::render(&p.modinfo, "f", Some("parm"), '\n'),
        "keys:how many keys to store (1..=48) (int)\n"
    );
    assert_eq!(
        modinfo::render(&p.modinfo, "f", Some("license"), '\0'),
        "GPL\0"
    );
    let nul = modinfo::render(&p.modinfo, "f", None, '\0');
    assert!(nul.contains("\0license=GPL\0"), "{nul:?}");
}

#[test]
fn modinfo_params_merge_like_kmod() {
    let mut m = open("kmodlab/hello.ko");
    m.modinfo = vec![
        ("parm".into(), "a:first".into()),
        ("parmtype".into(), "a:int".into()),
        ("parmtype".into(), "b:bool".into()),
        ("parm".into(), "c:only a description".into()),
        ("parm".into(), "no colon".into()),
    ];
    let shown: Vec<String> = modinfo::params(&m.modinfo)
        .iter()
        .map(|p| p.display())
        .collect();
    assert_eq!(shown, ["c:only a description", "b:bool", "a:first (int)"]);
}

// ---- depmod ----

fn load(dir: &Path) -> Vec<Entry> {
    let scan = depmod::load_dir(dir).unwrap();
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
    scan.entries
}

fn dep_text(dir: &Path, kernel: &KernelExports) -> String {
    let entries = load(dir);
    depmod::compute(&entries, kernel).unwrap().modules_dep()
}

#[test]
fn depmod_kmodlab_modules() {
    let dir = fixtures().join("kmodlab");
    let expected = std::fs::read_to_string(dir.join("modules.dep.expected")).unwrap();
    assert_eq!(dep_text(&dir, &KernelExports::Default), expected);
    let entries = load(&dir);
    let graph = depmod::compute(&entries, &KernelExports::Default).unwrap();
    assert!(graph.missing.is_empty(), "{:?}", graph.missing);
    // The chain: kvclient needs kvstore, which needs ramblk and crc32; loading goes from the
    // end of the modules.dep list to its start.
    let kvclient = graph.index_of("kvclient.ko").unwrap();
    assert_eq!(
        graph.load_order(kvclient),
        ["crc32.ko", "ramblk.ko", "kvstore.ko", "kvclient.ko"]
    );
}

#[test]
fn depmod_linux_tree_matches_kmod_depmod() {
    let dir = fixtures().join("linux");
    let expected = std::fs::read_to_string(fixtures().join("linux-modules.dep.expected")).unwrap();
    assert_eq!(dep_text(&dir, &KernelExports::Default), expected);
}

#[test]
fn depmod_linux_tree_with_symvers_and_a_missing_symbol() {
    let dir = fixtures().join("linux");
    let symvers_path = fixtures().join("linux-Module.symvers");
    let symvers = std::fs::read_to_string(&symvers_path).unwrap();
    let entries = load(&dir);

    let full = KernelExports::from_symvers(&symvers_path, &symvers).unwrap();
    let graph = depmod::compute(&entries, &full).unwrap();
    assert!(graph.missing.is_empty(), "{:?}", graph.missing);

    // Without `mutex_lock`, every module that calls it is reported.
    let without: String = symvers
        .lines()
        .filter(|l| l.split('\t').nth(1) != Some("mutex_lock"))
        .map(|l| format!("{l}\n"))
        .collect();
    let partial = KernelExports::from_symvers(&symvers_path, &without).unwrap();
    let graph = depmod::compute(&entries, &partial).unwrap();
    let needers = &graph.missing["mutex_lock"];
    assert!(needers.contains(&"kernel/net/802/stp.ko"), "{needers:?}");
    assert_eq!(graph.missing.len(), 1, "{:?}", graph.missing);
}

#[test]
fn symbol_lists_parse_and_reject_bad_lines() {
    let p = Path::new("System.map");
    let map = "ffffffff81000000 T _text\nffffffff82000000 r __ksymtab_printk\n";
    let KernelExports::List(set) = KernelExports::from_system_map(p, map).unwrap() else {
        panic!("list expected");
    };
    assert_eq!(set, HashSet::from(["printk".to_owned()]));
    assert!(matches!(
        KernelExports::from_system_map(p, "garbage\n"),
        Err(ToolError::SymbolList { line: 1, .. })
    ));
    // Debian's stub System.map has no exports at all: an error, not "everything missing".
    assert!(
        KernelExports::from_system_map(p, "ffffffffffffffff B The real System.map is elsewhere\n")
            .is_err()
    );
    assert!(matches!(
        KernelExports::from_symvers(Path::new("Module.symvers"), "0x1\tonlytwo\n"),
        Err(ToolError::SymbolList { line: 1, .. })
    ));
    let KernelExports::List(set) =
        KernelExports::from_plain_list("a\n# comment\n b # trailing\n\n")
    else {
        panic!("list expected");
    };
    assert_eq!(set, HashSet::from(["a".to_owned(), "b".to_owned()]));
}

/// An ELF relocatable object exporting `exports` (`X` and `__ksymtab_X`) and needing
/// `imports`, named `name` in its `.modinfo`.
fn synthetic_module(name: &str, exports: &[&str], imports: &[&str]) -> Vec<u8> {
    use object::write::{Object, Symbol, SymbolSection};
    use object::{
        Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
    };
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.add_section(Vec::new(), b".text".to_vec(), SectionKind::Text);
    obj.append_section_data(text, &[0xc3; 16], 16);
    let ksymtab = obj.add_section(Vec::new(), b"__ksymtab".to_vec(), SectionKind::ReadOnlyData);
    let modinfo = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
    obj.append_section_data(modinfo, format!("license=GPL\0name={name}\0").as_bytes(), 1);
    for (i, e) in exports.iter().enumerate() {
        for (sym, section) in [(e.to_string(), text), (format!("__ksymtab_{e}"), ksymtab)] {
            let value = if section == ksymtab {
                obj.append_section_data(ksymtab, &[0; 16], 8)
            } else {
                i as u64
            };
            obj.add_symbol(Symbol {
                name: sym.into_bytes(),
                value,
                size: 0,
                kind: SymbolKind::Data,
                scope: SymbolScope::Linkage,
                weak: false,
                section: SymbolSection::Section(section),
                flags: SymbolFlags::None,
            });
        }
    }
    for i in imports {
        obj.add_symbol(Symbol {
            name: i.as_bytes().to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Text,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        });
    }
    obj.write().unwrap()
}

fn write_modules(dir: &Path, modules: &[(&str, &[&str], &[&str])]) {
    for (name, exports, imports) in modules {
        std::fs::write(
            dir.join(format!("{name}.ko")),
            synthetic_module(name, exports, imports),
        )
        .unwrap();
    }
}

#[test]
fn depmod_orders_deps_in_reverse_load_order() {
    let dir = scratch("depmod-order");
    // d -> c -> b -> a, and d -> a directly too.
    write_modules(
        &dir,
        &[
            ("a", &["fa"], &["kmod_print"]),
            ("b", &["fb"], &["fa"]),
            ("c", &["fc"], &["fb", "kmod_alloc"]),
            ("d", &[], &["fa", "fc"]),
        ],
    );
    assert_eq!(
        dep_text(&dir, &KernelExports::Default),
        "a.ko:\nb.ko: a.ko\nc.ko: b.ko a.ko\nd.ko: c.ko b.ko a.ko\n"
    );
}

#[test]
fn depmod_reports_cycles_by_name() {
    let dir = scratch("depmod-cycle");
    // x -> y -> z -> x is a cycle; w needs x and is not part of it; v is fine.
    write_modules(
        &dir,
        &[
            ("v", &["fv"], &[]),
            ("w", &[], &["fx"]),
            ("x", &["fx"], &["fy", "fv"]),
            ("y", &["fy"], &["fz"]),
            ("z", &["fz"], &["fx"]),
        ],
    );
    let entries = load(&dir);
    let err = depmod::compute(&entries, &KernelExports::Default).unwrap_err();
    let ToolError::Cycle { cycle } = &err else {
        panic!("expected a cycle, got {err}");
    };
    assert_eq!(cycle.first(), cycle.last());
    let members: HashSet<&str> = cycle.iter().map(String::as_str).collect();
    assert_eq!(members, HashSet::from(["x.ko", "y.ko", "z.ko"]), "{err}");
    // Each module in the reported cycle depends on the next one.
    let deps = |m: &str| match m {
        "x.ko" => "y.ko",
        "y.ko" => "z.ko",
        _ => "x.ko",
    };
    for pair in cycle.windows(2) {
        assert_eq!(deps(&pair[0]), pair[1], "{err}");
    }
    assert!(err.to_string().starts_with("dependency cycle: "), "{err}");

    // A two-module cycle too.
    let dir = scratch("depmod-cycle2");
    write_modules(&dir, &[("p", &["fp"], &["fq"]), ("q", &["fq"], &["fp"])]);
    let entries = load(&dir);
    assert!(matches!(
        depmod::compute(&entries, &KernelExports::Default),
        Err(ToolError::Cycle { cycle }) if cycle.len() == 3
    ));
}

#[test]
fn depmod_reports_missing_symbols_with_their_modules() {
    let dir = scratch("depmod-missing");
    write_modules(
        &dir,
        &[
            ("a", &["fa"], &["kmod_print", "no_such_fn"]),
            ("b", &[], &["fa", "no_such_fn", "also_missing"]),
        ],
    );
    let entries = load(&dir);
    let graph = depmod::compute(&entries, &KernelExports::Default).unwrap();
    assert_eq!(graph.missing["no_such_fn"], ["a.ko", "b.ko"]);
    assert_eq!(graph.missing["also_missing"], ["b.ko"]);
    assert_eq!(graph.missing.len(), 2);
    assert_eq!(graph.modules_dep(), "a.ko:\nb.ko: a.ko\n");
    // Unchecked: the same symbols are simply taken to come from the kernel.
    let graph = depmod::compute(&entries, &KernelExports::Unchecked).unwrap();
    assert!(graph.missing.is_empty());
}

#[test]
fn depmod_first_exporter_wins_and_duplicates_are_reported() {
    let dir = scratch("depmod-dup");
    write_modules(
        &dir,
        &[("a", &["f"], &[]), ("b", &["f"], &[]), ("c", &[], &["f"])],
    );
    let entries = load(&dir);
    let graph = depmod::compute(&entries, &KernelExports::Default).unwrap();
    assert_eq!(graph.modules_dep(), "a.ko:\nb.ko:\nc.ko: a.ko\n");
    assert_eq!(graph.duplicates, [("f", "a.ko", "b.ko")]);
}

#[test]
fn depmod_cli_writes_modules_dep() {
    let dir = scratch("depmod-cli");
    for f in ["hello.ko", "crc32.ko", "cstats.ko"] {
        std::fs::copy(fixtures().join("kmodlab").join(f), dir.join(f)).unwrap();
    }
    let args = kmod_tools::cli::DepmodArgs {
        dir: Some(dir.clone()),
        output: None,
        dry_run: false,
        system_map: None,
        symvers: None,
        kernel_symbols: None,
        no_kernel_check: false,
    };
    kmod_tools::cli::depmod(&args).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("modules.dep")).unwrap(),
        "crc32.ko:\ncstats.ko: crc32.ko\nhello.ko:\n"
    );
}

// ---- objstat ----

#[test]
fn objstat_linux_module_counts() {
    // Cross-checked with `readelf -rW`/`-sW`/`-SW` on the same file.
    let data = bytes("linux/kernel/net/802/stp.ko");
    let s = ObjStat::parse(Path::new("stp.ko"), &data).unwrap();
    assert_eq!(s.sections.len(), 32, "section headers without the null one");
    assert_eq!(s.relocations.total, 63);
    let by_type: Vec<(&str, u64)> = s
        .relocations
        .by_type
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by_type,
        [
            ("R_X86_64_32S", 9),
            ("R_X86_64_64", 5),
            ("R_X86_64_PC32", 32),
            ("R_X86_64_PLT32", 17)
        ]
    );
    assert_eq!(s.symbols.undefined, 10);
    assert_eq!(s.symbols.exports, 2);
    let section = |name: &str| s.sections.iter().find(|x| x.name == name).unwrap();
    assert_eq!(section(".text").region, Region::CoreText);
    assert_eq!(section(".text").size, 0x1d5);
    assert_eq!(section(".modinfo").region, Region::NotLoaded);
    assert_eq!(section("__versions").region, Region::NotLoaded);
    assert_eq!(
        section(".gnu.linkonce.this_module").region,
        Region::CoreData
    );
    assert_eq!(section(".bss").kind, "NOBITS");
    assert_eq!(section("__ksymtab_strings").flags, "AMS");
    assert_eq!(s.regions.core_text, 0x1d5);
}

#[test]
fn objstat_kmodlab_modules_use_abi_sections() {
    for name in [
        "hello", "params", "crc32", "ramblk", "kvstore", "kvclient", "cstats", "faulty",
    ] {
        let data = bytes(&format!("kmodlab/{name}.ko"));
        let s = ObjStat::parse(Path::new(name), &data).unwrap();
        let section = |n: &str| s.sections.iter().find(|x| x.name == n);
        assert_eq!(
            section(".init.text").map(|x| x.region),
            Some(Region::Init),
            "{name}"
        );
        assert_eq!(
            section(".exit.text").map(|x| x.region),
            Some(Region::CoreText),
            "{name}"
        );
        assert_eq!(
            section(".modinfo").map(|x| x.region),
            Some(Region::NotLoaded),
            "{name}"
        );
        assert!(
            s.relocations.total > 0 && s.relocations.unloaded == 0,
            "{name}"
        );
        let counted: u64 = s.relocations.by_type.values().sum();
        assert_eq!(counted, s.relocations.total);
        assert_eq!(
            s.relocations.against_section + s.relocations.against_symbol,
            s.relocations.total
        );
        // Every relocation, counted a second way: object's generic relocation iterator.
        let file = object::File::parse(data.as_slice()).unwrap();
        use object::{Object, ObjectSection};
        let generic: usize = file.sections().map(|sec| sec.relocations().count()).sum();
        assert_eq!(generic as u64, s.relocations.total, "{name}");
    }
    let data = bytes("kmodlab/ramblk.ko");
    let exports = ObjStat::parse(Path::new("ramblk.ko"), &data)
        .unwrap()
        .symbols
        .exports;
    assert_eq!(exports, 4);
}

#[test]
fn objstat_json_is_valid() {
    let data = bytes("kmodlab/hello.ko");
    let s = ObjStat::parse(Path::new("hello.ko"), &data).unwrap();
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["relocations"]["total"], s.relocations.total);
    assert_eq!(json["sections"][0]["name"], ".text");
}

// ---- file formats and errors ----

#[test]
fn compressed_modules_read_like_plain_ones() {
    let plain = open("linux/kernel/net/802/stp.ko");
    for f in ["compressed/stp.ko.xz", "compressed/stp.ko.zst"] {
        let m = open(f);
        assert_eq!(m.modinfo, plain.modinfo, "{f}");
        assert!(m.exports().eq(plain.exports()), "{f}");
        assert!(m.imports().eq(plain.imports()), "{f}");
        let data = bytes(f);
        let s = ObjStat::parse(Path::new(f), &data).unwrap();
        assert_eq!(s.relocations.total, 63, "{f}");
    }
    assert_eq!(
        kmod_tools::ko::module_name(Path::new("a/hangcheck-timer.ko.zst")).as_deref(),
        Some("hangcheck_timer")
    );
}

#[test]
fn bad_files_are_typed_errors_naming_the_file() {
    let dir = scratch("bad-files");
    let good = std::fs::read(fixtures().join("kmodlab/hello.ko")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.ko", Vec::new()),
        ("text.ko", b"not an ELF file at all".to_vec()),
        ("truncated.ko", good[..100].to_vec()),
        ("elf32.ko", {
            let mut v = good.clone();
            v[4] = 1;
            v
        }),
        ("arm.ko", {
            let mut v = good.clone();
            v[18] = 183; // EM_AARCH64
            v
        }),
        ("exec.ko", {
            let mut v = good.clone();
            v[16] = 2; // ET_EXEC
            v
        }),
        ("badshoff.ko", {
            let mut v = good.clone();
            v[40..48].copy_from_slice(&u64::MAX.to_le_bytes()); // e_shoff
            v
        }),
        ("bad.ko.xz", b"\xfd7zXZ\0garbage".to_vec()),
        ("bad.ko.zst", b"\x28\xb5\x2f\xfdgarbage".to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let err = ModuleFile::open(&path).expect_err(name);
        assert!(err.to_string().contains(name), "{name}: {err}");
        assert!(
            matches!(
                err,
                ToolError::NotModule { .. } | ToolError::Elf { .. } | ToolError::Decompress { .. }
            ),
            "{name}: {err:?}"
        );
        let objstat = read_module_bytes(&path).and_then(|d| ObjStat::parse(&path, &d).map(|_| ()));
        assert!(objstat.is_err(), "{name}");
    }
    let missing = ModuleFile::open(&dir.join("nonexistent.ko")).unwrap_err();
    assert!(matches!(missing, ToolError::Io { .. }));
}

/// Random byte flips and truncations of real modules: every result is Ok or a typed error,
/// never a panic.
#[test]
fn mutated_modules_never_panic() {
    let files = [
        "kmodlab/hello.ko",
        "kmodlab/kvstore.ko",
        "linux/kernel/net/802/stp.ko",
        "linux/kernel/drivers/char/hangcheck-timer.ko",
    ];
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let path = Path::new("mutated.ko");
    let mut errors = 0;
    for f in files {
        let original = std::fs::read(fixtures().join(f)).unwrap();
        for round in 0..400 {
            let mut data = original.clone();
            // Headers and tables live at both ends of the file: bias the flips there.
            for _ in 0..1 + next() % 8 {
                let at = if next() % 2 == 0 {
                    (next() % 128) as usize
                } else {
                    (next() as usize) % data.len()
                };
                data[at] = next() as u8;
            }
            if round % 10 == 0 {
                data.truncate((next() as usize) % data.len());
            }
            errors += usize::from(ModuleFile::parse(path, &data).is_err());
            errors += usize::from(ObjStat::parse(path, &data).is_err());
        }
    }
    assert!(errors > 0, "mutations should produce some errors");
}

#[test]
fn find_modules_walks_recursively_and_sorts() {
    let (found, warnings) = kmod_tools::ko::find_modules(&fixtures()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let rel: Vec<String> = found
        .iter()
        .map(|p| depmod::relpath(&fixtures(), p))
        .collect();
    assert!(rel.contains(&"compressed/stp.ko.xz".to_owned()));
    assert!(rel.contains(&"linux/kernel/net/llc/llc.ko".to_owned()));
    assert!(
        !rel.iter()
            .any(|r| r.ends_with(".expected") || r.ends_with(".md"))
    );
    let mut sorted = rel.clone();
    sorted.sort();
    assert_eq!(rel, sorted);
}

#[test]
fn entries_keep_modules_order() {
    // modules.order of the Linux fixture lists hangcheck-timer first.
    let entries: Vec<Entry> = load(&fixtures().join("linux"));
    assert_eq!(entries[0].relpath, "kernel/drivers/char/hangcheck-timer.ko");
    assert_eq!(entries[4].relpath, "kernel/net/llc/llc.ko");
}
