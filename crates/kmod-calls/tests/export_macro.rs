//! `kmod_api::export!` as the reader sees it: the records it writes (compiled into this test
//! binary, read back from its own file) and the declarations it refuses to compile.

use std::path::PathBuf;
use std::process::Command;

use kmod_calls::{Export, ExportTable, find_section};

/// Exports shaped like the module set's, plus every annotation kind.
mod exports {
    #[repr(C)]
    pub struct Summary {
        pub count: u32,
        pub min: u32,
        pub max: u32,
        pub mean_x100: u64,
    }

    kmod_api::export! {
        /// A counted in-buffer of u32 elements, an integer, a one-struct out-buffer.
        pub unsafe extern "C" fn h8_summarize(#[in(n)] v: *const u32, n: usize, #[out] out: *mut Summary) -> i32 {
            let _ = (v, n, out);
            0
        }

        /// An in-buffer, an out-buffer with its out-length, narrow integers.
        pub unsafe extern "C" fn h8_get(
            #[in(klen)] key: *const u8,
            klen: u16,
            #[out(cap)] buf: *mut u8,
            cap: usize,
            #[outlen(buf)] len: *mut usize,
            flags: i8,
        ) -> i64 {
            let _ = (key, klen, buf, cap, len, flags);
            0
        }

        /// inout, counted in elements of 8 bytes, and a fixed inout.
        pub unsafe extern "C" fn h8_swap(#[inout(n)] a: *mut u64, n: u32, #[inout] b: *mut [u8; 3]) {
            let _ = (a, n, b);
        }

        /// Nothing at all.
        pub extern "C" fn h8_nothing() {}

        /// isize and u8.
        pub extern "C" fn h8_scalars(a: isize, b: u8) -> u8 {
            let _ = a;
            b
        }
    }
}

#[test]
fn export_writes_the_records_the_parser_reads() {
    // Keep the exports referenced so that no linker drops them.
    let _ = [
        exports::h8_summarize as *const (),
        exports::h8_get as *const (),
        exports::h8_swap as *const (),
        exports::h8_nothing as *const (),
        exports::h8_scalars as *const (),
    ];
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let section = find_section(&exe)
        .unwrap()
        .expect("the test binary has a .kmod_exportsig");
    let table = ExportTable::parse(section).unwrap();
    let mut written: Vec<String> = Vec::new();
    for record in section.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        written.push(String::from_utf8(record.to_vec()).unwrap());
    }
    written.sort();
    assert_eq!(
        written,
        [
            "h8_get(in[@1], u16, out[@3], usize, outlen[@2], i8) -> i64",
            "h8_nothing() -> void",
            "h8_scalars(isize, u8) -> u8",
            "h8_summarize(in[@1*4], usize, out[24]) -> i32",
            "h8_swap(inout[@1*8], u32, inout[3]) -> void",
        ]
    );
    let canonical = |name: &str| table.find(name).unwrap().1.to_string();
    assert_eq!(
        canonical("h8_get"),
        "h8_get(in[@1], u16, out[@3], u64, outlen[@2], i8) -> i64"
    );
    assert_eq!(canonical("h8_scalars"), "h8_scalars(i64, u8) -> u8");
    table
        .check_exports([
            "h8_get",
            "h8_nothing",
            "h8_scalars",
            "h8_summarize",
            "h8_swap",
        ])
        .unwrap();
    let _: Export<'_> = table.get(0).unwrap();
}

/// Compiles `source` (a library using `kmod_api::export!`) with the `rustc` running the
/// tests and returns its diagnostics, or `None` if it compiled.
fn compile(
    kmod_api: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
    source: &str,
) -> Option<String> {
    let file = dir.join(format!("{name}.rs"));
    std::fs::write(&file, format!("#![no_std]\n{source}\n")).unwrap();
    let out = Command::new(rustc())
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "lib",
            "--emit",
            "obj",
            "--crate-name",
            name,
        ])
        .arg("--extern")
        .arg(format!("kmod_api={}", kmod_api.display()))
        .arg("--out-dir")
        .arg(dir)
        .arg(&file)
        .output()
        .unwrap();
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned())
}

/// kmod-api as an rlib for the compile tests.
fn build_kmod_api(dir: &std::path::Path) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../modules/kmod-api/src/lib.rs");
    let status = Command::new(rustc())
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "rlib",
            "--crate-name",
            "kmod_api",
            "--cap-lints",
            "allow",
        ])
        .arg("--out-dir")
        .arg(dir)
        .arg(src)
        .status()
        .unwrap();
    assert!(status.success());
    dir.join("libkmod_api.rlib")
}

#[test]
fn bad_declarations_do_not_compile() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("export-macro");
    std::fs::create_dir_all(&dir).unwrap();
    let api = build_kmod_api(&dir);
    let f = |params: &str, ret: &str| {
        format!(
            "kmod_api::export! {{\n    pub unsafe extern \"C\" fn f({params}){ret} {{ loop {{}} }}\n}}"
        )
    };
    // The control: the same shape, correct, compiles.
    assert_eq!(
        compile(
            &api,
            &dir,
            "good",
            &f("#[in(len)] buf: *const u8, len: usize", " -> u32")
        ),
        None
    );
    let cases = [
        (
            "unannotated",
            f("buf: *const u8, len: usize", " -> u32"),
            "`*const u8` is not an integer type an export may take or return",
        ),
        (
            "unannotated_mut",
            f("buf: *mut u8, len: usize", ""),
            "a pointer argument needs an annotation: #[in(len)], #[out(len)], #[inout(len)]",
        ),
        (
            "unknown",
            f("#[input(len)] buf: *const u8, len: usize", ""),
            "export!: unknown annotation #[input]; pointer arguments take #[in(len)]",
        ),
        (
            "missing_len",
            f("#[in(size)] buf: *const u8, len: usize", ""),
            "export!: an annotation names an argument the function does not have",
        ),
        (
            "alias",
            "use core::ffi::c_int;\n".to_owned() + &f("x: c_int", ""),
            "export!: write integer types as u8..u64, i8..i64, usize or isize, not through an alias or a path",
        ),
        (
            "in_on_mut",
            f("#[in(len)] buf: *mut u8, len: usize", ""),
            "`#[in]` buffers are `*const T`, not `*mut u8`",
        ),
        (
            "out_on_const",
            f("#[out(len)] buf: *const u8, len: usize", ""),
            "`#[out]`/`#[inout]` buffers are `*mut T`, not `*const u8`",
        ),
        (
            "outlen_of_in",
            f(
                "#[in(n)] b: *const u8, n: usize, #[outlen(b)] l: *mut usize",
                "",
            ),
            "export!: #[outlen(buf)] must name an #[out] or #[inout] buffer",
        ),
        (
            "outlen_u32",
            f(
                "#[out(n)] b: *mut u8, n: usize, #[outlen(b)] l: *mut u32",
                "",
            ),
            "`#[outlen]` arguments are `*mut usize` or `*mut u64`, not `*mut u32`",
        ),
        (
            "outlen_unnamed",
            f(
                "#[out(n)] b: *mut u8, n: usize, #[outlen] l: *mut usize",
                "",
            ),
            "export!: #[outlen] names its buffer: #[outlen(buf)]",
        ),
        (
            "count_is_pointer",
            f("#[in(buf)] buf: *const u8", ""),
            "export!: a buffer's count must be an integer argument",
        ),
        (
            "five_buffers",
            f(
                "#[in] a: *const u8, #[in] b: *const u8, #[in] c: *const u8, #[in] d: *const u8, #[in] e: *const u8",
                "",
            ),
            "export!: at most 4 buffer arguments (one lease each)",
        ),
        (
            "seven_args",
            f("a: u8, b: u8, c: u8, d: u8, e: u8, g: u8, h: u8", ""),
            "export!: at most 6 arguments (the integer argument registers)",
        ),
        (
            "bool_arg",
            f("b: bool", ""),
            "`bool` is not an integer type an export may take or return",
        ),
        (
            "bool_ret",
            f("", " -> bool"),
            "`bool` is not an integer type an export may take or return",
        ),
        (
            "zero_sized",
            f("#[in] p: *const ()", ""),
            "export!: a buffer's element (or pointee) size must be 1 to 65536 bytes",
        ),
    ];
    for (name, source, message) in cases {
        let stderr = compile(&api, &dir, name, &source)
            .unwrap_or_else(|| panic!("{name} compiled:\n{source}"));
        assert!(
            stderr.contains(message),
            "{name}: wanted {message:?} in\n{stderr}"
        );
    }
}
