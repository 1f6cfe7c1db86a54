//! Calls between modules. A module's import of another module's export resolves (in the
//! manager) to call stub `i` in this server's stub area: `mov r11d, i; jmp
//! kmodrt_import_entry` ([`kmodlab_ipc::server::stub_code`]). The entry saves the six
//! argument registers and calls [`import_call`], which turns the call into an IPC to the
//! exporting server as the export's declared signature says; that server's loop calls
//! [`serve_export`], which calls the real function and replies.

use core::arch::global_asm;

use guest_rt::errno;
use kmodlab_ipc::msg::Received;

use crate::Answer;

// The stub jumped here with the module's arguments untouched in rdi, rsi, rdx, rcx, r8, r9
// and the import's index in r11; the return address is the module's. Save the arguments in
// a frame, call import_call(index, &args) and return its rax to the module.
global_asm!(
    r#"
    .section .text.kmodrt_import_entry, "ax"
    .global kmodrt_import_entry
kmodrt_import_entry:
    push rbp
    mov rbp, rsp
    sub rsp, 48
    mov [rsp], rdi
    mov [rsp + 8], rsi
    mov [rsp + 16], rdx
    mov [rsp + 24], rcx
    mov [rsp + 32], r8
    mov [rsp + 40], r9
    mov edi, r11d
    mov rsi, rsp
    call {import_call}
    leave
    ret
    "#,
    import_call = sym import_call,
);

unsafe extern "C" {
    /// The entry every call stub jumps to (above).
    fn kmodrt_import_entry();
}

/// Nothing in the runtime calls the entry (stubs the manager writes jump to it); this keeps
/// it, under its name, in the linked program where the manager looks it up.
#[used]
static IMPORT_ENTRY: unsafe extern "C" fn() = kmodrt_import_entry;

/// A call through stub `index` with the module's six argument registers; returns what the
/// module's call returns (in `rax`).
extern "C" fn import_call(index: u64, args: &[u64; 6]) -> u64 {
    let _ = args;
    let name = crate::config()
        .imports
        .get(index as usize)
        .map_or("?", |i| i.name.as_str());
    let _ = kmodlab_user::ipc::log(
        alloc::format!("kmodrt: call to {name}: its signature cannot be marshalled yet\n")
            .as_bytes(),
    );
    (-(errno::ENOSYS as i64)) as u64
}

/// Serves a call to export `index` of this server's module.
pub fn serve_export(index: u64, msg: &Received, reply: &mut [u8]) -> Answer {
    let _ = (index, msg, reply);
    Answer::status(-(errno::ENOSYS as i64))
}
