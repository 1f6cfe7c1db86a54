//! `crc32`: checksums as a service. Exports CRC-32 (IEEE 802.3, the zlib/Ethernet one) and
//! Adler-32 to other modules as functions, and offers the same through the `crc32` service
//! (op 0: CRC-32, op 1: Adler-32; request: the bytes; reply: the checksum, 4 bytes LE).
//! Init checks both against published test vectors and measures CRC-32 throughput.
#![no_std]

use kmod_api::mem::KBuffer;
use kmod_api::service::{self, Service};
use kmod_api::{Errno, println};

kmod_api::module! {
    name: "crc32",
    license: "GPL",
    author: "kmodlab",
    description: "CRC-32 and Adler-32 checksums, as exported functions and as a service",
    version: "1.0",
    init: init,
    exit: exit,
    params: {
        bench_kib: int = 64, "KiB to checksum in the init-time throughput measurement (0..=1024)";
    },
}

/// Service name.
const SERVICE: &str = "crc32";
/// Service op: CRC-32 of the request.
pub const OP_CRC32: u32 = 0;
/// Service op: Adler-32 of the request.
pub const OP_ADLER32: u32 = 1;

/// The reflected CRC-32 table for polynomial 0xEDB88320, built at compile time.
static TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Continues a CRC-32 over `bytes` (`crc` is a previous result, 0 to start).
pub fn update(crc: u32, bytes: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in bytes {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Adler-32 of `bytes`.
pub fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 is the longest run whose sums cannot overflow u32 before the reduction.
    for chunk in bytes.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// Rebuilds a byte slice from an exported function's raw arguments.
///
/// # Safety
/// `buf` must be valid for `len` bytes (or `len` must be 0).
unsafe fn bytes<'a>(buf: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || buf.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { core::slice::from_raw_parts(buf, len) }
    }
}

kmod_api::export! {
    /// CRC-32 of `len` bytes at `buf`.
    ///
    /// # Safety
    /// `buf` must be valid for `len` bytes.
    pub unsafe extern "C" fn crc32_compute(#[in(len)] buf: *const u8, len: usize) -> u32 {
        // SAFETY: forwarded from this function's contract.
        update(0, unsafe { bytes(buf, len) })
    }

    /// Continues CRC-32 `crc` over `len` more bytes at `buf`.
    ///
    /// # Safety
    /// `buf` must be valid for `len` bytes.
    pub unsafe extern "C" fn crc32_update(crc: u32, #[in(len)] buf: *const u8, len: usize) -> u32 {
        // SAFETY: forwarded from this function's contract.
        update(crc, unsafe { bytes(buf, len) })
    }

    /// Adler-32 of `len` bytes at `buf`.
    ///
    /// # Safety
    /// `buf` must be valid for `len` bytes.
    pub unsafe extern "C" fn adler32_compute(#[in(len)] buf: *const u8, len: usize) -> u32 {
        // SAFETY: forwarded from this function's contract.
        adler32(unsafe { bytes(buf, len) })
    }
}

struct Checksums;

impl Service for Checksums {
    fn call(&self, op: u32, request: &[u8], reply: &mut [u8]) -> Result<usize, Errno> {
        let sum = match op {
            OP_CRC32 => update(0, request),
            OP_ADLER32 => adler32(request),
            _ => return Err(Errno::ENOSYS),
        };
        let out = reply.get_mut(..4).ok_or(Errno::EMSGSIZE)?;
        out.copy_from_slice(&sum.to_le_bytes());
        Ok(4)
    }
}

static CHECKSUMS: Checksums = Checksums;

fn self_test() -> Result<(), Errno> {
    let vectors: [(&[u8], u32, u32); 3] = [
        (b"", 0, 1),
        (b"123456789", 0xCBF4_3926, 0x091E_01DE),
        (b"Wikipedia", 0xADAA_C02E, 0x11E6_0398),
    ];
    for (input, crc, adler) in vectors {
        let (got_crc, got_adler) = (update(0, input), adler32(input));
        if got_crc != crc || got_adler != adler {
            println!(
                "self-test FAILED on {:?}: crc32 {got_crc:#010x} (want {crc:#010x}), adler32 {got_adler:#010x} (want {adler:#010x})",
                core::str::from_utf8(input).unwrap_or("?")
            );
            return Err(Errno::EIO);
        }
    }
    // Feeding the data in pieces must give the same CRC as in one go.
    if update(update(0, b"12345"), b"6789") != 0xCBF4_3926 {
        println!("self-test FAILED: incremental crc32 differs");
        return Err(Errno::EIO);
    }
    println!("self-test ok: crc32(\"123456789\")=0xcbf43926 adler32(\"Wikipedia\")=0x11e60398");
    Ok(())
}

fn bench() -> Result<(), Errno> {
    let kib = params::bench_kib.get();
    if !(0..=1024).contains(&kib) {
        println!("bench_kib={kib} is out of range 0..=1024");
        return Err(Errno::EINVAL);
    }
    if kib == 0 {
        return Ok(());
    }
    let mut buf = KBuffer::new_zeroed(kib as usize * 1024, 64)?;
    // A fixed pattern, so the printed CRC is the same on every run and checkable.
    for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    let start = kmod_api::cycles();
    let crc = update(0, buf.as_slice());
    let cycles = kmod_api::cycles().wrapping_sub(start);
    let per_byte_x100 = cycles.saturating_mul(100) / buf.len() as u64;
    println!(
        "bench: crc32 of {kib} KiB = {crc:#010x} in {cycles} cycles ({}.{:02} cycles/byte)",
        per_byte_x100 / 100,
        per_byte_x100 % 100
    );
    Ok(())
}

fn init() -> Result<(), Errno> {
    self_test()?;
    bench()?;
    service::register(SERVICE, &CHECKSUMS)?;
    println!("service \"{SERVICE}\" registered (op 0: crc32, op 1: adler32)");
    Ok(())
}

fn exit() {
    match service::unregister(SERVICE) {
        Ok(()) => println!("service \"{SERVICE}\" unregistered"),
        Err(e) => println!("unregistering service \"{SERVICE}\" failed: {e}"),
    }
}
