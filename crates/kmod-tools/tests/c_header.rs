//! The C header's kernel API block must be exactly what kmod-api's list generates, so C and
//! Rust modules see the same functions with the same signatures. `KMODLAB_BLESS=1 cargo test
//! -p kmod-tools --test c_header` rewrites the block after a change to the list.

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
