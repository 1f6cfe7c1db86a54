//! Services: named, message-style request handlers (name → handle; call(handle, op, request
//! bytes, reply buffer) → status). The same calls work as direct calls in the monolithic
//! kernel and as IPC in the microkernel, because requests and replies are plain bytes.

use core::ffi::c_void;

use crate::Errno;

/// A service a module offers. `call` handles request `op` with `request`, writes its reply
/// into `reply` and returns the reply's length.
pub trait Service: Sync + 'static {
    /// Handles one request.
    fn call(&self, op: u32, request: &[u8], reply: &mut [u8]) -> Result<usize, Errno>;
}

/// Registers `service` under `name`. Unregister it in the module's exit function.
pub fn register<S: Service>(name: &'static str, service: &'static S) -> Result<(), Errno> {
    let ctx = service as *const S as *mut c_void;
    // SAFETY: name is valid for its length; `trampoline::<S>` matches ServiceHandler and is
    // only ever called with this `ctx`, a `&'static S`.
    let ret = unsafe {
        crate::raw::kmod_service_register(name.as_ptr(), name.len(), trampoline::<S>, ctx)
    };
    Errno::check(ret).map(drop)
}

/// Removes this module's service `name`.
pub fn unregister(name: &str) -> Result<(), Errno> {
    // SAFETY: name is valid for its length during the call.
    let ret = unsafe { crate::raw::kmod_service_unregister(name.as_ptr(), name.len()) };
    Errno::check(ret).map(drop)
}

/// The kernel-side entry of a Rust service: rebuilds the slices and calls [`Service::call`].
///
/// # Safety
/// The kernel calls it per the ServiceHandler contract: `ctx` is the `&'static S` given to
/// [`register`], `req` is valid for `req_len` bytes, `reply` for `reply_cap` writable bytes,
/// `reply_len` is writable.
unsafe extern "C" fn trampoline<S: Service>(
    ctx: *mut c_void,
    op: u32,
    req: *const u8,
    req_len: usize,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> i32 {
    // SAFETY: per this function's contract, ctx is the `&'static S` passed to register.
    let service = unsafe { &*(ctx as *const S) };
    let request: &[u8] = if req_len == 0 || req.is_null() {
        &[]
    } else {
        // SAFETY: per the contract, req is valid for req_len bytes during the call.
        unsafe { core::slice::from_raw_parts(req, req_len) }
    };
    let reply: &mut [u8] = if reply_cap == 0 || reply.is_null() {
        &mut []
    } else {
        // SAFETY: per the contract, reply is valid for reply_cap writable bytes and not
        // aliased by the request.
        unsafe { core::slice::from_raw_parts_mut(reply, reply_cap) }
    };
    match service.call(op, request, reply) {
        Ok(n) if n <= reply_cap => {
            if !reply_len.is_null() {
                // SAFETY: per the contract, reply_len is writable.
                unsafe { reply_len.write(n) };
            }
            0
        }
        Ok(_) => Errno::EMSGSIZE.to_ret(),
        Err(e) => e.to_ret(),
    }
}

/// A looked-up service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(u64);

impl Handle {
    /// Finds service `name`; `ENOENT` if nobody registered it.
    pub fn lookup(name: &str) -> Result<Handle, Errno> {
        let mut handle = 0u64;
        // SAFETY: name is valid for its length and `handle` is writable for the call.
        let ret =
            unsafe { crate::raw::kmod_service_lookup(name.as_ptr(), name.len(), &mut handle) };
        Errno::check(ret).map(|_| Handle(handle))
    }

    /// The kernel's handle value.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// Sends request `op` with `request`; returns the reply's length in `reply`.
    pub fn call(self, op: u32, request: &[u8], reply: &mut [u8]) -> Result<usize, Errno> {
        let mut len = 0usize;
        // SAFETY: request and reply are valid for their lengths during the call, reply is
        // writable and distinct from request, `len` is writable.
        let ret = unsafe {
            crate::raw::kmod_service_call(
                self.0,
                op,
                request.as_ptr(),
                request.len(),
                reply.as_mut_ptr(),
                reply.len(),
                &mut len,
            )
        };
        Errno::check(ret)?;
        if len > reply.len() {
            // A kernel that broke its contract; don't let the caller index past its buffer.
            return Err(Errno::EMSGSIZE);
        }
        Ok(len)
    }
}
