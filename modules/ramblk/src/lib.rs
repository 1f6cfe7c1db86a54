//! `ramblk`: a block device backed by kernel memory, the bottom of the dependency chain
//! `ramblk` ← `kvstore` ← `kvclient`. Exports block read/write functions and offers the
//! `ramblk` service (op 0: info → block size u32 + block count u64; op 1: read, request
//! block u64 + count u32 → the blocks; op 2: write, request block u64 + the blocks).
#![no_std]

use kmod_api::mem::KBuffer;
use kmod_api::service::{self, Service};
use kmod_api::sync::SpinLock;
use kmod_api::{Errno, println};

kmod_api::module! {
    name: "ramblk",
    license: "GPL",
    author: "kmodlab",
    description: "RAM-backed block device with 512-byte blocks",
    version: "1.0",
    init: init,
    exit: exit,
    params: {
        blocks: int = 64, "device size in 512-byte blocks (2..=8192)";
    },
}

/// Bytes per block.
pub const BLOCK_SIZE: usize = 512;
const SERVICE: &str = "ramblk";
const OP_INFO: u32 = 0;
const OP_READ: u32 = 1;
const OP_WRITE: u32 = 2;

struct Disk {
    data: KBuffer,
    reads: u64,
    writes: u64,
}

static DISK: SpinLock<Option<Disk>> = SpinLock::new(None);

/// The byte range of `len` bytes starting at `block`, if whole blocks inside the device.
fn range(disk: &Disk, block: u64, len: usize) -> Result<core::ops::Range<usize>, Errno> {
    if !len.is_multiple_of(BLOCK_SIZE) {
        return Err(Errno::EINVAL);
    }
    let start = usize::try_from(block)
        .ok()
        .and_then(|b| b.checked_mul(BLOCK_SIZE))
        .ok_or(Errno::ERANGE)?;
    let end = start.checked_add(len).ok_or(Errno::ERANGE)?;
    if end > disk.data.len() {
        return Err(Errno::ERANGE);
    }
    Ok(start..end)
}

fn read(block: u64, out: &mut [u8]) -> Result<(), Errno> {
    let mut guard = DISK.lock();
    let disk = guard.as_mut().ok_or(Errno::ENODEV)?;
    let r = range(disk, block, out.len())?;
    out.copy_from_slice(&disk.data.as_slice()[r]);
    disk.reads += 1;
    Ok(())
}

fn write(block: u64, data: &[u8]) -> Result<(), Errno> {
    let mut guard = DISK.lock();
    let disk = guard.as_mut().ok_or(Errno::ENODEV)?;
    let r = range(disk, block, data.len())?;
    disk.data.as_mut_slice()[r].copy_from_slice(data);
    disk.writes += 1;
    Ok(())
}

fn block_count() -> u64 {
    DISK.lock()
        .as_ref()
        .map_or(0, |d| (d.data.len() / BLOCK_SIZE) as u64)
}

fn status(r: Result<(), Errno>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_ret(),
    }
}

kmod_api::export! {
    /// Bytes per block (512).
    pub extern "C" fn ramblk_block_size() -> u32 {
        BLOCK_SIZE as u32
    }

    /// Number of blocks (0 before init).
    pub extern "C" fn ramblk_block_count() -> u64 {
        block_count()
    }

    /// Reads `len` bytes (whole blocks) starting at `block` into `buf`. 0, `-EINVAL` (not
    /// whole blocks), `-ERANGE` (past the end) or `-ENODEV`.
    ///
    /// # Safety
    /// `buf` must be valid for `len` writable bytes.
    pub unsafe extern "C" fn ramblk_read(block: u64, #[out(len)] buf: *mut u8, len: usize) -> i32 {
        if buf.is_null() {
            return Errno::EFAULT.to_ret();
        }
        // SAFETY: per this function's contract.
        let out = unsafe { core::slice::from_raw_parts_mut(buf, len) };
        status(read(block, out))
    }

    /// Writes `len` bytes (whole blocks) from `buf` starting at `block`; errors as for
    /// `ramblk_read`.
    ///
    /// # Safety
    /// `buf` must be valid for `len` bytes.
    pub unsafe extern "C" fn ramblk_write(block: u64, #[in(len)] buf: *const u8, len: usize) -> i32 {
        if buf.is_null() {
            return Errno::EFAULT.to_ret();
        }
        // SAFETY: per this function's contract.
        let data = unsafe { core::slice::from_raw_parts(buf, len) };
        status(write(block, data))
    }
}

struct BlockService;

impl Service for BlockService {
    fn call(&self, op: u32, request: &[u8], reply: &mut [u8]) -> Result<usize, Errno> {
        let block = |req: &[u8]| -> Result<u64, Errno> {
            let bytes = req.get(..8).ok_or(Errno::EINVAL)?;
            Ok(u64::from_le_bytes(
                bytes.try_into().map_err(|_| Errno::EINVAL)?,
            ))
        };
        match op {
            OP_INFO => {
                let out = reply.get_mut(..12).ok_or(Errno::EMSGSIZE)?;
                out[..4].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
                out[4..].copy_from_slice(&block_count().to_le_bytes());
                Ok(12)
            }
            OP_READ => {
                let count = request.get(8..12).ok_or(Errno::EINVAL)?;
                let count = u32::from_le_bytes(count.try_into().map_err(|_| Errno::EINVAL)?);
                let len = (count as usize)
                    .checked_mul(BLOCK_SIZE)
                    .ok_or(Errno::ERANGE)?;
                let out = reply.get_mut(..len).ok_or(Errno::EMSGSIZE)?;
                read(block(request)?, out)?;
                Ok(len)
            }
            OP_WRITE => {
                write(block(request)?, &request[8..])?;
                Ok(0)
            }
            _ => Err(Errno::ENOSYS),
        }
    }
}

static BLOCK_SERVICE: BlockService = BlockService;

fn init() -> Result<(), Errno> {
    let blocks = params::blocks.get();
    if !(2..=8192).contains(&blocks) {
        println!("blocks={blocks} is out of range 2..=8192");
        return Err(Errno::EINVAL);
    }
    let data = KBuffer::new_zeroed(blocks as usize * BLOCK_SIZE, 4096)?;
    *DISK.lock() = Some(Disk {
        data,
        reads: 0,
        writes: 0,
    });
    // Self-test through the same paths other modules use: write a pattern to the last block,
    // read it back, then clear it again.
    let last = blocks as u64 - 1;
    let mut pattern = [0u8; BLOCK_SIZE];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    let mut back = [0u8; BLOCK_SIZE];
    let ok = write(last, &pattern).is_ok()
        && read(last, &mut back).is_ok()
        && back == pattern
        && write(last, &[0u8; BLOCK_SIZE]).is_ok();
    if !ok {
        println!("self-test FAILED on block {last}");
        *DISK.lock() = None;
        return Err(Errno::EIO);
    }
    if let Err(e) = service::register(SERVICE, &BLOCK_SERVICE) {
        *DISK.lock() = None;
        return Err(e);
    }
    println!(
        "{blocks} blocks x {BLOCK_SIZE} bytes = {} bytes ready (self-test ok), service \"{SERVICE}\" registered",
        blocks as usize * BLOCK_SIZE
    );
    Ok(())
}

fn exit() {
    let _ = service::unregister(SERVICE);
    if let Some(disk) = DISK.lock().take() {
        println!(
            "{} reads, {} writes; {} bytes freed",
            disk.reads,
            disk.writes,
            disk.data.len()
        );
    }
}
