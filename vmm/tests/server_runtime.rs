//! The microkernel's module server runtime (`sbin/kmodrt`) and module manager (`sbin/modmgr`)
//! as they are in the embedded module archive: the runtime parses the way the manager reads
//! it (every kernel API function present, in code; W^X segments below the heap; the call
//! stubs' entry), so a manager that starts will find what it needs.

use kmod_manager::runtime::{self, IMPORT_ENTRY};
use kmodlab_abi::initramfs::Archive;
use kmodlab_ipc::layout;
use kmodlab_ipc::task::Perm;

fn file(path: &str) -> &'static [u8] {
    Archive::new(kmodlab::artifacts::INITRAMFS)
        .expect("the embedded archive parses")
        .find(path)
        .unwrap_or_else(|| panic!("{path} is not in the archive"))
        .data
}

#[test]
fn the_server_runtime_has_the_whole_kernel_api_in_code_and_w_xor_x_segments() {
    let rt = runtime::parse(file("sbin/kmodrt"), kmod_api::KERNEL_API_SYMBOLS)
        .unwrap_or_else(|e| panic!("sbin/kmodrt: {e}"));
    assert_eq!(rt.api.len(), kmod_api::KERNEL_API_SYMBOLS.len());
    let names: Vec<&str> = rt.api.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, kmod_api::KERNEL_API_SYMBOLS);
    let code = rt
        .segments
        .iter()
        .find(|s| s.perm == Perm::ReadExecute)
        .expect("a code segment");
    let in_code = |a: u64| (code.vaddr..code.vaddr + code.pages * 4096).contains(&a);
    for (name, addr) in &rt.api {
        assert!(in_code(*addr), "{name} at {addr:#x}");
    }
    assert!(in_code(rt.import_entry), "{IMPORT_ENTRY}");
    assert!(in_code(rt.entry));
    let perms: Vec<Perm> = rt.segments.iter().map(|s| s.perm).collect();
    assert_eq!(perms, [Perm::ReadExecute, Perm::ReadOnly, Perm::ReadWrite]);
    assert!(rt.segments[0].vaddr == layout::RUNTIME_BASE);
    let end = rt
        .segments
        .last()
        .map(|s| s.vaddr + s.pages * 4096)
        .unwrap();
    assert!(end <= layout::HEAP_BASE, "the runtime ends at {end:#x}");
    // Small: every server has its own copy.
    assert!(rt.pages() <= 32, "{} pages", rt.pages());
}

#[test]
fn the_module_manager_is_a_program_at_the_program_base() {
    let mgr = file("sbin/modmgr");
    assert_eq!(&mgr[..4], b"\x7fELF");
    let entry = u64::from_le_bytes(mgr[0x18..0x20].try_into().unwrap());
    assert!(
        (layout::PROGRAM_BASE..layout::RUNTIME_BASE).contains(&entry),
        "{entry:#x}"
    );
    // The manager is not a runtime: it has no kernel API of its own.
    assert!(runtime::parse(mgr, kmod_api::KERNEL_API_SYMBOLS).is_err());
}
