//! The C header's kernel API block must be exactly what kmod-api's list generates, so C and
//! Rust modules see the same functions with the same signatures, and its errno block exactly
//! what the errno table (`kmod_api::errno`) generates. `KMODLAB_BLESS=1 cargo test -p
//! kmod-tools --test c_header` rewrites the blocks after a change to the list or the table.

use std::path::PathBuf;

use kmod_tools::cheader;

fn header_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../modules/include/kmod.h")
}

#[test]
fn header_matches_kernel_api_list() {
    let path = header_path();
    let header = std::fs::read_to_string(&path).expect("read kmod.h");
    let expected = cheader::kernel_api_block().expect("every API type maps to C");
    if std::env::var_os("KMODLAB_BLESS").is_some() {
        let updated = cheader::replace_block(&header, &expected).expect("markers in kmod.h");
        std::fs::write(&path, updated).expect("write kmod.h");
        return;
    }
    let current = cheader::current_block(&header).expect("kmod.h has the BEGIN/END markers");
    assert_eq!(
        current, expected,
        "modules/include/kmod.h is out of date with kmod-api's for_each_kernel_api! list; \
         rerun with KMODLAB_BLESS=1"
    );
}

#[test]
fn header_declares_every_kernel_api_symbol_once() {
    let header = std::fs::read_to_string(header_path()).expect("read kmod.h");
    let block = cheader::current_block(&header).expect("markers");
    for name in kmod_api::KERNEL_API_SYMBOLS {
        let declared = block.matches(&format!(" {name}(")).count()
            + block.matches(&format!("*{name}(")).count();
        assert_eq!(declared, 1, "{name} declared {declared} times in kmod.h");
    }
    let prototypes = block.lines().filter(|l| l.ends_with(");")).count();
    assert_eq!(prototypes, kmod_api::KERNEL_API_SYMBOLS.len());
}

#[test]
fn header_errno_defines_are_the_errno_table() {
    let path = header_path();
    let header = std::fs::read_to_string(&path).expect("read kmod.h");
    let expected = cheader::errno_block();
    if std::env::var_os("KMODLAB_BLESS").is_some() {
        let updated = cheader::replace_errno_block(&header, &expected).expect("markers in kmod.h");
        std::fs::write(&path, updated).expect("write kmod.h");
        return;
    }
    let current =
        cheader::current_errno_block(&header).expect("kmod.h has the errno BEGIN/END markers");
    assert_eq!(
        current, expected,
        "modules/include/kmod.h's errno block is out of date with kmod_api::errno::TABLE; \
         rerun with KMODLAB_BLESS=1"
    );
    // Nothing outside the block defines an errno (`#define E<NAME> <number>`), so the table
    // is the header's only source of them.
    let outside = header.replace(current, "");
    for line in outside.lines() {
        let mut words = line.split_whitespace();
        let is_errno = words.next() == Some("#define")
            && words.next().is_some_and(|n| n.starts_with('E'))
            && words.next().is_some_and(|v| v.parse::<i64>().is_ok());
        assert!(
            !is_errno,
            "kmod.h defines an errno outside the generated block: {line}"
        );
    }
}
