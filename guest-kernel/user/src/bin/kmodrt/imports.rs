//! Calls between modules. A module's import of another module's export resolves (in the
//! manager) to call stub `i` in this server's stub area: `mov r11d, i; jmp
//! kmodrt_import_entry` ([`kmodlab_ipc::server::stub_code`]). The entry saves the six
//! argument registers and calls [`import_call`], which marshals the call as the export's
//! declared signature says (`kmod_calls`: integers in words, buffers as leases on the
//! caller's memory) and sends it to the exporting server; that server's loop calls
//! [`serve_export`], which checks the request against its own descriptor, copies the leased
//! buffers in, calls the real function, copies written buffers back and replies.
//!
//! A call that cannot be made (the exporter is gone, the call would close a cycle, a
//! refusal) returns what `kmod_calls::Descriptor::failure_return` says: `-errno` for a signed
//! return type (`-EPIPE` for a dead exporter, `-EDEADLK` for a cycle), 0 otherwise; the
//! runtime logs it.

use alloc::vec::Vec;
use core::arch::global_asm;

use guest_rt::errno;
use kmod_calls::error::errno::{E2BIG, EPROTO};
use kmod_calls::{Descriptor, HEADER_LEN, Limits, OUTLEN_UNSET, RequestHeader, Slot};
use kmodlab_ipc::msg::{Buffer, MAX_LEASES, Message, Received};
use kmodlab_ipc::server;
use kmodlab_user::ipc;

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

fn log_failure(what: &str, name: &str, why: &dyn core::fmt::Display) {
    let _ = ipc::log(alloc::format!("kmodrt: {what} {name}: {why}\n").as_bytes());
}

/// A call through stub `index` with the module's six argument registers; returns what the
/// module's call returns (in `rax`).
extern "C" fn import_call(index: u64, args: &[u64; 6]) -> u64 {
    let config = crate::config();
    let Some(import) = config.imports.get(index as usize) else {
        crate::fail(b"kmodrt: a call stub with an index the manager never gave\n");
    };
    let Ok(desc) = Descriptor::from_bytes(&import.signature) else {
        crate::fail(b"kmodrt: the manager's descriptor of an import is invalid\n");
    };
    let request = match desc.marshal(args, &Limits::DEFAULT) {
        Ok(r) => r,
        Err(e) => {
            log_failure("call to", &import.name, &e);
            return desc.failure_return(e.errno());
        }
    };
    let Some(op) = server::export_call_op(import.index) else {
        crate::fail(b"kmodrt: an import's export index is out of range\n");
    };
    let mut m = Message::new(op, request.words);
    m.send = Buffer {
        addr: request.header.as_ptr() as u64,
        len: HEADER_LEN as u64,
    };
    let leases = request.leases();
    for (slot, lease) in m.leases.iter_mut().zip(leases) {
        *slot = *lease;
    }
    m.lease_count = leases.len().min(MAX_LEASES);
    match ipc::call_message(import.slot, &m) {
        Ok(reply) if reply.status == 0 => match request.complete(&reply.info.words) {
            Ok(done) => {
                for w in done.outlen_writes() {
                    // SAFETY: `w.addr` is the module's own pointer argument that the export's
                    // signature declares an out-length (`*mut usize`, 8 bytes), non-null;
                    // the caller guarantees it is writable for the call, as it would be for
                    // the direct call in the monolithic kernel.
                    unsafe { (w.addr as *mut u64).write_unaligned(w.value) };
                }
                done.ret
            }
            Err(e) => {
                log_failure("reply of", &import.name, &e);
                desc.failure_return(EPROTO)
            }
        },
        Ok(_) => {
            log_failure("reply of", &import.name, &"a status other than 0");
            desc.failure_return(EPROTO)
        }
        Err(e) => {
            // The capability was revoked: the exporting server is gone, as when it dies
            // during the call.
            let errno = if e.from_kernel && e.errno == errno::EBADF {
                errno::EPIPE
            } else {
                e.errno
            };
            log_failure(
                "call to",
                &import.name,
                &alloc::format!("{} (errno {errno})", errno::describe(errno)),
            );
            desc.failure_return(errno)
        }
    }
}

/// Serves a call to export `index` of this server's module, checking it against the
/// server's own descriptor (the manager's, from the exporter's file): the client is
/// untrusted.
pub fn serve_export(index: u64, msg: &Received, payload: &[u8]) -> Answer {
    match serve(index, msg, payload) {
        Ok(words) => Answer {
            status: 0,
            words,
            len: 0,
        },
        Err(e) => Answer::status(-(e as i64)),
    }
}

fn serve(index: u64, msg: &Received, payload: &[u8]) -> Result<[u64; 6], u64> {
    let export = crate::config()
        .exports
        .get(usize::try_from(index).map_err(|_| EPROTO)?)
        .ok_or(EPROTO)?;
    let desc = Descriptor::from_bytes(&export.signature).map_err(|_| errno::EIO)?;
    let header = RequestHeader::decode(payload).map_err(|e| e.errno())?;
    let accepted = desc
        .accept(&header, msg, &Limits::DEFAULT)
        .map_err(|e| e.errno())?;
    let mut buffers: [Vec<u8>; 6] = Default::default();
    let mut cells = [0u64; 6];
    let mut local = [0u64; 6];
    for (i, slot) in accepted.slots().iter().enumerate() {
        match *slot {
            Slot::Buffer(b) => {
                let len = usize::try_from(b.len).map_err(|_| E2BIG)?;
                let buf = &mut buffers[i];
                buf.try_reserve_exact(len).map_err(|_| errno::ENOMEM)?;
                buf.resize(len, 0);
                if b.dir.reads() {
                    let mut done = 0usize;
                    while done < len {
                        let n = ipc::lease_read(
                            msg.sender,
                            u64::from(b.lease),
                            done as u64,
                            &mut buf[done..],
                        )
                        .map_err(|_| errno::EFAULT)? as usize;
                        if n == 0 {
                            return Err(errno::EFAULT);
                        }
                        done += n;
                    }
                }
                // A zero-length buffer still gets a non-null pointer, as the caller's was.
                local[i] = if len == 0 {
                    core::ptr::NonNull::<u8>::dangling().as_ptr() as u64
                } else {
                    buf.as_mut_ptr() as u64
                };
            }
            Slot::OutLen => cells[i] = OUTLEN_UNSET,
            Slot::Scalar(_) | Slot::Null => {}
        }
    }
    let cells_at = cells.as_mut_ptr();
    for (i, slot) in accepted.slots().iter().enumerate() {
        if let Slot::OutLen = slot {
            local[i] = cells_at.wrapping_add(i) as u64;
        }
    }
    let regs = accepted.registers(&local);
    // SAFETY: `export.address` is the module's exported function, relocated in this server
    // by the manager; the export's declared signature (checked against the request above)
    // has at most six integer or pointer arguments and an integer return, so the System V
    // call with six registers is the call the monolithic kernel's importer makes (extra
    // registers are ignored by a function with fewer arguments). Every pointer points at
    // this server's copies above (buffers of the checked lengths, u64 cells), valid for the
    // call. A fault in the function stops only this server.
    let rax = unsafe {
        let f: extern "C" fn(u64, u64, u64, u64, u64, u64) -> u64 =
            core::mem::transmute(export.address as usize);
        f(regs[0], regs[1], regs[2], regs[3], regs[4], regs[5])
    };
    // SAFETY: `cells` is this function's local array; the export may have written its
    // out-lengths through the pointers derived from `cells_at`, and it has returned.
    let cells = unsafe { cells_at.cast::<[u64; 6]>().read_volatile() };
    let finished = accepted.finish(rax, &cells);
    for c in finished.copy_backs() {
        let data = buffers[usize::from(c.arg)]
            .get(..usize::try_from(c.len).map_err(|_| errno::EIO)?)
            .ok_or(errno::EIO)?;
        let mut done = 0usize;
        while done < data.len() {
            let n = ipc::lease_write(msg.sender, u64::from(c.lease), done as u64, &data[done..])
                .map_err(|_| errno::EFAULT)? as usize;
            if n == 0 {
                return Err(errno::EFAULT);
            }
            done += n;
        }
    }
    Ok(finished.words)
}
