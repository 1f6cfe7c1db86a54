//! `kvclient`: the top of the chain `ramblk` ← `kvstore` ← `kvclient`. Its init uses the
//! store through kvstore's exported functions and through the `kvstore` service, checksums
//! what it stored with the `crc32` service (found by name after `request_module("crc32")`,
//! not by symbol), and reports; its exit removes its keys again.
#![no_std]

use kmod_api::service::Handle;
use kmod_api::{Errno, println};

kmod_api::module! {
    name: "kvclient",
    license: "GPL",
    author: "kmodlab",
    description: "Uses kvstore at load time and reports what it found",
    version: "1.0",
    init: init,
    exit: exit,
    params: {
        keys: int = 16, "how many keys to store (1..=48)";
    },
}

unsafe extern "C" {
    fn kvstore_put(key: *const u8, klen: usize, value: *const u8, vlen: usize) -> i32;
    fn kvstore_get(key: *const u8, klen: usize, buf: *mut u8, cap: usize, len: *mut usize) -> i32;
    fn kvstore_delete(key: *const u8, klen: usize) -> i32;
    fn kvstore_count() -> u64;
}

const MAX_KEYS: i64 = 48;

/// A small fixed-capacity byte string, for keys and values built with `write!`.
struct Text {
    buf: [u8; 96],
    len: usize,
}

impl Text {
    fn new() -> Text {
        Text {
            buf: [0; 96],
            len: 0,
        }
    }
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn key(i: i64) -> Text {
    let mut t = Text::new();
    let _ = core::fmt::write(&mut t, format_args!("key-{i:02}"));
    t
}

fn value(i: i64) -> Text {
    let mut t = Text::new();
    let _ = core::fmt::write(
        &mut t,
        format_args!("value {i} of kvclient, squared {}", i * i),
    );
    t
}

fn put(k: &[u8], v: &[u8]) -> Result<(), Errno> {
    // SAFETY: both slices are valid for their lengths during the call.
    Errno::check(unsafe { kvstore_put(k.as_ptr(), k.len(), v.as_ptr(), v.len()) }).map(drop)
}

fn get(k: &[u8], out: &mut [u8]) -> Result<usize, Errno> {
    let mut len = 0;
    // SAFETY: k and out are valid for their lengths, len is writable.
    let ret = unsafe { kvstore_get(k.as_ptr(), k.len(), out.as_mut_ptr(), out.len(), &mut len) };
    Errno::check(ret).map(|_| len)
}

fn delete(k: &[u8]) -> Result<(), Errno> {
    // SAFETY: k is valid for its length during the call.
    Errno::check(unsafe { kvstore_delete(k.as_ptr(), k.len()) }).map(drop)
}

fn count() -> u64 {
    // SAFETY: no arguments; kvstore is live.
    unsafe { kvstore_count() }
}

fn init() -> Result<(), Errno> {
    let n = params::keys.get();
    if !(1..=MAX_KEYS).contains(&n) {
        println!("keys={n} is out of range 1..={MAX_KEYS}");
        return Err(Errno::EINVAL);
    }
    let before = count();
    for i in 0..n {
        put(key(i).bytes(), value(i).bytes())?;
    }
    let mut buf = [0u8; 128];
    let mut verified = 0;
    for i in 0..n {
        let len = get(key(i).bytes(), &mut buf)?;
        if &buf[..len] != value(i).bytes() {
            println!("key-{i:02} read back wrong");
            return Err(Errno::EIO);
        }
        verified += 1;
    }
    let mut deleted = 0;
    for i in (0..n).step_by(4) {
        delete(key(i).bytes())?;
        deleted += 1;
    }
    if get(key(0).bytes(), &mut buf) != Err(Errno::ENOENT) {
        println!("key-00 still readable after delete");
        return Err(Errno::EIO);
    }
    let after = count();
    if after != before + (n - deleted) as u64 {
        println!(
            "store count {after}, expected {}",
            before + (n - deleted) as u64
        );
        return Err(Errno::EIO);
    }

    // The same store through its service (what a microkernel client would use).
    let kv = Handle::lookup("kvstore")?;
    let k1 = key(1);
    let len = kv.call(1, k1.bytes(), &mut buf)?;
    let service_ok = &buf[..len] == value(1).bytes();
    let mut reply = [0u8; 8];
    kv.call(3, &[], &mut reply)?;
    let service_count = u64::from_le_bytes(reply);

    // Checksum of every surviving value, through the crc32 service.
    kmod_api::request_module("crc32")?;
    let crc = Handle::lookup("crc32")?;
    let mut all = 0u32;
    let mut sum = [0u8; 4];
    for i in (0..n).filter(|i| i % 4 != 0) {
        crc.call(0, value(i).bytes(), &mut sum)?;
        all ^= u32::from_le_bytes(sum).rotate_left(i as u32);
    }
    println!(
        "put {n}, read back {verified} ok, deleted {deleted}, count {after}, service get {}, service count {service_count}, crc32 digest {all:#010x}",
        if service_ok { "ok" } else { "MISMATCH" }
    );
    if !service_ok || service_count != after {
        return Err(Errno::EIO);
    }
    Ok(())
}

fn exit() {
    let n = params::keys.get();
    let mut removed = 0;
    for i in (0..n).filter(|i| i % 4 != 0) {
        if delete(key(i).bytes()).is_ok() {
            removed += 1;
        }
    }
    println!("removed {removed} keys, store count now {}", count());
}
