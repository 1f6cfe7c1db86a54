//! Services in a module server. The registry is the manager's (names are global); the
//! server keeps the handlers it registered (by the id the manager gave each) and the
//! handles its module looked up.
//!
//! A handle is a capability slot (of the owning server's endpoint, granted by the manager at
//! lookup) and a service id. Ids are never reused, so a handle stays *stale* forever once
//! its service is gone:
//! - unregistered: the owning server answers `-ENOENT` (it has no such id any more);
//! - its server gone (unloaded or faulted): the manager deleted the capability, so the call
//!   fails in the kernel with `EBADF`, reported as `-ENOENT`; if the slot was reused for
//!   another server, that server has no such id either: `-ENOENT`;
//! - its server dies *during* the call: the kernel fails it with `EPIPE`, reported as
//!   `-EPIPE` (the request may or may not have been carried out).

use alloc::vec::Vec;
use core::ffi::c_void;

use guest_rt::errno;
use kmod_api::abi::ServiceHandler;
use kmodlab_ipc::cap::SUPERVISOR;
use kmodlab_ipc::{server, srv};
use kmodlab_user::ipc::{self, CallError, Outgoing};

use crate::Answer;

/// Longest service name (as in the monolithic kernel).
pub const MAX_NAME: usize = 64;
/// The slot a lookup answers for a service of this very server: served by a direct call
/// (calling the own endpoint would be a cycle).
pub const SELF_SLOT: u64 = u64::MAX;

struct LocalService {
    id: u64,
    handler: ServiceHandler,
    ctx: usize,
}

#[derive(Clone, Copy)]
struct Handle {
    slot: u64,
    id: u64,
}

static LOCAL: spin::Mutex<Vec<LocalService>> = spin::Mutex::new(Vec::new());
static HANDLES: spin::Mutex<Vec<Handle>> = spin::Mutex::new(Vec::new());

fn neg(e: u64) -> i32 {
    -(e.min(4095) as i32)
}

/// A call to the manager with `name` as payload.
fn ask(op: u64, name: &str) -> Result<[u64; 6], CallError> {
    let out = Outgoing {
        op,
        words: [0; 6],
        payload: name.as_bytes(),
        read_leases: &[],
    };
    ipc::call(SUPERVISOR, &out, &mut [], &mut []).map(|r| r.info.words)
}

/// `kmod_service_register`.
pub fn register(name: &str, handler: ServiceHandler, ctx: *mut c_void) -> i32 {
    if name.is_empty() || name.len() > MAX_NAME {
        return neg(errno::EINVAL);
    }
    match ask(server::op::SERVICE_REGISTER, name) {
        Ok(words) => {
            LOCAL.lock().push(LocalService {
                id: words[0],
                handler,
                ctx: ctx as usize,
            });
            0
        }
        Err(e) => neg(e.errno),
    }
}

/// `kmod_service_unregister`.
pub fn unregister(name: &str) -> i32 {
    match ask(server::op::SERVICE_UNREGISTER, name) {
        Ok(words) => {
            LOCAL.lock().retain(|s| s.id != words[0]);
            0
        }
        Err(e) => neg(e.errno),
    }
}

/// `kmod_service_lookup`: a new handle.
pub fn lookup(name: &str) -> Result<u64, i32> {
    let words = ask(server::op::SERVICE_LOOKUP, name).map_err(|e| neg(e.errno))?;
    let mut handles = HANDLES.lock();
    handles.push(Handle {
        slot: words[0],
        id: words[1],
    });
    Ok(handles.len() as u64)
}

/// Calls handler `id` of this server, as the monolithic kernel's registry would.
///
/// # Safety
/// `req` readable for `req_len` bytes, `reply` writable for `reply_cap` bytes.
unsafe fn call_local(
    id: u64,
    op: u32,
    req: *const u8,
    req_len: usize,
    reply: *mut u8,
    reply_cap: usize,
) -> (i32, usize) {
    let target = LOCAL
        .lock()
        .iter()
        .find(|s| s.id == id)
        .map(|s| (s.handler, s.ctx));
    let Some((handler, ctx)) = target else {
        return (neg(errno::ENOENT), 0);
    };
    let mut len = 0usize;
    // SAFETY: the handler was registered by this server's module, whose code stays mapped
    // for the server's life; the buffers are valid per this function's contract and `len` is
    // a local. The registry lock is not held: the handler may use services itself.
    let status = unsafe {
        handler(
            ctx as *mut c_void,
            op,
            req,
            req_len,
            reply,
            reply_cap,
            &mut len,
        )
    };
    if len > reply_cap {
        return (neg(errno::EMSGSIZE), 0);
    }
    (status, len)
}

/// `kmod_service_call`.
///
/// # Safety
/// The kernel API contract: `req` readable for `req_len` bytes, `reply` writable for
/// `reply_cap` bytes and `reply_len` writable (or null), for the duration of the call.
pub unsafe fn call(
    handle: u64,
    op: u32,
    req: *const u8,
    req_len: usize,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> i32 {
    let found = usize::try_from(handle)
        .ok()
        .and_then(|h| h.checked_sub(1))
        .and_then(|i| HANDLES.lock().get(i).copied());
    let Some(h) = found else {
        return neg(errno::ENOENT);
    };
    let (status, len) = if h.slot == SELF_SLOT {
        // SAFETY: per this function's contract.
        unsafe { call_local(h.id, op, req, req_len, reply, reply_cap) }
    } else {
        let request: &[u8] = if req.is_null() || req_len == 0 {
            &[]
        } else {
            // SAFETY: per this function's contract, `req` is readable for `req_len` bytes.
            unsafe { core::slice::from_raw_parts(req, req_len) }
        };
        let reply_buf: &mut [u8] = if reply.is_null() || reply_cap == 0 {
            &mut []
        } else {
            // SAFETY: per this function's contract, `reply` is writable for `reply_cap`
            // bytes; the kernel writes the reply payload straight into it.
            unsafe { core::slice::from_raw_parts_mut(reply, reply_cap) }
        };
        let cap = reply_buf.len().min(kmodlab_ipc::msg::MAX_PAYLOAD as usize);
        let out = Outgoing {
            op: srv::op::SERVICE_CALL,
            words: [h.id, u64::from(op), cap as u64, 0, 0, 0],
            payload: request,
            read_leases: &[],
        };
        match ipc::call(h.slot, &out, &mut reply_buf[..cap], &mut []) {
            Ok(r) => (r.status as i64 as i32, r.info.len as usize),
            // The capability was revoked: the service's server is gone.
            Err(e) if e.from_kernel && e.errno == errno::EBADF => (neg(errno::ENOENT), 0),
            Err(e) => (neg(e.errno), 0),
        }
    };
    if status >= 0 && !reply_len.is_null() {
        // SAFETY: per this function's contract, `reply_len` is writable when not null.
        unsafe { reply_len.write(len) };
    }
    status
}

/// Serves a [`srv::op::SERVICE_CALL`] from another server or the kernel.
pub fn serve_call(call: &srv::ServiceCall, request: &[u8], reply: &mut [u8]) -> Answer {
    let cap = usize::try_from(call.reply_cap)
        .unwrap_or(usize::MAX)
        .min(reply.len());
    // SAFETY: `request` and `reply[..cap]` are this server's own buffers, valid for the call.
    let (status, len) = unsafe {
        call_local(
            call.service,
            call.op,
            request.as_ptr(),
            request.len(),
            reply.as_mut_ptr(),
            cap,
        )
    };
    Answer {
        status: i64::from(status) as u64,
        words: [0; 6],
        len: if status >= 0 { len } else { 0 },
    }
}
