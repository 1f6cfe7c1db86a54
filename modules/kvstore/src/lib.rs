//! `kvstore`: a key-value store kept on the `ramblk` block device, the middle of the chain
//! `ramblk` ← `kvstore` ← `kvclient`. One record per block, placed by a CRC-32 hash of the
//! key (from the `crc32` module) with linear probing; each record carries a CRC-32 of its key
//! and value, checked on every read. Exports put/get/delete/count and offers the `kvstore`
//! service (op 0: put, request klen u8 + key + value; op 1: get, request key → value;
//! op 2: delete, request key; op 3: count → u64).
#![no_std]

use kmod_api::service::{self, Service};
use kmod_api::sync::SpinLock;
use kmod_api::{Errno, println};

kmod_api::module! {
    name: "kvstore",
    license: "GPL",
    author: "kmodlab",
    description: "Key-value store on the ramblk block device",
    version: "1.0",
    init: init,
    exit: exit,
}

// What this module uses of the modules below it (their `export!`s); depmod finds these
// undefined symbols in their `__ksymtab`s.
unsafe extern "C" {
    fn ramblk_block_size() -> u32;
    fn ramblk_block_count() -> u64;
    fn ramblk_read(block: u64, buf: *mut u8, len: usize) -> i32;
    fn ramblk_write(block: u64, buf: *const u8, len: usize) -> i32;
    fn crc32_compute(buf: *const u8, len: usize) -> u32;
}

const BLOCK: usize = 512;
/// Longest key.
pub const MAX_KEY: usize = 64;
/// Longest value.
pub const MAX_VALUE: usize = BLOCK - VALUE_AT;
/// Most slots used, whatever the device size.
const MAX_SLOTS: u64 = 1024;
const KEY_AT: usize = 8;
const VALUE_AT: usize = KEY_AT + MAX_KEY;
const MAGIC: &[u8; 4] = b"KVS1";
const SLOT_EMPTY: u8 = 0;
const SLOT_USED: u8 = 1;
const SLOT_DELETED: u8 = 2;
const SERVICE: &str = "kvstore";

type Block = [u8; BLOCK];

fn crc32(bytes: &[u8]) -> u32 {
    // SAFETY: bytes is valid for its length during the call.
    unsafe { crc32_compute(bytes.as_ptr(), bytes.len()) }
}

fn read_block(block: u64, buf: &mut Block) -> Result<(), Errno> {
    // SAFETY: buf is valid for BLOCK writable bytes during the call.
    Errno::check(unsafe { ramblk_read(block, buf.as_mut_ptr(), BLOCK) }).map(drop)
}

fn write_block(block: u64, buf: &Block) -> Result<(), Errno> {
    // SAFETY: buf is valid for BLOCK bytes during the call.
    Errno::check(unsafe { ramblk_write(block, buf.as_ptr(), BLOCK) }).map(drop)
}

struct Store {
    slots: u64,
    count: u64,
}

static STORE: SpinLock<Option<Store>> = SpinLock::new(None);

impl Store {
    fn write_superblock(&self) -> Result<(), Errno> {
        let mut sb = [0u8; BLOCK];
        sb[..4].copy_from_slice(MAGIC);
        sb[4..8].copy_from_slice(&(self.slots as u32).to_le_bytes());
        sb[8..12].copy_from_slice(&(self.count as u32).to_le_bytes());
        let crc = crc32(&sb[..12]);
        sb[12..16].copy_from_slice(&crc.to_le_bytes());
        write_block(0, &sb)
    }

    /// Slot block of probe `i` for `key`.
    fn slot(&self, key: &[u8], i: u64) -> u64 {
        1 + (crc32(key) as u64 + i) % self.slots
    }

    /// Finds `key`: `Ok((block, record))` if present, else `Err(first free block)`.
    fn find(&self, key: &[u8], rec: &mut Block) -> Result<Result<u64, Option<u64>>, Errno> {
        let mut free = None;
        for i in 0..self.slots {
            let block = self.slot(key, i);
            read_block(block, rec)?;
            match rec[0] {
                SLOT_EMPTY => return Ok(Err(free.or(Some(block)))),
                SLOT_DELETED => {
                    free.get_or_insert(block);
                }
                _ if rec[1] as usize == key.len() && &rec[KEY_AT..KEY_AT + key.len()] == key => {
                    return Ok(Ok(block));
                }
                _ => {}
            }
        }
        Ok(Err(free))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Errno> {
        check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(Errno::E2BIG);
        }
        let mut rec = [0u8; BLOCK];
        let (block, new) = match self.find(key, &mut rec)? {
            Ok(block) => (block, false),
            Err(Some(block)) => (block, true),
            Err(None) => return Err(Errno::ENOSPC),
        };
        let mut rec = [0u8; BLOCK];
        rec[0] = SLOT_USED;
        rec[1] = key.len() as u8;
        rec[2..4].copy_from_slice(&(value.len() as u16).to_le_bytes());
        rec[KEY_AT..KEY_AT + key.len()].copy_from_slice(key);
        rec[VALUE_AT..VALUE_AT + value.len()].copy_from_slice(value);
        let crc = record_crc(&rec);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        write_block(block, &rec)?;
        if new {
            self.count += 1;
            self.write_superblock()?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8], out: &mut [u8]) -> Result<usize, Errno> {
        check_key(key)?;
        let mut rec = [0u8; BLOCK];
        if self.find(key, &mut rec)?.is_err() {
            return Err(Errno::ENOENT);
        }
        let vlen = u16::from_le_bytes([rec[2], rec[3]]) as usize;
        let stored = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
        if vlen > MAX_VALUE || record_crc(&rec) != stored {
            return Err(Errno::EIO);
        }
        let dst = out.get_mut(..vlen).ok_or(Errno::EMSGSIZE)?;
        dst.copy_from_slice(&rec[VALUE_AT..VALUE_AT + vlen]);
        Ok(vlen)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), Errno> {
        check_key(key)?;
        let mut rec = [0u8; BLOCK];
        let Ok(block) = self.find(key, &mut rec)? else {
            return Err(Errno::ENOENT);
        };
        rec[0] = SLOT_DELETED;
        write_block(block, &rec)?;
        self.count -= 1;
        self.write_superblock()
    }
}

fn check_key(key: &[u8]) -> Result<(), Errno> {
    if key.is_empty() || key.len() > MAX_KEY {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

/// CRC-32 over a record's key and value (bytes 0..4 and the CRC itself excluded).
fn record_crc(rec: &Block) -> u32 {
    let klen = (rec[1] as usize).min(MAX_KEY);
    let vlen = (u16::from_le_bytes([rec[2], rec[3]]) as usize).min(MAX_VALUE);
    let mut both = [0u8; MAX_KEY + MAX_VALUE];
    both[..klen].copy_from_slice(&rec[KEY_AT..KEY_AT + klen]);
    both[klen..klen + vlen].copy_from_slice(&rec[VALUE_AT..VALUE_AT + vlen]);
    crc32(&both[..klen + vlen])
}

fn with_store<T>(f: impl FnOnce(&mut Store) -> Result<T, Errno>) -> Result<T, Errno> {
    let mut guard = STORE.lock();
    f(guard.as_mut().ok_or(Errno::ENODEV)?)
}

/// Rebuilds a byte slice from raw arguments.
///
/// # Safety
/// `ptr` must be valid for `len` bytes (or `len` 0).
unsafe fn slice<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { core::slice::from_raw_parts(ptr, len) }
    }
}

fn status(r: Result<(), Errno>) -> i32 {
    r.map_or_else(Errno::to_ret, |()| 0)
}

kmod_api::export! {
    /// Stores `value` under `key` (replacing an old value). 0, `-EINVAL` (key empty or
    /// longer than 64), `-E2BIG` (value longer than 440), `-ENOSPC`, `-EIO`.
    ///
    /// # Safety
    /// `key`/`value` must be valid for `klen`/`vlen` bytes.
    pub unsafe extern "C" fn kvstore_put(
        #[in(klen)] key: *const u8,
        klen: usize,
        #[in(vlen)] value: *const u8,
        vlen: usize,
    ) -> i32 {
        // SAFETY: per this function's contract.
        let (key, value) = unsafe { (slice(key, klen), slice(value, vlen)) };
        status(with_store(|s| s.put(key, value)))
    }

    /// Copies the value of `key` into `buf` (capacity `cap`), its length into `*len`. 0,
    /// `-ENOENT`, `-EMSGSIZE` (buffer too small), `-EIO` (record checksum mismatch).
    ///
    /// # Safety
    /// `key` valid for `klen` bytes, `buf` for `cap` writable bytes, `len` writable.
    pub unsafe extern "C" fn kvstore_get(
        #[in(klen)] key: *const u8,
        klen: usize,
        #[out(cap)] buf: *mut u8,
        cap: usize,
        #[outlen(buf)] len: *mut usize,
    ) -> i32 {
        // SAFETY: per this function's contract.
        let key = unsafe { slice(key, klen) };
        let out: &mut [u8] = if cap == 0 || buf.is_null() {
            &mut []
        } else {
            // SAFETY: per this function's contract.
            unsafe { core::slice::from_raw_parts_mut(buf, cap) }
        };
        match with_store(|s| s.get(key, out)) {
            Ok(n) => {
                if !len.is_null() {
                    // SAFETY: per this function's contract.
                    unsafe { len.write(n) };
                }
                0
            }
            Err(e) => e.to_ret(),
        }
    }

    /// Removes `key`. 0 or `-ENOENT`.
    ///
    /// # Safety
    /// `key` must be valid for `klen` bytes.
    pub unsafe extern "C" fn kvstore_delete(#[in(klen)] key: *const u8, klen: usize) -> i32 {
        // SAFETY: per this function's contract.
        let key = unsafe { slice(key, klen) };
        status(with_store(|s| s.delete(key)))
    }

    /// Number of keys stored.
    pub extern "C" fn kvstore_count() -> u64 {
        with_store(|s| Ok(s.count)).unwrap_or(0)
    }
}

struct KvService;

impl Service for KvService {
    fn call(&self, op: u32, request: &[u8], reply: &mut [u8]) -> Result<usize, Errno> {
        match op {
            0 => {
                let (&klen, rest) = request.split_first().ok_or(Errno::EINVAL)?;
                let key = rest.get(..klen as usize).ok_or(Errno::EINVAL)?;
                with_store(|s| s.put(key, &rest[klen as usize..]))?;
                Ok(0)
            }
            1 => with_store(|s| s.get(request, reply)),
            2 => with_store(|s| s.delete(request)).map(|()| 0),
            3 => {
                let out = reply.get_mut(..8).ok_or(Errno::EMSGSIZE)?;
                out.copy_from_slice(&with_store(|s| Ok(s.count))?.to_le_bytes());
                Ok(8)
            }
            _ => Err(Errno::ENOSYS),
        }
    }
}

static KV_SERVICE: KvService = KvService;

fn init() -> Result<(), Errno> {
    // SAFETY: both take no arguments; ramblk is live (the loader resolved these symbols).
    let (block_size, blocks) = unsafe { (ramblk_block_size(), ramblk_block_count()) };
    if block_size as usize != BLOCK || blocks < 2 {
        println!("ramblk has {blocks} blocks of {block_size} bytes; need >= 2 of {BLOCK}");
        return Err(Errno::ENODEV);
    }
    let store = Store {
        slots: (blocks - 1).min(MAX_SLOTS),
        count: 0,
    };
    for block in 1..=store.slots {
        write_block(block, &[SLOT_EMPTY; BLOCK])?;
    }
    store.write_superblock()?;
    // Read the superblock back: proves the device round-trips and the checksum is stable.
    let mut sb = [0u8; BLOCK];
    read_block(0, &mut sb)?;
    let crc = u32::from_le_bytes([sb[12], sb[13], sb[14], sb[15]]);
    if &sb[..4] != MAGIC || crc != crc32(&sb[..12]) {
        println!("superblock did not read back intact");
        return Err(Errno::EIO);
    }
    let slots = store.slots;
    *STORE.lock() = Some(store);
    if let Err(e) = service::register(SERVICE, &KV_SERVICE) {
        *STORE.lock() = None;
        return Err(e);
    }
    println!(
        "formatted {slots} slots on ramblk (keys <= {MAX_KEY} bytes, values <= {MAX_VALUE} bytes, superblock crc {crc:#010x}), service \"{SERVICE}\" registered"
    );
    Ok(())
}

fn exit() {
    let _ = service::unregister(SERVICE);
    if let Some(store) = STORE.lock().take() {
        println!(
            "{} keys left in {} slots; detached from ramblk",
            store.count, store.slots
        );
    }
}
