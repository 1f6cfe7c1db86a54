//! `kmod_api::kernel_api_table!` — what the guest kernel uses to build its export table —
//! compiles against a complete set of implementations and lists every symbol in order.

#![allow(unused_variables)]

mod kapi {
    use core::ffi::c_void;

    pub extern "C" fn kmod_print(msg: *const u8, len: usize) {}
    pub extern "C" fn kmod_alloc(size: usize, align: usize) -> *mut u8 {
        core::ptr::null_mut()
    }
    pub extern "C" fn kmod_free(ptr: *mut u8, size: usize, align: usize) {}
    pub extern "C" fn kmod_cycles() -> u64 {
        42
    }
    pub extern "C" fn kmod_request_module(name: *const u8, name_len: usize) -> i32 {
        0
    }
    pub extern "C" fn kmod_service_register(
        name: *const u8,
        name_len: usize,
        handler: kmod_api::abi::ServiceHandler,
        ctx: *mut c_void,
    ) -> i32 {
        0
    }
    pub extern "C" fn kmod_service_unregister(name: *const u8, name_len: usize) -> i32 {
        0
    }
    pub extern "C" fn kmod_service_lookup(
        name: *const u8,
        name_len: usize,
        handle: *mut u64,
    ) -> i32 {
        0
    }
    pub extern "C" fn kmod_service_call(
        handle: u64,
        op: u32,
        req: *const u8,
        req_len: usize,
        reply: *mut u8,
        reply_cap: usize,
        reply_len: *mut usize,
    ) -> i32 {
        0
    }

    pub static TABLE: [kmod_api::KernelApiEntry; kmod_api::KERNEL_API_SYMBOLS.len()] =
        kmod_api::kernel_api_table!();
}

#[test]
fn table_lists_every_symbol_with_its_implementation() {
    let names: Vec<&str> = kapi::TABLE.iter().map(|e| e.name).collect();
    assert_eq!(names, kmod_api::KERNEL_API_SYMBOLS);
    let cycles = kapi::TABLE
        .iter()
        .find(|e| e.name == "kmod_cycles")
        .unwrap();
    // Compare behaviour, not addresses: an optimised build may give one function several
    // addresses (or merge identical ones).
    // SAFETY: the table entry for kmod_cycles was built from `kapi::kmod_cycles`, whose
    // signature the macro checked to be `extern "C" fn() -> u64`.
    let call: extern "C" fn() -> u64 = unsafe { std::mem::transmute(cycles.addr) };
    assert_eq!(call(), 42);
    assert!(kapi::TABLE.iter().all(|e| !e.addr.is_null()));
}

#[test]
fn signatures_are_exposed_as_text() {
    let call = kmod_api::KERNEL_API
        .iter()
        .find(|f| f.name == "kmod_service_call")
        .unwrap();
    assert_eq!(call.args.len(), 7);
    assert_eq!(call.ret, "i32");
    assert!(call.doc.contains("IPC"));
    let print = &kmod_api::KERNEL_API[0];
    assert_eq!((print.name, print.ret), ("kmod_print", ""));
}
