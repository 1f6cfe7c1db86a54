//! Unit and property tests: the grammar (exact canonical texts and messages), the section,
//! descriptors, and whole calls through a simulated kernel compared with direct calls.

use super::*;
use kmodlab_ipc::msg::{LEASE_READ, LEASE_WRITE, MAX_LEASES, MSG_WORDS, Received};
use proptest::prelude::*;

fn parse(s: &str) -> Export<'_> {
    Export::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn parse_err(s: &str) -> String {
    match Export::parse(s.as_bytes()) {
        Ok(e) => panic!("{s:?} parsed as {e}"),
        Err(e) => e.to_string(),
    }
}

/// The module set's exports, as their modules declare them (the Rust ones as `export!`
/// writes them, with `usize` and `*1`), and their canonical forms.
const MODULE_SET: &[(&str, &str)] = &[
    (
        "crc32_compute(in[@1], usize) -> u32",
        "crc32_compute(in[@1], u64) -> u32",
    ),
    (
        "crc32_update(u32, in[@2], usize) -> u32",
        "crc32_update(u32, in[@2], u64) -> u32",
    ),
    (
        "ramblk_read(u64, out[@2], usize) -> i32",
        "ramblk_read(u64, out[@2], u64) -> i32",
    ),
    ("ramblk_block_size() -> u32", "ramblk_block_size() -> u32"),
    (
        "kvstore_get(in[@1], usize, out[@3], usize, outlen[@2]) -> i32",
        "kvstore_get(in[@1], u64, out[@3], u64, outlen[@2]) -> i32",
    ),
    (
        "cstats_summarize(in[@1*4], u64, out[24]) -> i32",
        "cstats_summarize(in[@1*4], u64, out[24]) -> i32",
    ),
];

#[test]
fn module_set_signatures_parse_to_their_canonical_text() {
    for (written, canonical) in MODULE_SET {
        let e = parse(written);
        assert_eq!(e.to_string(), *canonical);
        assert_eq!(parse(canonical), e);
        assert_eq!(parse(canonical).fingerprint(), e.fingerprint());
    }
    let get = parse(MODULE_SET[4].0);
    assert_eq!(get.name, "kvstore_get");
    assert_eq!(
        get.sig.args(),
        [
            Arg::Buffer {
                dir: Dir::In,
                extent: Extent::Count { arg: 1, elem: 1 }
            },
            Arg::Int(Int::U64),
            Arg::Buffer {
                dir: Dir::Out,
                extent: Extent::Count { arg: 3, elem: 1 }
            },
            Arg::Int(Int::U64),
            Arg::OutLen { buffer: 2 },
        ]
    );
    assert_eq!(get.sig.ret(), Ret::Int(Int::I32));
    assert_eq!(get.sig.outlen_of(2), Some(4));
    assert_eq!(get.sig.outlen_of(0), None);
}

#[test]
fn spaces_between_tokens_are_allowed_and_dropped() {
    let e = parse("  f ( in [ @ 1 * 4 ] ,u64,out[ 8 ] )->void ");
    assert_eq!(e.to_string(), "f(in[@1*4], u64, out[8]) -> void");
    assert_eq!(parse("g()->i8").to_string(), "g() -> i8");
    assert_eq!(
        parse("h(inout[@1*1], u16) -> void").to_string(),
        "h(inout[@1], u16) -> void"
    );
}

#[test]
fn fingerprint_is_fnv1a_of_the_canonical_text() {
    // FNV-1a 64 of "f() -> void", computed independently.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"f() -> void" {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    assert_eq!(parse("f()->void").fingerprint(), h);
    // Name, types and buffer sizes are all part of it.
    let base = parse("f(u32) -> void").fingerprint();
    for other in [
        "g(u32) -> void",
        "f(i32) -> void",
        "f(u32) -> u8",
        "f() -> void",
    ] {
        assert_ne!(parse(other).fingerprint(), base, "{other}");
    }
    assert_ne!(
        parse("f(in[@1], u64) -> void").fingerprint(),
        parse("f(in[@1*2], u64) -> void").fingerprint()
    );
}

#[test]
fn syntax_errors_say_where_and_what_was_expected() {
    let cases = [
        ("", "at byte 0: expected the export's name (a C identifier)"),
        (
            "1f() -> void",
            "at byte 0: expected a name that does not start with a digit",
        ),
        (
            "f -> void",
            "at byte 2: expected `(` after the export's name",
        ),
        (
            "f(u32 u32) -> void",
            "at byte 6: expected `,` or `)` after an argument",
        ),
        (
            "f(char) -> void",
            "at byte 2: expected an argument: u8..u64, i8..i64, usize, isize, in[..], out[..], inout[..] or outlen[..]",
        ),
        (
            "f()",
            "at byte 3: expected `->` and the return type after `)`",
        ),
        (
            "f() -> bool",
            "at byte 7: expected a return type: void, u8..u64, i8..i64, usize or isize",
        ),
        (
            "f() -> void x",
            "at byte 12: expected the end of the record after the return type",
        ),
        (
            "f(in) -> void",
            "at byte 4: expected `[` and the buffer's length after in/out/inout",
        ),
        (
            "f(in[@6], u64) -> void",
            "at byte 6: expected an argument position, 0 to 5",
        ),
        (
            "f(in[@12], u64) -> void",
            "at byte 6: expected an argument position, 0 to 5",
        ),
        (
            "f(out[0]) -> void",
            "at byte 6: expected a size in bytes, 1 to 65536, without leading zeros",
        ),
        (
            "f(out[065]) -> void",
            "at byte 6: expected a size in bytes, 1 to 65536, without leading zeros",
        ),
        (
            "f(out[65537]) -> void",
            "at byte 6: expected a size in bytes, 1 to 65536, without leading zeros",
        ),
        (
            "f(out[100000]) -> void",
            "at byte 6: expected a size in bytes, 1 to 65536, without leading zeros",
        ),
        (
            "f(in[@1 u64) -> void",
            "at byte 8: expected `]` after the buffer's length",
        ),
        (
            "f(outlen[1]) -> void",
            "at byte 9: expected `@` and the buffer argument's position in outlen[...]",
        ),
        (
            "f(u8,) -> void",
            "at byte 5: expected an argument: u8..u64, i8..i64, usize, isize, in[..], out[..], inout[..] or outlen[..]",
        ),
        ("f\t() -> void", "byte 0x09 at 1 is not printable ASCII"),
        ("f(\u{e9}) -> void", "byte 0xc3 at 2 is not printable ASCII"),
    ];
    for (input, message) in cases {
        assert_eq!(parse_err(input), message, "{input:?}");
    }
    let long = format!("{}() -> void", "a".repeat(256));
    assert_eq!(
        parse_err(&long),
        "export name of 256 bytes is longer than 255"
    );
    let longer = format!("{}() -> void", "a".repeat(600));
    assert_eq!(parse_err(&longer), "record of 610 bytes is longer than 512");
    assert!(Export::parse(format!("{}() -> void", "a".repeat(255)).as_bytes()).is_ok());
}

#[test]
fn signature_rules_are_checked_with_exact_messages() {
    let cases = [
        (
            "f(u8, u8, u8, u8, u8, u8, u8) -> void",
            "7 arguments: an export may take at most 6 (the integer argument registers)",
        ),
        (
            "f(in[1], in[1], in[1], in[1], in[1]) -> void",
            "5 buffer arguments: at most 4 (one lease each)",
        ),
        (
            "f(in[@1]) -> void",
            "argument 0: its length is argument 1, which does not exist",
        ),
        (
            "f(in[@0]) -> void",
            "argument 0: its length is argument 0, which is not an integer",
        ),
        (
            "f(in[@1], out[4]) -> void",
            "argument 0: its length is argument 1, which is not an integer",
        ),
        (
            "f(outlen[@3]) -> void",
            "argument 0: outlen of argument 3, which does not exist",
        ),
        (
            "f(in[4], outlen[@0]) -> void",
            "argument 1: outlen of argument 0, which is not an out or inout buffer",
        ),
        (
            "f(u64, outlen[@0]) -> void",
            "argument 1: outlen of argument 0, which is not an out or inout buffer",
        ),
        (
            "f(out[4], outlen[@0], outlen[@0]) -> void",
            "buffer argument 0 has two outlen arguments",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(parse_err(input), message, "{input:?}");
    }
    assert_eq!(
        Signature::new(
            &[Arg::Buffer {
                dir: Dir::In,
                extent: Extent::Fixed { bytes: 0 }
            }],
            Ret::Void
        ),
        Err(SignatureError::BadSize { arg: 0, size: 0 })
    );
    // Six arguments with four buffers, two of them with out-lengths: the most there is.
    parse("f(inout[@4*2], out[@4], in[8], in[16], u32, outlen[@1]) -> i64");
    parse("f(out[8], outlen[@0], out[@3], u64, outlen[@2], u8) -> void");
}

// ---- the section --------------------------------------------------------------------

#[test]
fn a_section_is_nul_terminated_records_with_optional_padding() {
    let data = b"b(u8) -> void\0\0\0\0a(in[@1], u64) -> u32\0\0";
    let t = ExportTable::parse(data).unwrap();
    assert_eq!(t.len(), 2);
    let names: Vec<&str> = t.iter().map(|e| e.name).collect();
    assert_eq!(names, ["b", "a"]);
    assert_eq!(
        t.find("a").map(|(i, e)| (i, e.to_string())),
        Some((1, "a(in[@1], u64) -> u32".into()))
    );
    assert_eq!(t.get(0).unwrap().name, "b");
    assert!(t.get(2).is_none());
    assert!(t.find("c").is_none());
    assert!(ExportTable::parse(b"").unwrap().is_empty());
    assert!(ExportTable::parse(b"\0\0\0").unwrap().is_empty());
}

#[test]
fn section_errors_name_the_record() {
    let err = |d: &[u8]| ExportTable::parse(d).unwrap_err().to_string();
    assert_eq!(
        err(b"a() -> void\0b() -> void"),
        "signature record at offset 0xc is not NUL-terminated"
    );
    assert_eq!(
        err(b"a() -> void\0b() -> vod\0"),
        "signature record 1 (offset 0xc): at byte 7: expected a return type: void, u8..u64, i8..i64, usize or isize"
    );
    assert_eq!(
        err(b"a() -> void\0b() -> void\0a(u8) -> void\0"),
        "two signatures for `a` (offsets 0x0 and 0x18)"
    );
    assert_eq!(
        err(&vec![b' '; MAX_SECTION + 1]),
        "signature section of 65537 bytes is larger than 65536"
    );
    let mut many = Vec::new();
    for i in 0..=MAX_EXPORTS {
        many.extend_from_slice(format!("f{i}() -> void\0").as_bytes());
    }
    assert_eq!(err(&many), "more than 512 signature records");
}

#[test]
fn coverage_refuses_undeclared_exports_and_stale_signatures() {
    let t = ExportTable::parse(b"a() -> void\0b(u8) -> u8\0").unwrap();
    assert_eq!(t.check_exports(["a", "b"]), Ok(()));
    assert_eq!(t.check_exports(["b", "a"]), Ok(()));
    let e = t.check_exports(["a", "b", "c"]).unwrap_err();
    assert_eq!(e, CoverageError::Undeclared { export: "c" });
    assert_eq!(
        e.to_string(),
        "export `c` has no call signature, so no other module's server can call it; declare \
         it with kmod_api::export! (Rust) or EXPORT_SYMBOL_SIG (C), see modules/ABI.md \
         \"Export signatures\""
    );
    assert_eq!(e.errno(), 8);
    let e = t.check_exports(["a"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "call signature for `b`, which the module does not export (no __ksymtab_b)"
    );
    assert_eq!(ExportTable::EMPTY.check_exports([]), Ok(()));
}

/// A minimal ELF64 relocatable file with the given sections (name, type, flags, contents).
fn elf(sections: &[(&str, u32, u64, &[u8])]) -> Vec<u8> {
    let mut shstrtab = vec![0u8];
    let mut names = Vec::new();
    for (name, ..) in sections.iter().chain([&(".shstrtab", 3, 0, &[][..])]) {
        names.push(shstrtab.len() as u32);
        shstrtab.extend_from_slice(name.as_bytes());
        shstrtab.push(0);
    }
    let mut file = vec![0u8; 64];
    let mut offsets = Vec::new();
    for (_, _, _, data) in sections {
        offsets.push(file.len() as u64);
        file.extend_from_slice(data);
    }
    let shstr_off = file.len() as u64;
    file.extend_from_slice(&shstrtab);
    while !file.len().is_multiple_of(8) {
        file.push(0);
    }
    let shoff = file.len() as u64;
    file.extend_from_slice(&[0u8; 64]); // SHN_UNDEF
    let mut all: Vec<(u32, u32, u64, u64, u64)> = sections
        .iter()
        .zip(&offsets)
        .zip(&names)
        .map(|(((_, ty, flags, data), off), name)| (*name, *ty, *flags, *off, data.len() as u64))
        .collect();
    all.push((
        *names.last().unwrap(),
        3,
        0,
        shstr_off,
        shstrtab.len() as u64,
    ));
    for (name, ty, flags, off, size) in &all {
        let mut sh = [0u8; 64];
        sh[0..4].copy_from_slice(&name.to_le_bytes());
        sh[4..8].copy_from_slice(&ty.to_le_bytes());
        sh[8..16].copy_from_slice(&flags.to_le_bytes());
        sh[24..32].copy_from_slice(&off.to_le_bytes());
        sh[32..40].copy_from_slice(&size.to_le_bytes());
        sh[48..56].copy_from_slice(&1u64.to_le_bytes());
        file.extend_from_slice(&sh);
    }
    let h = &mut file[..64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // little-endian
    h[6] = 1; // EV_CURRENT
    h[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    h[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[40..48].copy_from_slice(&shoff.to_le_bytes());
    h[52..54].copy_from_slice(&64u16.to_le_bytes());
    h[58..60].copy_from_slice(&64u16.to_le_bytes());
    h[60..62].copy_from_slice(&(all.len() as u16 + 1).to_le_bytes());
    h[62..64].copy_from_slice(&(all.len() as u16).to_le_bytes());
    file
}

const PROGBITS: u32 = 1;
const NOBITS: u32 = 8;
const ALLOC: u64 = 2;

#[test]
fn the_section_is_found_by_name_and_must_not_be_loaded() {
    let records: &[u8] = b"f(u8) -> u8\0";
    let text: &[u8] = &[0xc3];
    let file = elf(&[
        (".text", PROGBITS, ALLOC | 4, text),
        (SECTION, PROGBITS, 0, records),
    ]);
    assert_eq!(find_section(&file), Ok(Some(records)));
    let table = ExportTable::from_module(&file).unwrap();
    assert_eq!(table.get(0).unwrap().to_string(), "f(u8) -> u8");
    // No section: an empty table.
    let file = elf(&[(".text", PROGBITS, ALLOC | 4, text)]);
    assert_eq!(find_section(&file), Ok(None));
    assert!(ExportTable::from_module(&file).unwrap().is_empty());
    let msg = |file: &[u8]| ExportTable::from_module(file).unwrap_err().to_string();
    assert_eq!(
        msg(&elf(&[(SECTION, PROGBITS, ALLOC, records)])),
        "section [1] .kmod_exportsig is SHF_ALLOC; it must not be loaded (ABI.md, \"Export signatures\")"
    );
    assert_eq!(
        msg(&elf(&[(SECTION, NOBITS, 0, records)])),
        "section [1] .kmod_exportsig has type 8, not SHT_PROGBITS"
    );
    assert_eq!(
        msg(&elf(&[
            (SECTION, PROGBITS, 0, records),
            (SECTION, PROGBITS, 0, records)
        ])),
        "sections [1] and [2] are both named .kmod_exportsig"
    );
    assert_eq!(
        msg(&elf(&[(SECTION, PROGBITS, 0, b"f(u8) -> u8")])),
        "signature record at offset 0x0 is not NUL-terminated"
    );
    let big = vec![0u8; MAX_SECTION + 1];
    assert_eq!(
        msg(&elf(&[(SECTION, PROGBITS, 0, &big)])),
        "section .kmod_exportsig of 65537 bytes is larger than 65536"
    );
    // Contents past the end of the file.
    let mut file = elf(&[(SECTION, PROGBITS, 0, records)]);
    let shoff = u64::from_le_bytes(file[40..48].try_into().unwrap()) as usize;
    file[shoff + 64 + 24..shoff + 64 + 32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        msg(&file),
        "section [1] .kmod_exportsig extends past the end of the file"
    );
    assert!(msg(b"not an ELF file").starts_with("not a readable ELF64 file: "));
    let mut be = elf(&[]);
    be[5] = 2;
    assert!(ExportTable::from_module(&be).is_err());
}

// ---- descriptors --------------------------------------------------------------------

#[test]
fn descriptor_bytes_are_exact() {
    let e = parse("kvstore_get(in[@1], usize, out[@3], usize, outlen[@2]) -> i32");
    let d = Descriptor::new(7, &e);
    let b = d.to_bytes();
    assert_eq!(b[..8], e.fingerprint().to_le_bytes());
    assert_eq!(b[8..16], [7, 0, 0, 0, 5, 7, 0, 0]);
    assert_eq!(b[16..24], [16, 1, 0, 0, 1, 0, 0, 0]);
    assert_eq!(b[24..32], [4, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(b[32..40], [17, 3, 0, 0, 1, 0, 0, 0]);
    assert_eq!(b[40..48], [4, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(b[48..56], [24, 2, 0, 0, 0, 0, 0, 0]);
    assert_eq!(b[56..64], [0; 8]);
    assert_eq!(Descriptor::from_bytes(&b), Ok(d));
    let fixed = Descriptor::new(0, &parse("f(out[24]) -> void")).to_bytes();
    assert_eq!(fixed[16..24], [17, 0xff, 0, 0, 24, 0, 0, 0]);
}

#[test]
fn bad_descriptors_are_refused() {
    let good = Descriptor::new(0, &parse("f(in[@1], u64) -> u32")).to_bytes();
    let with = |at: usize, v: u8| {
        let mut b = good;
        b[at] = v;
        Descriptor::from_bytes(&b).map_err(|e| e.to_string())
    };
    assert_eq!(
        with(12, 7),
        Err("descriptor byte 12 holds 0x07, which is not valid there".into())
    );
    assert_eq!(
        with(13, 9),
        Err("descriptor byte 13 holds 0x09, which is not valid there".into())
    );
    assert_eq!(
        with(14, 1),
        Err("descriptor byte 14 holds 0x01, which is not valid there".into())
    );
    assert_eq!(
        with(16, 99),
        Err("descriptor byte 16 holds 0x63, which is not valid there".into())
    );
    assert_eq!(
        with(18, 1),
        Err("descriptor byte 18 holds 0x01, which is not valid there".into())
    );
    assert_eq!(
        with(25, 1),
        Err("descriptor byte 24 holds 0x04, which is not valid there".into())
    );
    assert_eq!(
        with(32, 1),
        Err("descriptor byte 32 holds 0x01, which is not valid there".into())
    );
    assert_eq!(
        with(17, 0),
        Err("argument 0: its length is argument 0, which is not an integer".into())
    );
    assert_eq!(
        with(20, 0),
        Err("argument 0: size 0 is not 1 to 65536 bytes".into())
    );
    assert_eq!(
        Descriptor::from_bytes(&good[..63]).map_err(|e| e.to_string()),
        Err("descriptor of 63 bytes, expected 64".into())
    );
}

#[test]
fn failure_returns_follow_the_return_type() {
    let d = |s: &str| Descriptor::new(0, &parse(s));
    assert_eq!(d("f() -> i32").failure_return(32), (-32i64) as u64);
    assert_eq!(d("f() -> i8").failure_return(35), (-35i64) as u64);
    assert_eq!(d("f() -> i8").failure_return(200), u64::MAX);
    assert_eq!(d("f() -> i64").failure_return(71), (-71i64) as u64);
    assert_eq!(d("f() -> u32").failure_return(32), 0);
    assert_eq!(d("f() -> void").failure_return(32), 0);
}

// ---- calls --------------------------------------------------------------------------

/// A flat model of one address space: `base..base + bytes.len()`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Memory {
    base: u64,
    bytes: Vec<u8>,
}

impl Memory {
    fn range(&self, addr: u64, len: u64) -> std::ops::Range<usize> {
        let at = (addr - self.base) as usize;
        at..at + len as usize
    }
    fn read(&self, addr: u64, len: u64) -> &[u8] {
        &self.bytes[self.range(addr, len)]
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        let r = self.range(addr, data.len() as u64);
        self.bytes[r].copy_from_slice(data);
    }
}

/// Where a model function finds its pointed-to memory: the caller's (direct call) or the
/// server's copies.
trait Pointed {
    fn read(&self, addr: u64, len: u64) -> Vec<u8>;
    fn write(&mut self, addr: u64, data: &[u8]);
}

impl Pointed for Memory {
    fn read(&self, addr: u64, len: u64) -> Vec<u8> {
        Memory::read(self, addr, len).to_vec()
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        Memory::write(self, addr, data)
    }
}

/// A function of the given signature that depends on every input and writes every output:
/// it hashes integers and `in`/`inout` contents (and which pointers are null), fills `out`
/// buffers, transforms `inout` ones, reports a filled length through each out-length (all
/// of the buffer when the out-length is null: the protocol's contract; sometimes nothing at
/// all, like an error path) and returns the hash.
fn model(sig: &Signature, regs: &[u64; 6], mem: &mut dyn Pointed) -> u64 {
    let mut h: u64 = 0x1234_5678;
    let mix = |h: &mut u64, v: u64| *h = (*h ^ v).wrapping_mul(0x100_0000_01b3).rotate_left(7);
    let args = sig.args();
    let len_of = |i: usize| -> u64 {
        match args[i] {
            Arg::Buffer {
                extent: Extent::Fixed { bytes },
                ..
            } => u64::from(bytes),
            Arg::Buffer {
                extent: Extent::Count { arg, elem },
                ..
            } => {
                let Arg::Int(t) = args[arg as usize] else {
                    unreachable!()
                };
                t.canonical(regs[arg as usize]) * u64::from(elem)
            }
            _ => unreachable!(),
        }
    };
    for (i, a) in args.iter().enumerate() {
        match *a {
            Arg::Int(t) => mix(&mut h, t.canonical(regs[i])),
            Arg::Buffer { dir, .. } => {
                if regs[i] == 0 {
                    mix(&mut h, 0xdead);
                } else if dir.reads() {
                    for b in mem.read(regs[i], len_of(i)) {
                        mix(&mut h, u64::from(b));
                    }
                }
            }
            Arg::OutLen { .. } => mix(&mut h, (regs[i] == 0) as u64),
        }
    }
    for (i, a) in args.iter().enumerate() {
        let Arg::Buffer { dir, extent } = *a else {
            continue;
        };
        if regs[i] == 0 || !dir.writes() {
            continue;
        }
        let len = len_of(i);
        let mut data = if dir.reads() {
            mem.read(regs[i], len)
        } else {
            vec![0; len as usize]
        };
        let unit = u64::from(extent.unit());
        let outlen = sig.outlen_of(i).filter(|&j| regs[j] != 0);
        if outlen.is_some() && dir == Dir::Out && h.is_multiple_of(5) {
            // An error path: neither the buffer nor the length is stored.
            continue;
        }
        let filled = match outlen {
            Some(_) if dir == Dir::Out => (h % (len / unit + 1)) * unit,
            _ => len,
        };
        for (k, b) in data.iter_mut().enumerate().take(filled as usize) {
            *b = b.wrapping_add((h >> (k % 8 * 8)) as u8 ^ k as u8);
        }
        mem.write(regs[i], &data[..filled as usize]);
        if let Some(j) = outlen {
            mem.write(regs[j], &(filled / unit).to_le_bytes());
        }
    }
    h
}

/// The server's memory: the copies of the buffers and the out-length cells, as the runtime
/// allocates them.
struct ServerMemory {
    base: u64,
    bufs: Vec<Vec<u8>>,
    cells: [u64; 6],
}

impl Pointed for ServerMemory {
    fn read(&self, addr: u64, len: u64) -> Vec<u8> {
        let k = ((addr - self.base) >> 24) as usize;
        let off = ((addr - self.base) & 0xff_ffff) as usize;
        self.bufs[k][off..off + len as usize].to_vec()
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        if addr < self.base {
            let i = ((addr - (self.base - 0x1000)) / 8) as usize;
            self.cells[i] = u64::from_le_bytes(data.try_into().unwrap());
            return;
        }
        let k = ((addr - self.base) >> 24) as usize;
        let off = ((addr - self.base) & 0xff_ffff) as usize;
        self.bufs[k][off..off + data.len()].copy_from_slice(data);
    }
}

/// What the simulated kernel delivers for a request.
fn deliver(req: &Request, op: u64) -> (Received, Vec<u8>) {
    let mut r = Received {
        sender: 1,
        badge: 5,
        op,
        words: req.words,
        len: HEADER_LEN as u64,
        lease_count: req.leases().len() as u64,
        ..Received::default()
    };
    for (i, l) in req.leases().iter().enumerate() {
        r.lease_len[i] = l.len;
        r.lease_flags[i] = l.flags;
    }
    (r, req.header.to_vec())
}

/// The whole microkernel path: stub, simulated kernel, server runtime (as in the crate
/// docs), stub again. Returns `rax` as the caller sees it.
fn call_through_ipc(
    desc: &Descriptor,
    regs: &[u64; 6],
    caller: &mut Memory,
) -> Result<u64, MarshalError> {
    let request = desc.marshal(regs, &Limits::DEFAULT)?;
    let (received, payload) = deliver(&request, 65);
    // Server.
    let header = RequestHeader::decode(&payload).unwrap();
    assert_eq!(header.export, desc.export);
    let accepted = desc.accept(&header, &received, &Limits::DEFAULT).unwrap();
    let mut server = ServerMemory {
        base: 0x4000_0000,
        bufs: Vec::new(),
        cells: [0; 6],
    };
    let mut local = [0u64; 6];
    for (i, slot) in accepted.slots().iter().enumerate() {
        match *slot {
            Slot::Buffer(b) => {
                let lease = request.leases()[b.lease as usize];
                let mut copy = vec![0u8; b.len as usize];
                if b.dir.reads() {
                    assert_ne!(lease.flags & LEASE_READ, 0);
                    copy.copy_from_slice(caller.read(lease.addr, lease.len));
                }
                local[i] = server.base + ((server.bufs.len() as u64) << 24);
                server.bufs.push(copy);
            }
            Slot::OutLen => {
                server.cells[i] = OUTLEN_UNSET;
                local[i] = server.base - 0x1000 + 8 * i as u64;
            }
            Slot::Scalar(_) | Slot::Null => {}
        }
    }
    let server_regs = accepted.registers(&local);
    let rax = model(&desc.sig, &server_regs, &mut server);
    let finished = accepted.finish(rax, &server.cells);
    for c in finished.copy_backs() {
        let lease = request.leases()[c.lease as usize];
        assert_ne!(lease.flags & LEASE_WRITE, 0);
        let k = ((local[c.arg as usize] - server.base) >> 24) as usize;
        caller.write(lease.addr, &server.bufs[k][..c.len as usize]);
    }
    // Stub.
    let done = request.complete(&finished.words).unwrap();
    for w in done.outlen_writes() {
        caller.write(w.addr, &w.value.to_le_bytes());
    }
    Ok(done.ret)
}

fn kvstore_get() -> Descriptor {
    Descriptor::new(
        1,
        &parse("kvstore_get(in[@1], usize, out[@3], usize, outlen[@2]) -> i32"),
    )
}

#[test]
fn a_kvstore_get_call_becomes_leases_and_words() {
    let d = kvstore_get();
    // key at 0x1000 (3 bytes), buffer at 0x2000 (440 bytes), len at 0x3000 (holds 77);
    // rcx (argument 5) is not an argument and is ignored.
    let regs = [0x1000, 3, 0x2000, 440, 0x3000, 0xdead];
    let req = d.marshal(&regs, &Limits::DEFAULT).unwrap();
    assert_eq!(req.words, [0, 3, 0, 440, 0, 0]);
    let header = RequestHeader::decode(&req.header).unwrap();
    assert_eq!(
        header,
        RequestHeader {
            fingerprint: d.fingerprint,
            export: 1,
            null_mask: 0
        }
    );
    assert_eq!(req.header[12..], [0, 1, 0, 0]);
    assert_eq!(
        req.leases(),
        [
            kmodlab_ipc::msg::Lease {
                addr: 0x1000,
                len: 3,
                flags: LEASE_READ
            },
            kmodlab_ipc::msg::Lease {
                addr: 0x2000,
                len: 440,
                flags: LEASE_WRITE
            },
        ]
    );
    let (received, payload) = deliver(&req, 65);
    let h = RequestHeader::decode(&payload).unwrap();
    let acc = d.accept(&h, &received, &Limits::DEFAULT).unwrap();
    assert_eq!(
        acc.slots(),
        [
            Slot::Buffer(BufferSlot {
                lease: 0,
                len: 3,
                dir: Dir::In
            }),
            Slot::Scalar(3),
            Slot::Buffer(BufferSlot {
                lease: 1,
                len: 440,
                dir: Dir::Out
            }),
            Slot::Scalar(440),
            Slot::OutLen,
        ]
    );
    let local = [0x10, 0, 0x20, 0, 0x30, 0];
    assert_eq!(acc.registers(&local), [0x10, 3, 0x20, 440, 0x30, 0]);
    // The function returned 0 with eax's upper half garbage, and stored 12 in *len.
    let fin = acc.finish(0xffff_ffff_0000_0000, &[0, 0, 0, 0, 12, 0]);
    assert_eq!(fin.words, [0, 12, 0, 0, 0, 0]);
    assert_eq!(
        fin.copy_backs(),
        [CopyBack {
            arg: 2,
            lease: 1,
            len: 12
        }]
    );
    let done = req.complete(&fin.words).unwrap();
    assert_eq!(done.ret, 0);
    assert_eq!(
        done.outlen_writes(),
        [OutLenWrite {
            addr: 0x3000,
            value: 12
        }]
    );
    // -ENOENT comes back sign-extended; the out-length the function did not store stays
    // unset: the caller's variable is not written and nothing is copied back.
    let fin = acc.finish((-2i32) as u32 as u64, &[0, 0, 0, 0, OUTLEN_UNSET, 0]);
    assert_eq!(fin.words, [(-2i64) as u64, OUTLEN_UNSET, 0, 0, 0, 0]);
    assert_eq!(
        fin.copy_backs(),
        [CopyBack {
            arg: 2,
            lease: 1,
            len: 0
        }]
    );
    let done = req.complete(&fin.words).unwrap();
    assert_eq!(done.ret, (-2i64) as u64);
    assert_eq!(done.outlen_writes(), []);
    // Storing 0 is storing: 0 bytes back, and *len = 0.
    let fin = acc.finish(0, &[0; 6]);
    assert_eq!(
        fin.copy_backs(),
        [CopyBack {
            arg: 2,
            lease: 1,
            len: 0
        }]
    );
    assert_eq!(
        req.complete(&fin.words).unwrap().outlen_writes(),
        [OutLenWrite {
            addr: 0x3000,
            value: 0
        }]
    );
    // A callee claiming more than the buffer holds gets the buffer, not more.
    let fin = acc.finish(0, &[0, 0, 0, 0, 1 << 40, 0]);
    assert_eq!(
        fin.copy_backs(),
        [CopyBack {
            arg: 2,
            lease: 1,
            len: 440
        }]
    );
}

#[test]
fn null_pointers_travel_as_null_and_get_no_lease() {
    let d = kvstore_get();
    let regs = [0x1000, 3, 0x2000, 440, 0, 0];
    let req = d.marshal(&regs, &Limits::DEFAULT).unwrap();
    assert_eq!(req.header[12], 0b1_0000);
    let (rcv, payload) = deliver(&req, 65);
    let acc = d
        .accept(
            &RequestHeader::decode(&payload).unwrap(),
            &rcv,
            &Limits::DEFAULT,
        )
        .unwrap();
    assert_eq!(acc.slots()[4], Slot::Null);
    assert_eq!(acc.registers(&[1, 0, 2, 0, 3, 0])[4], 0);
    // Without an out-length the whole buffer goes back.
    let fin = acc.finish(0, &[0; 6]);
    assert_eq!(
        fin.copy_backs(),
        [CopyBack {
            arg: 2,
            lease: 1,
            len: 440
        }]
    );
    assert_eq!(fin.words, [0; 6]);
    // A null buffer with a non-zero count goes to the function as (null, count): the
    // function decides (cstats returns -EFAULT), as in the monolithic kernel.
    let regs = [0, 3, 0x2000, 440, 0x3000, 0];
    let req = d.marshal(&regs, &Limits::DEFAULT).unwrap();
    assert_eq!(req.leases().len(), 1);
    let (rcv, payload) = deliver(&req, 65);
    let acc = d
        .accept(
            &RequestHeader::decode(&payload).unwrap(),
            &rcv,
            &Limits::DEFAULT,
        )
        .unwrap();
    assert_eq!(acc.slots()[0], Slot::Null);
    assert_eq!(
        acc.slots()[2],
        Slot::Buffer(BufferSlot {
            lease: 0,
            len: 440,
            dir: Dir::Out
        })
    );
    assert_eq!(acc.registers(&[9, 0, 8, 0, 7, 0]), [0, 3, 8, 440, 7, 0]);
}

#[test]
fn narrow_integers_are_made_canonical_by_the_stub_and_checked_by_the_server() {
    let d = Descriptor::new(0, &parse("f(u8, i8, u16, i32, u32, i64) -> i16"));
    let regs = [
        0xaaaa_bb01,
        0x1234_56ff,
        0xffff_0002,
        0x0000_0001_8000_0000,
        u64::MAX,
        5,
    ];
    let req = d.marshal(&regs, &Limits::DEFAULT).unwrap();
    assert_eq!(
        req.words,
        [1, u64::MAX, 2, 0xffff_ffff_8000_0000, 0xffff_ffff, 5]
    );
    let (mut rcv, payload) = deliver(&req, 65);
    let h = RequestHeader::decode(&payload).unwrap();
    assert!(d.accept(&h, &rcv, &Limits::DEFAULT).is_ok());
    rcv.words[0] = 0x101;
    assert_eq!(
        d.accept(&h, &rcv, &Limits::DEFAULT)
            .unwrap_err()
            .to_string(),
        "argument 0: word 0x101 is not a canonical u8"
    );
    rcv.words[0] = 1;
    rcv.words[3] = 0x8000_0000;
    assert_eq!(
        d.accept(&h, &rcv, &Limits::DEFAULT)
            .unwrap_err()
            .to_string(),
        "argument 3: word 0x80000000 is not a canonical i32"
    );
    // The return value: canonical on both sides.
    let acc = d
        .accept(&h, &deliver(&req, 65).0, &Limits::DEFAULT)
        .unwrap();
    assert_eq!(acc.finish(0x1_8000, &[0; 6]).words[0], (-32768i64) as u64);
    assert_eq!(
        req.complete(&[0x8000, 0, 0, 0, 0, 0])
            .unwrap_err()
            .to_string(),
        "return word 0x8000 is not a canonical i16"
    );
    assert_eq!(
        req.complete(&[0, 0, 0, 0, 0, 1]).unwrap_err().to_string(),
        "reply word 5 is 0x1, expected 0"
    );
}

#[test]
fn the_server_refuses_requests_that_do_not_match_its_signature() {
    let d = kvstore_get();
    let regs = [0x1000, 3, 0x2000, 440, 0x3000, 0];
    let req = d.marshal(&regs, &Limits::DEFAULT).unwrap();
    let (rcv, payload) = deliver(&req, 65);
    let h = RequestHeader::decode(&payload).unwrap();
    let refuse = |h: &RequestHeader, r: &Received| {
        let e = d.accept(h, r, &Limits::DEFAULT).unwrap_err();
        (e.errno(), e.to_string())
    };
    // A stub built from another signature: another fingerprint.
    let other = Descriptor::new(
        1,
        &parse("kvstore_get(in[@1], u64, out[@3], u64, outlen[@2]) -> i64"),
    );
    let stale = other.marshal(&regs, &Limits::DEFAULT).unwrap();
    let (r2, p2) = deliver(&stale, 65);
    let (errno, msg) = refuse(&RequestHeader::decode(&p2).unwrap(), &r2);
    assert_eq!(errno, 71);
    assert_eq!(
        msg,
        format!(
            "signature fingerprint {:#018x} is not the export's {:#018x}: the caller's stub was built for another signature",
            other.fingerprint, d.fingerprint
        )
    );
    let mut wrong = h;
    wrong.export = 2;
    assert_eq!(
        refuse(&wrong, &rcv).1,
        "call for export 2 checked against export 1"
    );
    let mut masked = h;
    masked.null_mask = 0b10;
    assert_eq!(
        refuse(&masked, &rcv).1,
        "null mask 0x02 marks arguments that are not pointers"
    );
    let mut masked = h;
    masked.null_mask = 0b1;
    assert_eq!(
        refuse(&masked, &rcv).1,
        "argument 2: lease 0 has flags 0x1, expected 0x2"
    );
    let mut masked = h;
    masked.null_mask = 0b100;
    assert_eq!(
        refuse(&masked, &rcv).1,
        "2 leases, but the signature and null mask ask for 1"
    );
    let mut r = rcv;
    r.words[4] = 7;
    assert_eq!(refuse(&h, &r).1, "word 4 is 0x7, expected 0");
    let mut r = rcv;
    r.lease_flags[1] = LEASE_READ | LEASE_WRITE;
    assert_eq!(
        refuse(&h, &r).1,
        "argument 2: lease 1 has flags 0x3, expected 0x2"
    );
    let mut r = rcv;
    r.lease_len[0] = 4;
    assert_eq!(
        refuse(&h, &r).1,
        "argument 0: lease 0 is 4 bytes, but the arguments say 3"
    );
    let mut r = rcv;
    r.lease_count = 1;
    assert_eq!(
        refuse(&h, &r).1,
        "1 leases, but the signature and null mask ask for 2"
    );
    let mut r = rcv;
    r.lease_count = 3;
    assert_eq!(
        refuse(&h, &r).1,
        "3 leases, but the signature and null mask ask for 2"
    );
    let mut r = rcv;
    r.words[5] = 1;
    assert_eq!(refuse(&h, &r).1, "word 5 is 0x1, expected 0");
    let mut r = rcv;
    r.words[0] = 0x1000;
    assert_eq!(refuse(&h, &r).1, "word 0 is 0x1000, expected 0");
    let mut r = rcv;
    r.words[3] = 2 << 20;
    let (errno, msg) = refuse(&h, &r);
    assert_eq!(
        (errno, msg.as_str()),
        (
            7,
            "argument 2: buffer of 2097152 bytes exceeds the call limit of 1048576"
        )
    );
    assert_eq!(
        RequestHeader::decode(&payload[..15])
            .unwrap_err()
            .to_string(),
        "request payload of 15 bytes, expected a 16-byte call header"
    );
    let mut p = payload.clone();
    p[13] = 2;
    assert_eq!(
        RequestHeader::decode(&p).unwrap_err().to_string(),
        "call header version 2 (reserved 0x0000); this server speaks 1"
    );
    let mut p = payload.clone();
    p[15] = 1;
    assert_eq!(RequestHeader::decode(&p).unwrap_err().errno(), 71);
}

#[test]
fn the_stub_refuses_what_the_call_cannot_carry() {
    let d = Descriptor::new(0, &parse("f(in[@1*8], i32, out[@1], inout[16]) -> i32"));
    let marshal = |regs: [u64; 6]| {
        d.marshal(&regs, &Limits::DEFAULT)
            .map_err(|e| (e.errno(), e.to_string()))
    };
    assert!(marshal([0x1000, 2, 0x2000, 0x3000, 0, 0]).is_ok());
    assert_eq!(
        marshal([0x1000, (-1i32) as u32 as u64, 0x2000, 0x3000, 0, 0]),
        Err((22, "argument 0: its count (argument 1) is negative".into()))
    );
    // A negative count with null buffers is the function's business.
    assert!(marshal([0, (-1i32) as u32 as u64, 0, 0x3000, 0, 0]).is_ok());
    assert_eq!(
        marshal([0x1000, 200_000, 0x2000_0000, 0x3000, 0, 0]),
        Err((
            7,
            "argument 0: buffer of 1600000 bytes exceeds the call limit of 1048576".into()
        ))
    );
    let small = Limits {
        max_buffer: 1 << 20,
        max_total: 20,
    };
    assert_eq!(
        d.marshal(&[0x1000, 2, 0x2000, 0x3000, 0, 0], &small)
            .unwrap_err()
            .to_string(),
        "buffers of 34 bytes in all exceed the call limit of 20"
    );
    assert_eq!(
        marshal([u64::MAX - 4, 2, 0x2000, 0x3000, 0, 0]),
        Err((
            14,
            "argument 0: buffer at 0xfffffffffffffffb wraps around the address space".into()
        ))
    );
    // The out buffer inside the in buffer: one memory in the monolithic kernel, two copies
    // here; refused.
    assert_eq!(
        marshal([0x1000, 2, 0x1008, 0x3000, 0, 0]),
        Err((
            22,
            "arguments 0 and 2: buffers overlap and one is written".into()
        ))
    );
    assert_eq!(
        marshal([0x1000, 2, 0x2000, 0x1ff8, 0, 0]),
        Err((
            22,
            "arguments 2 and 3: buffers overlap and one is written".into()
        ))
    );
    // Two read-only buffers may overlap; adjacent ones do not.
    let two_in = Descriptor::new(0, &parse("g(in[8], in[8]) -> void"));
    assert!(
        two_in
            .marshal(&[0x1000, 0x1004, 0, 0, 0, 0], &Limits::DEFAULT)
            .is_ok()
    );
    assert!(marshal([0x1000, 2, 0x1010, 0x1012, 0, 0]).is_ok());
}

#[test]
fn cstats_summarize_round_trips_through_the_simulated_kernel() {
    let d = Descriptor::new(0, &parse("cstats_summarize(in[@1*4], u64, out[24]) -> i32"));
    let mut direct = Memory {
        base: 0x1000,
        bytes: (0..4096u32).map(|i| (i * 7) as u8).collect(),
    };
    let mut ipc = direct.clone();
    let regs = [0x1100, 10, 0x1800, 0, 0, 0];
    let want = model(&d.sig, &regs, &mut direct);
    let got = call_through_ipc(&d, &regs, &mut ipc).unwrap();
    assert_eq!(got, d.sig.ret().canonical(want));
    assert_eq!(ipc, direct);
    assert_ne!(
        direct.read(0x1800, 24),
        Memory {
            base: 0x1000,
            bytes: (0..4096u32).map(|i| (i * 7) as u8).collect()
        }
        .read(0x1800, 24)
    );
}

// ---- properties ---------------------------------------------------------------------

/// A valid signature from raw choices: kinds per position, then references fixed up
/// (counts point at integer arguments, out-lengths at writable buffers without one).
fn build_signature(raw: &[(u8, u8, u8, u16)], ret: u8) -> Signature {
    let n = raw.len().min(6);
    let mut args: Vec<Arg> = Vec::new();
    for &(kind, sub, _, _) in &raw[..n] {
        args.push(match kind % 4 {
            0 | 3
                if args
                    .iter()
                    .filter(|a| matches!(a, Arg::Buffer { .. }))
                    .count()
                    < 4
                    && kind % 4 == 0 =>
            {
                let dir = [Dir::In, Dir::Out, Dir::InOut][usize::from(sub % 3)];
                Arg::Buffer {
                    dir,
                    extent: Extent::Fixed { bytes: 1 },
                }
            }
            1 => Arg::OutLen { buffer: 0 },
            _ => Arg::Int(Int::ALL[usize::from(sub % 8)]),
        });
    }
    let ints: Vec<u8> = (0..n)
        .filter(|&i| matches!(args[i], Arg::Int(_)))
        .map(|i| i as u8)
        .collect();
    for i in 0..n {
        let (_, _, pick, size) = raw[i];
        if let Arg::Buffer { dir, .. } = args[i] {
            let extent = if !ints.is_empty() && pick % 3 != 0 {
                Extent::Count {
                    arg: ints[usize::from(pick) % ints.len()],
                    elem: u32::from(size % 16) + 1,
                }
            } else {
                Extent::Fixed {
                    bytes: u32::from(size % 64) + 1,
                }
            };
            args[i] = Arg::Buffer { dir, extent };
        }
    }
    let mut taken = Vec::new();
    for i in 0..n {
        if let Arg::OutLen { .. } = args[i] {
            let free: Vec<u8> = (0..n)
                .filter(|&j| {
                    matches!(args[j], Arg::Buffer { dir, .. } if dir.writes())
                        && !taken.contains(&j)
                })
                .map(|j| j as u8)
                .collect();
            if free.is_empty() {
                args[i] = Arg::Int(Int::U64);
            } else {
                let b = free[usize::from(raw[i].2) % free.len()];
                taken.push(usize::from(b));
                args[i] = Arg::OutLen { buffer: b };
            }
        }
    }
    let ret = Ret::from_code(ret % 9).unwrap();
    Signature::new(&args, ret).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn signature() -> impl Strategy<Value = Signature> {
    (
        proptest::collection::vec(any::<(u8, u8, u8, u16)>(), 0..=6),
        any::<u8>(),
    )
        .prop_map(|(raw, ret)| build_signature(&raw, ret))
}

/// Registers for `sig` in a caller memory of `size` bytes at `base`: disjoint buffers,
/// small counts (with garbage above narrow types' widths), some null pointers.
fn registers(sig: &Signature, seed: &[u64; 12], base: u64) -> [u64; 6] {
    let args = sig.args();
    let mut regs = [0u64; 6];
    for (i, a) in args.iter().enumerate() {
        if let Arg::Int(t) = a {
            let counted = args.iter().any(|b| matches!(b, Arg::Buffer { extent: Extent::Count { arg, .. }, .. } if usize::from(*arg) == i));
            regs[i] = if counted {
                let small = seed[i] % 24;
                if t.bits() < 64 {
                    small | (seed[i + 6] << t.bits())
                } else {
                    small
                }
            } else {
                seed[i]
            };
        }
    }
    let mut next = base;
    for (i, a) in args.iter().enumerate() {
        let len = match *a {
            Arg::Int(_) => continue,
            Arg::OutLen { .. } => 8,
            Arg::Buffer {
                extent: Extent::Fixed { bytes },
                ..
            } => u64::from(bytes),
            Arg::Buffer {
                extent: Extent::Count { arg, elem },
                ..
            } => {
                let Arg::Int(t) = args[usize::from(arg)] else {
                    unreachable!()
                };
                t.as_count(t.canonical(regs[usize::from(arg)])).unwrap_or(0) * u64::from(elem)
            }
        };
        if seed[i + 6].is_multiple_of(8) {
            regs[i] = 0;
        } else {
            regs[i] = next;
            next += len.div_ceil(8) * 8 + 8 * (seed[i] % 3);
        }
    }
    regs
}

fn received() -> impl Strategy<Value = Received> {
    (
        any::<[u64; MSG_WORDS]>(),
        0u64..=4,
        any::<[u64; 4]>(),
        any::<[u8; 4]>(),
        any::<bool>(),
    )
        .prop_map(|(words, lease_count, lens, flags, small)| Received {
            sender: 1,
            badge: 0,
            op: 65,
            words: if small { words.map(|w| w % 64) } else { words },
            len: 16,
            lease_count,
            lease_len: if small { lens.map(|l| l % 128) } else { lens },
            lease_flags: flags.map(|f| u64::from(f % 4)),
            notifications: 0,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = Export::parse(&bytes);
        if let Ok(t) = ExportTable::parse(&bytes) {
            for e in t.iter() {
                prop_assert!(t.find(e.name).is_some());
            }
        }
        let _ = find_section(&bytes);
        let _ = ExportTable::from_module(&bytes);
        let _ = RequestHeader::decode(&bytes);
        let _ = Descriptor::from_bytes(&bytes);
    }

    #[test]
    fn parsing_token_soup_never_panics(tokens in proptest::collection::vec(
        prop::sample::select(vec!["f", "(", ")", ",", "->", " ", "u8", "i64", "usize", "void", "in", "out",
            "inout", "outlen", "[", "]", "@", "*", "0", "1", "5", "7", "24", "65536", "99999", "\0"]), 0..40)) {
        let text: String = tokens.concat();
        let _ = Export::parse(text.as_bytes());
        let _ = ExportTable::parse(text.as_bytes());
    }

    #[test]
    fn canonical_text_and_descriptors_round_trip(sig in signature(), index in any::<u32>()) {
        let e = Export { name: "f_1", sig };
        let text = e.to_string();
        prop_assert_eq!(Export::parse(text.as_bytes()), Ok(e));
        let d = Descriptor::new(index, &e);
        prop_assert_eq!(Descriptor::from_bytes(&d.to_bytes()), Ok(d));
        let mut section = text.into_bytes();
        section.push(0);
        let t = ExportTable::parse(&section).unwrap();
        prop_assert_eq!(t.get(0), Some(e));
    }

    #[test]
    fn decoding_any_descriptor_never_panics_and_valid_ones_round_trip(bytes in any::<[u8; 64]>(), small in any::<[u8; 24]>()) {
        let _ = Descriptor::from_bytes(&bytes);
        // Mostly-valid bytes: small kinds and positions, zero padding.
        let mut b = [0u8; 64];
        b[12] = small[0] % 7;
        b[13] = small[1] % 10;
        for i in 0..6 {
            let at = 16 + 8 * i;
            b[at] = [1, 4, 7, 16, 17, 18, 24, 0][usize::from(small[2 + i] % 8)];
            b[at + 1] = if small[8 + i] % 5 == 4 { 0xff } else { small[8 + i] % 6 };
            b[at + 4] = small[14 + i] % 3;
        }
        if let Ok(d) = Descriptor::from_bytes(&b) {
            prop_assert_eq!(d.to_bytes(), b);
        }
    }

    #[test]
    fn marshalling_accepting_and_completing_any_words_never_panic(
        sig in signature(),
        regs in any::<[u64; 6]>(),
        rcv in received(),
        header in (any::<bool>(), any::<u8>()),
        reply in any::<[u64; 6]>(),
        rax in any::<u64>(),
        cells in any::<[u64; 6]>(),
    ) {
        let d = Descriptor::new(3, &Export { name: "f", sig });
        let limits = Limits { max_buffer: 100, max_total: 200 };
        if let Ok(req) = d.marshal(&regs, &limits) {
            let _ = req.complete(&reply);
            prop_assert!(req.leases().len() <= MAX_LEASES);
        }
        let h = RequestHeader { fingerprint: if header.0 { d.fingerprint } else { 1 }, export: 3, null_mask: header.1 };
        if let Ok(acc) = d.accept(&h, &rcv, &limits) {
            // Whatever was accepted is within the limits and matches the leases.
            let mut total = 0;
            for s in acc.slots() {
                if let Slot::Buffer(b) = s {
                    prop_assert!(b.len <= 100);
                    prop_assert_eq!(rcv.lease_len[usize::from(b.lease)], b.len);
                    total += b.len;
                }
            }
            prop_assert!(total <= 200);
            let fin = acc.finish(rax, &cells);
            for c in fin.copy_backs() {
                prop_assert!(c.len <= rcv.lease_len[usize::from(c.lease)]);
            }
        }
    }

    /// Marshal, deliver, accept, run, finish, complete: the caller's memory and return
    /// value end up exactly as a direct call of the same function leaves them.
    #[test]
    fn a_call_through_ipc_equals_the_direct_call(
        sig in signature(),
        seed in any::<[u64; 12]>(),
        fill in any::<u8>(),
    ) {
        let desc = Descriptor::new(0, &Export { name: "f", sig });
        let base = 0x10_0000;
        let regs = registers(&sig, &seed, base);
        let start = Memory {
            base,
            bytes: (0..16384u32).map(|i| (i as u8).wrapping_mul(fill | 1)).collect(),
        };
        let mut direct = start.clone();
        let want = model(&sig, &regs, &mut direct);
        let mut ipc = start.clone();
        match call_through_ipc(&desc, &regs, &mut ipc) {
            Ok(rax) => {
                prop_assert_eq!(rax, sig.ret().canonical(want));
                prop_assert!(ipc == direct, "memory differs");
            }
            Err(e) => {
                // Only a negative count of a non-null buffer: the direct call would have
                // read a huge length.
                prop_assert!(matches!(e, MarshalError::NegativeCount { .. }), "{}", e);
            }
        }
    }
}
