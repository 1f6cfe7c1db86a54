//! Calls between modules in the microkernel configuration: export call signatures and the
//! marshalling of a call into an IPC message and back.
//!
//! In the monolithic kernel, kvstore's call of `ramblk_read(block, buf, len)` is a direct
//! jump. In the microkernel, kvstore and ramblk are servers in separate address spaces: the
//! import resolves to a **stub** in kvstore's server that sends the call to ramblk's server,
//! which runs the real function and replies. Integers travel as message words; a pointer
//! must become a lease on the caller's memory of the right length and direction, so every
//! export declares its **call signature**, in a section of the module file that the
//! monolithic loader does not load (modules/ABI.md, "Export signatures"):
//!
//! ```text
//! .kmod_exportsig (SHT_PROGBITS, flags 0): NUL-terminated records, one per export
//!   ramblk_read(u64, out[@2], u64) -> i32
//!   kvstore_get(in[@1], u64, out[@3], u64, outlen[@2]) -> i32
//!   cstats_summarize(in[@1*4], u64, out[24]) -> i32
//! ```
//!
//! Rust modules get the records from `kmod_api::export!` (from the argument types and
//! annotations such as `#[out(len)]`), C modules from `EXPORT_SYMBOL_SIG(sym, "...")` in
//! `kmod.h`. This crate is the one reader and the one implementation of the protocol:
//!
//! - [`sig`]: the grammar, [`Export::parse`], the canonical text and [`Export::fingerprint`];
//! - [`find_section`], [`ExportTable`]: reading the section of a `.ko` (any bytes: `Ok` or a
//!   typed error, bounded time and memory), checking it against the module's exports;
//! - [`Descriptor`]: one export's index, fingerprint and signature, as a 64-byte record for
//!   stub pages and server tables;
//! - [`call`]: the message ([`Descriptor::marshal`], [`Descriptor::accept`],
//!   [`Accepted::finish`], [`Request::complete`]).
//!
//! `no_std`, no allocation, no `unsafe`, no panics (clippy denies indexing, unwrapping and
//! unchecked arithmetic outside tests; property tests feed arbitrary bytes and words).
//!
//! # Trust, and what a mismatch does
//!
//! The client is untrusted: its module may write any UTCB contents and bypass its stub. The
//! server runtime therefore checks every request against **its own** descriptor, built by the
//! manager from the exporter's file, and runs the function only if the request is exactly
//! what that signature allows (header version, export index, fingerprint, canonical integer
//! words, zero words elsewhere, null bits only on pointers, one lease per non-null buffer
//! with exactly its direction's rights and the length its count argument gives, within
//! [`Limits`]). Anything else is refused with `-EPROTO` (`-E2BIG` over the limits,
//! `-EINVAL` for a negative count) and the function does not run: a stub built for a
//! different signature than the server's (a stale stub, a corrupted stub page, a module
//! that forges calls) gets an error, never a call with misinterpreted arguments.
//!
//! What cannot be checked at run time is the *importer's* belief about the signature: if
//! kvstore declares `ramblk_read` with other types than ramblk exports, the stub marshals
//! per ramblk's signature, as the monolithic kernel would jump to ramblk's code — wrong in
//! both configurations, and found only by reviewing the `extern` declaration (Rust) or the
//! prototype (C). The Rust `export!` derives the signature from the function's own types, so
//! the exporter's side cannot disagree with its code; a C signature string is checked for
//! form at build time (`crates/kmodlab-build`), not against the C prototype.
//!
//! # Integration: the manager
//!
//! ```
//! use kmod_calls::{Descriptor, ExportTable};
//! # fn demo(exporter_file: &[u8], exports: &[&str]) -> Result<(), String> {
//! // Loading a module (the exporter): refuse it if an export lacks a signature.
//! let table = ExportTable::from_module(exporter_file).map_err(|e| e.to_string())?;
//! table
//!     .check_exports(exports.iter().copied())
//!     .map_err(|e| format!("ENOEXEC: {e}"))?;
//! // Its server's table: one descriptor per export, in index order, with the function's
//! // address from the loader (written into the server's memory for its runtime).
//! let server_table: Vec<[u8; Descriptor::LEN]> = table
//!     .iter()
//!     .enumerate()
//!     .map(|(i, e)| Descriptor::new(i as u32, &e).to_bytes())
//!     .collect();
//! // Resolving a client's import `ramblk_read`: its stub gets the descriptor and a
//! // capability to the exporter's endpoint.
//! if let Some((index, export)) = table.find("ramblk_read") {
//!     let stub_page_record = Descriptor::new(index, &export).to_bytes();
//! #   let _ = stub_page_record;
//! }
//! # let _ = server_table; Ok(()) }
//! ```
//!
//! # Integration: the stub (client side)
//!
//! ```
//! use kmod_calls::{Descriptor, Limits};
//! use kmodlab_ipc::msg::{Buffer, Message, MSG_WORDS};
//! /// The runtime function a stub jumps to, with the caller's six argument registers.
//! fn call_export(desc: &Descriptor, regs: [u64; MSG_WORDS], op: u64) -> u64 {
//!     let request = match desc.marshal(&regs, &Limits::DEFAULT) {
//!         Ok(r) => r,
//!         Err(e) => return desc.failure_return(e.errno()),
//!     };
//!     let mut m = Message::new(op, request.words);
//!     m.send = Buffer { addr: request.header.as_ptr() as u64, len: request.header.len() as u64 };
//!     for (slot, lease) in m.leases.iter_mut().zip(request.leases()) {
//!         *slot = *lease;
//!     }
//!     m.lease_count = request.leases().len();
//!     // ... write `m` into the UTCB, `call(slot_of_the_exporter)`:
//!     let reply: Result<[u64; MSG_WORDS], u64> = Ok([0; MSG_WORDS]); // (status 0, words)
//!     match reply {
//!         Err(errno) => desc.failure_return(errno), // EPIPE, EDEADLK, a refusal, ...
//!         Ok(words) => match request.complete(&words) {
//!             Ok(done) => {
//!                 for w in done.outlen_writes() {
//!                     // unsafe { (w.addr as *mut u64).write_unaligned(w.value) }
//! #                   let _ = w;
//!                 }
//!                 done.ret
//!             }
//!             Err(e) => desc.failure_return(e.errno()),
//!         },
//!     }
//! }
//! # let _ = call_export;
//! ```
//!
//! # Integration: the server runtime
//!
//! ```
//! use kmod_calls::{Descriptor, Limits, OUTLEN_UNSET, RequestError, RequestHeader, Slot};
//! use kmodlab_ipc::msg::{MSG_WORDS, Received};
//! /// One export-call request: `Ok(reply words)` (reply status 0) or `Err(errno)` (reply
//! /// `-errno`). `table` is the manager's descriptors with each function's address.
//! fn serve(table: &[(Descriptor, u64)], received: &Received, payload: &[u8]) -> Result<[u64; MSG_WORDS], u64> {
//!     let header = RequestHeader::decode(payload).map_err(|e| e.errno())?;
//!     let (desc, function) = table.get(header.export as usize).ok_or(
//!         RequestError::UnknownExport { export: header.export, count: table.len() }.errno(),
//!     )?;
//!     let accepted = desc.accept(&header, received, &Limits::DEFAULT).map_err(|e| e.errno())?;
//!     let mut buffers: [Vec<u8>; 6] = Default::default();
//!     let mut cells = [0u64; 6];
//!     let mut local = [0u64; 6];
//!     for (i, slot) in accepted.slots().iter().enumerate() {
//!         match *slot {
//!             Slot::Buffer(b) => {
//!                 buffers[i] = vec![0; b.len as usize];
//!                 if b.dir.reads() {
//!                     // lease_read(token, b.lease, 0, &mut buffers[i]) must return b.len,
//!                     // else reply -EFAULT.
//!                 }
//!                 local[i] = if b.len == 0 { 1 } else { buffers[i].as_ptr() as u64 };
//!             }
//!             Slot::OutLen => cells[i] = OUTLEN_UNSET,
//!             Slot::Scalar(_) | Slot::Null => {}
//!         }
//!     }
//!     for (i, slot) in accepted.slots().iter().enumerate() {
//!         if let Slot::OutLen = slot {
//!             local[i] = &cells[i] as *const u64 as u64;
//!         }
//!     }
//!     let regs = accepted.registers(&local);
//!     let rax = 0; // unsafe: call `function` with regs[0..6] (System V), take rax
//! #   let _ = (regs, function);
//!     let finished = accepted.finish(rax, &cells);
//!     for c in finished.copy_backs() {
//!         // lease_write(token, c.lease, 0, &buffers[c.arg as usize][..c.len as usize])
//! #       let _ = c;
//!     }
//!     Ok(finished.words)
//! }
//! # let _ = serve;
//! ```
//!
//! The crate's tests run exactly these three parts against a simulated kernel (leases on a
//! model of the caller's memory) and compare every call with the same call made directly.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects,
        clippy::unreachable,
        clippy::todo
    )
)]

pub mod call;
pub mod error;
pub mod sig;
mod table;

pub use call::{
    Accepted, BufferSlot, Completed, CopyBack, Descriptor, Finished, HEADER_LEN, Limits,
    OUTLEN_UNSET, OutLenWrite, Request, RequestHeader, Slot, VERSION,
};
pub use error::{
    CoverageError, DescriptorError, FindError, MarshalError, ModuleError, RecordError, ReplyError,
    RequestError, SectionError, SignatureError,
};
pub use sig::{
    Arg, Dir, Export, Extent, Int, MAX_ARGS, MAX_BUFFERS, MAX_NAME, MAX_RECORD, MAX_SIZE, Ret,
    Signature,
};
pub use table::{ExportTable, MAX_EXPORTS, MAX_SECTION, SECTION, find_section};

#[cfg(test)]
mod tests;
