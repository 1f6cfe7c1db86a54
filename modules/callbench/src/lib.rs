//! `callbench`: what a call from one module to another costs, measured from inside a module
//! with `kmod_api::cycles()`. In the monolithic kernel every call below is a direct function
//! call; in the microkernel the same code makes IPC round trips. It uses the kernel API
//! only, so the same `.ko` runs in both.
//!
//! Service `callbench`, op [`OP_MEASURE`]: the request is four little-endian `u32`s
//! `kind, size, samples, batch`; the reply is `samples` little-endian `u64`s, each the cycles
//! of `batch` consecutive calls of `kind` with `size` bytes:
//!
//! - [`KIND_EXPORT`]: `crc32_compute(buf, size)`, an export of the `crc32` module;
//! - [`KIND_SERVICE`]: the `crc32` service, op 0, with a `size`-byte request;
//! - [`KIND_CHAIN`]: a get of a `size`-byte value (at most 440) from the `kvstore` service,
//!   the three-hop chain callbench → kvstore → ramblk (block read) and crc32 (record check).
//!   kvstore is reached through its service, not its exports, so that callbench depends on
//!   crc32 alone and adding it leaves the other modules' `modules.dep` order unchanged;
//!   compare loads kvstore (and ramblk) for it.
//!
//! Every call's result must equal the first one's (same input, same output), so the calls
//! cannot be optimised away or silently fail; a mismatch fails the request with `EIO`.
#![no_std]

use core::hint::black_box;

use kmod_api::Errno;
use kmod_api::mem::KBuffer;
use kmod_api::service::{self, Handle, Service};

kmod_api::module! {
    name: "callbench",
    license: "GPL",
    author: "kmodlab",
    description: "Measures calls between modules: an export, a service, the kvstore chain",
    version: "1.0",
    init: init,
    exit: exit,
}

unsafe extern "C" {
    fn crc32_compute(buf: *const u8, len: usize) -> u32;
}

/// kvstore service ops (modules/kvstore).
const KV_PUT: u32 = 0;
const KV_GET: u32 = 1;
const KV_DELETE: u32 = 2;

/// Service name.
const SERVICE: &str = "callbench";
/// Op: run one measurement (see the crate documentation).
pub const OP_MEASURE: u32 = 0;
/// Kind: an exported function of another module.
pub const KIND_EXPORT: u32 = 0;
/// Kind: another module's service.
pub const KIND_SERVICE: u32 = 1;
/// Kind: the kvstore service → ramblk + crc32 chain.
pub const KIND_CHAIN: u32 = 2;
/// Largest request size.
pub const MAX_SIZE: usize = 4096;
/// Largest value kvstore stores.
const MAX_CHAIN_SIZE: usize = 440;
/// Most samples per request.
const MAX_SAMPLES: usize = 4096;
/// Most calls per sample.
const MAX_BATCH: u32 = 100_000;
/// The key the chain measurement stores its value under.
const KEY: &[u8] = b"callbench";

/// The bytes every request is cut from: a fixed pattern, so results are reproducible.
static PAYLOAD: kmod_api::sync::SpinLock<Option<KBuffer>> = kmod_api::sync::SpinLock::new(None);

struct Request {
    kind: u32,
    size: usize,
    samples: usize,
    batch: u32,
}

fn parse(request: &[u8]) -> Result<Request, Errno> {
    let field = |i: usize| -> Result<u32, Errno> {
        let b = request.get(4 * i..4 * i + 4).ok_or(Errno::EINVAL)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if request.len() != 16 {
        return Err(Errno::EINVAL);
    }
    let r = Request {
        kind: field(0)?,
        size: field(1)? as usize,
        samples: field(2)? as usize,
        batch: field(3)?,
    };
    let max_size = if r.kind == KIND_CHAIN {
        MAX_CHAIN_SIZE
    } else {
        MAX_SIZE
    };
    if r.kind > KIND_CHAIN
        || r.size > max_size
        || r.samples == 0
        || r.samples > MAX_SAMPLES
        || r.batch == 0
        || r.batch > MAX_BATCH
    {
        return Err(Errno::EINVAL);
    }
    Ok(r)
}

/// Times `samples` batches of `call`, writing each batch's cycles to `out`; every call must
/// return what the first did.
fn time(
    out: &mut [u8],
    r: &Request,
    mut call: impl FnMut() -> Result<u32, Errno>,
) -> Result<(), Errno> {
    let expected = call()?;
    for slot in out.chunks_exact_mut(8).take(r.samples) {
        let start = kmod_api::cycles();
        let mut mismatch = false;
        for _ in 0..r.batch {
            mismatch |= black_box(call()?) != expected;
        }
        let cycles = kmod_api::cycles().wrapping_sub(start);
        if mismatch {
            return Err(Errno::EIO);
        }
        slot.copy_from_slice(&cycles.to_le_bytes());
    }
    Ok(())
}

fn measure(r: &Request, payload: &[u8], out: &mut [u8]) -> Result<(), Errno> {
    let bytes = &payload[..r.size];
    match r.kind {
        KIND_EXPORT => time(out, r, || {
            // SAFETY: `bytes` is valid for its length during the call.
            Ok(unsafe { crc32_compute(black_box(bytes.as_ptr()), bytes.len()) })
        }),
        KIND_SERVICE => {
            let crc = Handle::lookup("crc32")?;
            let mut sum = [0u8; 4];
            time(out, r, || {
                crc.call(0, black_box(bytes), &mut sum)?;
                Ok(u32::from_le_bytes(sum))
            })
        }
        _ => {
            let kv = Handle::lookup("kvstore")?;
            let mut put = [0u8; 1 + KEY.len() + MAX_CHAIN_SIZE];
            put[0] = KEY.len() as u8;
            put[1..1 + KEY.len()].copy_from_slice(KEY);
            put[1 + KEY.len()..1 + KEY.len() + bytes.len()].copy_from_slice(bytes);
            kv.call(KV_PUT, &put[..1 + KEY.len() + bytes.len()], &mut [])?;
            let mut value = [0u8; MAX_CHAIN_SIZE];
            let result = time(out, r, || {
                let len = kv.call(KV_GET, black_box(KEY), &mut value)?;
                Ok(len as u32 ^ u32::from(value[0]))
            });
            let _ = kv.call(KV_DELETE, KEY, &mut []);
            result
        }
    }
}

struct CallBench;

impl Service for CallBench {
    fn call(&self, op: u32, request: &[u8], reply: &mut [u8]) -> Result<usize, Errno> {
        if op != OP_MEASURE {
            return Err(Errno::ENOSYS);
        }
        let r = parse(request)?;
        let len = r.samples * 8;
        let out = reply.get_mut(..len).ok_or(Errno::EMSGSIZE)?;
        let payload = PAYLOAD.lock();
        let payload = payload.as_ref().ok_or(Errno::ENODEV)?;
        measure(&r, payload.as_slice(), out)?;
        Ok(len)
    }
}

static CALLBENCH: CallBench = CallBench;

fn init() -> Result<(), Errno> {
    let mut buf = KBuffer::new_zeroed(MAX_SIZE, 64)?;
    for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    *PAYLOAD.lock() = Some(buf);
    if let Err(e) = service::register(SERVICE, &CALLBENCH) {
        *PAYLOAD.lock() = None;
        return Err(e);
    }
    Ok(())
}

fn exit() {
    let _ = service::unregister(SERVICE);
    *PAYLOAD.lock() = None;
}
