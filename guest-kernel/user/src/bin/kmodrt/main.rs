//! `kmodrt`, the module server runtime: the second implementation of the kernel API
//! (`kmod_api::for_each_kernel_api!`), in user mode, and the loop of a module server.
//!
//! The module manager maps this program into every module server at
//! [`layout::RUNTIME_BASE`], next to the module it loaded at [`layout::MODULE_BASE`], and
//! resolves the module's kernel-API imports to this program's functions of the same names
//! ([`kapi`]). It starts the server here with the initial heap's length in `rdi`. Then:
//!
//! 1. ask the manager for the [`ServerConfig`] ([`server::op::HELLO`]);
//! 2. run the module's `init_module`, report its status ([`server::op::INIT_DONE`]);
//! 3. serve: service calls ([`kmodlab_ipc::srv::op::SERVICE_CALL`]) and calls to the module's
//!    exports ([`server::export_index`]) on the own endpoint, until the manager posts
//!    [`notify::EXIT_REQUESTED`]; then run `cleanup_module` and report
//!    ([`server::op::EXIT_DONE`]), after which the manager destroys the server.
//!
//! Single-threaded: a call into the module (init, a service handler, an export) runs to its
//! end before the next request is received; calls it makes to other servers block it, and a
//! call that would come back to it fails with `EDEADLK` (the kernel detects the cycle).
#![no_std]
#![no_main]

extern crate alloc;

mod imports;
mod kapi;
mod services;

use alloc::vec;
use alloc::vec::Vec;

use kmodlab_ipc::cap::{OWN_ENDPOINT, SUPERVISOR, notify};
use kmodlab_ipc::msg::MSG_WORDS;
use kmodlab_ipc::server::{self, ServerConfig};
use kmodlab_ipc::{layout, mgr};
use kmodlab_user::ipc;

/// Largest request payload a call into this server may carry (the receive buffer).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Largest reply payload this server sends.
pub const MAX_REPLY: usize = 8 * 1024;

/// The configuration, set once at start-up, before any module code runs.
static CONFIG: spin::Once<ServerConfig> = spin::Once::new();

/// This server's configuration.
pub fn config() -> &'static ServerConfig {
    CONFIG
        .get()
        .unwrap_or_else(|| fail(b"kmodrt: configuration missing\n"))
}

/// Reports a broken invariant of the runtime to the kernel log and stops the server (the
/// manager sees it exit and treats it like a fault).
pub fn fail(why: &[u8]) -> ! {
    let _ = ipc::log(why);
    kmodlab_user::exit(100)
}

/// Maps more heap: asks the manager, which maps pages right above the heap's top.
fn grow_heap(bytes: usize) -> Option<(usize, usize)> {
    let reply = ipc::call_words(
        SUPERVISOR,
        server::op::HEAP_GROW,
        [bytes as u64, 0, 0, 0, 0, 0],
    )
    .ok()?;
    Some((reply.info.words[0] as usize, reply.info.words[1] as usize))
}

/// Asks the manager for the configuration, retrying once with the buffer size it names.
fn hello() -> ServerConfig {
    let mut cap = 4096usize;
    for _ in 0..2 {
        let mut buf = vec![0u8; cap];
        let out = ipc::Outgoing {
            op: server::op::HELLO,
            words: [cap as u64, 0, 0, 0, 0, 0],
            payload: &[],
            read_leases: &[],
        };
        match ipc::call(SUPERVISOR, &out, &mut buf, &mut []) {
            Ok(reply) => {
                let len = (reply.info.len as usize).min(buf.len());
                match mgr::decode::<ServerConfig>(&buf[..len]) {
                    Ok(c) => return c,
                    Err(_) => fail(b"kmodrt: the manager's configuration does not decode\n"),
                }
            }
            Err(e) if e.errno == guest_rt::errno::EMSGSIZE && !e.from_kernel => {
                // The manager said how large the buffer must be (word 0 of its reply is not
                // available with an error status, so ask for the protocol's maximum).
                cap = kmodlab_ipc::msg::MAX_PAYLOAD as usize;
            }
            Err(_) => fail(b"kmodrt: the manager did not answer HELLO\n"),
        }
    }
    fail(b"kmodrt: the configuration does not fit the largest message\n")
}

/// Entry (from `kmodlab_user`'s `_start`): `heap_len` bytes of heap are mapped at
/// [`layout::HEAP_BASE`].
#[unsafe(no_mangle)]
pub extern "C" fn user_main(heap_len: u64, _: u64, _: u64) -> u64 {
    // SAFETY: the manager mapped `heap_len` writable bytes at HEAP_BASE for this server's
    // heap alone before starting it, and maps further pages only on our HEAP_GROW request,
    // right above the top (grow_heap returns exactly what it mapped).
    unsafe {
        kmodlab_user::init_growing_heap(layout::HEAP_BASE as *mut u8, heap_len as usize, grow_heap)
    };
    let config = CONFIG.call_once(hello);
    let status = match config.init {
        Some(addr) => {
            // SAFETY: the manager resolved `init_module` of this server's module at `addr`,
            // relocated it and mapped it executable; the module ABI gives it the signature
            // `extern "C" fn() -> i32`. A fault in it stops only this server.
            let init: extern "C" fn() -> i32 = unsafe { core::mem::transmute(addr as usize) };
            init()
        }
        None => 0,
    };
    // A failed init: the manager undoes the load and destroys this server, never answering.
    if ipc::call_words(
        SUPERVISOR,
        server::op::INIT_DONE,
        [i64::from(status) as u64, 0, 0, 0, 0, 0],
    )
    .is_err()
    {
        fail(b"kmodrt: the manager refused INIT_DONE\n");
    }
    serve()
}

/// What the server sends back for one request.
struct Answer {
    status: u64,
    words: [u64; MSG_WORDS],
    len: usize,
}

impl Answer {
    fn status(status: i64) -> Answer {
        Answer {
            status: status as u64,
            words: [0; MSG_WORDS],
            len: 0,
        }
    }
}

/// Serves calls on the own endpoint until the manager asks the module to go.
fn serve() -> ! {
    let mut request = vec![0u8; MAX_REQUEST];
    let mut reply: Vec<u8> = vec![0u8; MAX_REPLY];
    let mut msg = ipc::recv(OWN_ENDPOINT, &mut request)
        .unwrap_or_else(|_| fail(b"kmodrt: recv on the own endpoint failed\n"));
    loop {
        if msg.sender == 0 {
            if msg.notifications & notify::EXIT_REQUESTED != 0 {
                exit();
            }
            msg = ipc::recv(OWN_ENDPOINT, &mut request)
                .unwrap_or_else(|_| fail(b"kmodrt: recv on the own endpoint failed\n"));
            continue;
        }
        let len = (msg.len as usize).min(request.len());
        let answer = match server::Incoming::decode(msg.op, &msg.words) {
            Ok(server::Incoming::Service(call)) => {
                services::serve_call(&call, &request[..len], &mut reply)
            }
            Ok(server::Incoming::Export(index)) => {
                imports::serve_export(index, &msg, &request[..len])
            }
            Err(server::IncomingError::BadServiceOp(_)) => {
                Answer::status(-(guest_rt::errno::EINVAL as i64))
            }
            Err(server::IncomingError::UnknownOp(_)) => {
                Answer::status(-(guest_rt::errno::ENOSYS as i64))
            }
        };
        let out = &reply[..answer.len.min(reply.len())];
        msg = ipc::reply_recv(
            msg.sender,
            answer.status,
            answer.words,
            out,
            OWN_ENDPOINT,
            &mut request,
        )
        .unwrap_or_else(|_| fail(b"kmodrt: reply_recv failed\n"));
    }
}

/// Runs `cleanup_module` and tells the manager, which destroys this server.
fn exit() -> ! {
    if let Some(addr) = config().exit {
        // SAFETY: as for init in `user_main`: the manager resolved `cleanup_module` at
        // `addr`, relocated and mapped it executable; its ABI signature is `extern "C" fn()`.
        let cleanup: extern "C" fn() = unsafe { core::mem::transmute(addr as usize) };
        cleanup();
    }
    let (blocks, bytes) = kapi::outstanding_allocations();
    let _ = ipc::call_words(
        SUPERVISOR,
        server::op::EXIT_DONE,
        [blocks, bytes, 0, 0, 0, 0],
    );
    // The manager destroys the server instead of answering; if it answered, something is
    // wrong with it, and this server must not run module code any more.
    fail(b"kmodrt: the manager answered EXIT_DONE\n")
}
