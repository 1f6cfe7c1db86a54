//! The boot information page: what the VMM tells the kernel before its first instruction.
//!
//! Fixed little-endian fields at fixed offsets ([`BootInfo::encode`] documents them), so the
//! VMM's unit tests can assert the exact bytes and the kernel can decode them without
//! `unsafe`.

use core::fmt;

use crate::{KernelConfig, KvmFlavour};

/// "KMLBOOT1", little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"KMLBOOT1");
/// Format version; bumped on any layout change (2: `host_flavour`).
pub const VERSION: u32 = 2;
/// Most usable-RAM ranges the page can describe.
pub const MAX_RANGES: usize = 8;
/// Longest command line.
pub const MAX_CMDLINE: usize = 512;
/// Encoded size in bytes (fits in one page).
pub const ENCODED_SIZE: usize = 96 + MAX_RANGES * 16 + 4 + MAX_CMDLINE;

/// A half-open physical range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// Everything the kernel learns from the VMM at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    /// TSC frequency in kHz, from `KVM_GET_TSC_KHZ`; the guest converts cycles with it.
    pub tsc_khz: u64,
    /// The guest setup to use: which KVM's conventions the kernel follows (on kvm_pvm, kernel
    /// page-table entries carry U/S so that supervisor code runs natively). The same as
    /// `host_flavour` except under the VMM's debug option that boots a kvm_pvm host with
    /// the hardware-KVM setup.
    pub flavour: KvmFlavour,
    /// Which KVM the VMM really runs on.
    pub host_flavour: KvmFlavour,
    /// Which configuration the VMM booted (the kernel checks it matches its own build).
    pub config: KernelConfig,
    /// Total guest RAM in bytes.
    pub ram_size: u64,
    /// RAM the kernel may allocate from, in address order, disjoint.
    pub usable: [PhysRange; MAX_RANGES],
    /// How many entries of `usable` are valid.
    pub usable_count: usize,
    /// The module archive (cpio newc), or an empty range.
    pub initrd: PhysRange,
    /// Physical range of the kernel image as loaded.
    pub kernel: PhysRange,
    /// The VIF page address if the VMM registered one (PVM), else 0.
    pub vif_page: u64,
    /// Kernel command line bytes (`cmdline_len` of them are valid).
    pub cmdline: [u8; MAX_CMDLINE],
    /// Valid length of `cmdline`.
    pub cmdline_len: usize,
}

/// Why a boot information page could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoError {
    /// The buffer is shorter than [`ENCODED_SIZE`].
    TooShort(usize),
    /// The magic is not [`MAGIC`].
    BadMagic(u64),
    /// The version is not [`VERSION`].
    BadVersion(u32),
    /// A field holds a value outside its domain.
    BadField(&'static str),
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootInfoError::TooShort(n) => {
                write!(f, "boot info is {n} bytes, needs {ENCODED_SIZE}")
            }
            BootInfoError::BadMagic(m) => write!(f, "boot info magic {m:#x} is wrong"),
            BootInfoError::BadVersion(v) => {
                write!(f, "boot info version {v}, this kernel reads {VERSION}")
            }
            BootInfoError::BadField(name) => write!(f, "boot info field `{name}` is invalid"),
        }
    }
}

impl core::error::Error for BootInfoError {}

impl BootInfo {
    /// A boot info with no ranges and an empty command line, for a guest set up for the KVM
    /// it runs on (`flavour` is both the setup and the host's).
    pub fn new(tsc_khz: u64, flavour: KvmFlavour, config: KernelConfig, ram_size: u64) -> Self {
        BootInfo {
            tsc_khz,
            flavour,
            host_flavour: flavour,
            config,
            ram_size,
            usable: [PhysRange::default(); MAX_RANGES],
            usable_count: 0,
            initrd: PhysRange::default(),
            kernel: PhysRange::default(),
            vif_page: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
        }
    }

    /// Whether this is a kvm_pvm host booted with the hardware-KVM guest setup (the VMM's
    /// debug option): supervisor code is emulated, and a user `syscall` does not reach
    /// supervisor mode there.
    pub fn hardware_setup_on_pvm(&self) -> bool {
        self.flavour == KvmFlavour::Hardware && self.host_flavour == KvmFlavour::Pvm
    }

    /// The valid usable ranges.
    pub fn usable_ranges(&self) -> &[PhysRange] {
        &self.usable[..self.usable_count.min(MAX_RANGES)]
    }

    /// Appends a usable range; `false` if the table is full.
    pub fn push_usable(&mut self, range: PhysRange) -> bool {
        match self.usable.get_mut(self.usable_count) {
            Some(slot) => {
                *slot = range;
                self.usable_count += 1;
                true
            }
            None => false,
        }
    }

    /// Sets the command line; `false` if it is longer than [`MAX_CMDLINE`].
    pub fn set_cmdline(&mut self, cmdline: &[u8]) -> bool {
        match self.cmdline.get_mut(..cmdline.len()) {
            Some(dst) => {
                dst.copy_from_slice(cmdline);
                self.cmdline_len = cmdline.len();
                true
            }
            None => false,
        }
    }

    /// The command line, if it is UTF-8.
    pub fn cmdline_str(&self) -> Option<&str> {
        core::str::from_utf8(self.cmdline.get(..self.cmdline_len)?).ok()
    }

    /// Writes the page. Layout (offsets in bytes, all little-endian):
    ///
    /// | off | size | field |
    /// |---|---|---|
    /// | 0 | 8 | magic `KMLBOOT1` |
    /// | 8 | 4 | version |
    /// | 12 | 4 | encoded size |
    /// | 16 | 8 | tsc_khz |
    /// | 24 | 4 | flavour (1 hardware, 2 pvm) |
    /// | 28 | 4 | config (1 monolithic, 2 microkernel) |
    /// | 32 | 8 | ram_size |
    /// | 40 | 16 | initrd start, end |
    /// | 56 | 16 | kernel start, end |
    /// | 72 | 8 | vif_page |
    /// | 80 | 4 | usable_count |
    /// | 84 | 4 | host_flavour (1 hardware, 2 pvm) |
    /// | 88 | 8 | reserved, zero |
    /// | 96 | 16 × 8 | usable ranges (start, end) |
    /// | 224 | 4 | cmdline length |
    /// | 228 | 512 | cmdline bytes |
    pub fn encode(&self) -> [u8; ENCODED_SIZE] {
        let mut out = [0u8; ENCODED_SIZE];
        let mut w = Writer {
            buf: &mut out,
            pos: 0,
        };
        w.u64(MAGIC);
        w.u32(VERSION);
        w.u32(ENCODED_SIZE as u32);
        w.u64(self.tsc_khz);
        w.u32(self.flavour.code());
        w.u32(self.config.code());
        w.u64(self.ram_size);
        w.u64(self.initrd.start);
        w.u64(self.initrd.end);
        w.u64(self.kernel.start);
        w.u64(self.kernel.end);
        w.u64(self.vif_page);
        w.u32(self.usable_count as u32);
        w.u32(self.host_flavour.code());
        w.pos += 8;
        for r in &self.usable {
            w.u64(r.start);
            w.u64(r.end);
        }
        w.u32(self.cmdline_len as u32);
        w.bytes(&self.cmdline);
        debug_assert_eq!(w.pos, ENCODED_SIZE);
        out
    }

    /// Reads a page written by [`BootInfo::encode`], checking every field's domain.
    pub fn decode(buf: &[u8]) -> Result<BootInfo, BootInfoError> {
        let buf = buf
            .get(..ENCODED_SIZE)
            .ok_or(BootInfoError::TooShort(buf.len()))?;
        let mut r = Reader { buf, pos: 0 };
        let magic = r.u64();
        if magic != MAGIC {
            return Err(BootInfoError::BadMagic(magic));
        }
        let version = r.u32();
        if version != VERSION {
            return Err(BootInfoError::BadVersion(version));
        }
        if r.u32() as usize != ENCODED_SIZE {
            return Err(BootInfoError::BadField("size"));
        }
        let tsc_khz = r.u64();
        let flavour = KvmFlavour::from_code(r.u32()).ok_or(BootInfoError::BadField("flavour"))?;
        let config = KernelConfig::from_code(r.u32()).ok_or(BootInfoError::BadField("config"))?;
        let ram_size = r.u64();
        let initrd = r.range("initrd")?;
        let kernel = r.range("kernel")?;
        let vif_page = r.u64();
        let usable_count = r.u32() as usize;
        if usable_count > MAX_RANGES {
            return Err(BootInfoError::BadField("usable_count"));
        }
        let host_flavour =
            KvmFlavour::from_code(r.u32()).ok_or(BootInfoError::BadField("host_flavour"))?;
        r.pos += 8;
        let mut usable = [PhysRange::default(); MAX_RANGES];
        for slot in usable.iter_mut() {
            *slot = r.range("usable")?;
        }
        let cmdline_len = r.u32() as usize;
        if cmdline_len > MAX_CMDLINE {
            return Err(BootInfoError::BadField("cmdline_len"));
        }
        let mut cmdline = [0u8; MAX_CMDLINE];
        cmdline.copy_from_slice(r.bytes(MAX_CMDLINE));
        if tsc_khz == 0 {
            return Err(BootInfoError::BadField("tsc_khz"));
        }
        Ok(BootInfo {
            tsc_khz,
            flavour,
            host_flavour,
            config,
            ram_size,
            usable,
            usable_count,
            initrd,
            kernel,
            vif_page,
            cmdline,
            cmdline_len,
        })
    }
}

/// Writes fields in order; the buffer is sized by `ENCODED_SIZE`, so no write can run past it.
struct Writer<'a> {
    buf: &'a mut [u8; ENCODED_SIZE],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// Reads fields in order from a slice already checked to be `ENCODED_SIZE` long.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        b
    }
    fn u32(&mut self) -> u32 {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.bytes(4));
        u32::from_le_bytes(a)
    }
    fn u64(&mut self) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8));
        u64::from_le_bytes(a)
    }
    fn range(&mut self, name: &'static str) -> Result<PhysRange, BootInfoError> {
        let start = self.u64();
        let end = self.u64();
        if start > end {
            return Err(BootInfoError::BadField(name));
        }
        Ok(PhysRange { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> BootInfo {
        let mut bi = BootInfo::new(
            2_596_138,
            KvmFlavour::Pvm,
            KernelConfig::Monolithic,
            256 << 20,
        );
        bi.initrd = PhysRange {
            start: 0x100_0000,
            end: 0x100_2000,
        };
        bi.kernel = PhysRange {
            start: 0x20_0000,
            end: 0x30_0000,
        };
        bi.vif_page = 0x3000;
        assert!(bi.push_usable(PhysRange {
            start: 0x100_2000,
            end: 256 << 20
        }));
        assert!(bi.set_cmdline(b"selftest"));
        bi
    }

    #[test]
    fn encoding_has_documented_offsets() {
        let b = sample().encode();
        assert_eq!(&b[0..8], b"KMLBOOT1");
        assert_eq!(b[8..12], 2u32.to_le_bytes());
        assert_eq!(b[12..16], (ENCODED_SIZE as u32).to_le_bytes());
        assert_eq!(b[16..24], 2_596_138u64.to_le_bytes());
        assert_eq!(b[24..28], 2u32.to_le_bytes());
        assert_eq!(b[28..32], 1u32.to_le_bytes());
        assert_eq!(b[32..40], (256u64 << 20).to_le_bytes());
        assert_eq!(b[40..48], 0x100_0000u64.to_le_bytes());
        assert_eq!(b[72..80], 0x3000u64.to_le_bytes());
        assert_eq!(b[80..84], 1u32.to_le_bytes());
        assert_eq!(b[84..88], 2u32.to_le_bytes());
        assert_eq!(b[88..96], [0; 8]);
        assert_eq!(b[96..104], 0x100_2000u64.to_le_bytes());
        assert_eq!(b[224..228], 8u32.to_le_bytes());
        assert_eq!(&b[228..236], b"selftest");
        assert!(ENCODED_SIZE <= crate::layout::PAGE_SIZE as usize);
    }

    #[test]
    fn round_trips() {
        let bi = sample();
        let back = BootInfo::decode(&bi.encode()).unwrap();
        assert_eq!(back, bi);
        assert_eq!(back.cmdline_str(), Some("selftest"));
        assert_eq!(back.usable_ranges().len(), 1);
    }

    #[test]
    fn rejects_bad_fields() {
        let good = sample().encode();
        assert_eq!(
            BootInfo::decode(&good[..10]),
            Err(BootInfoError::TooShort(10))
        );
        let mut b = good;
        b[0] ^= 1;
        assert!(matches!(
            BootInfo::decode(&b),
            Err(BootInfoError::BadMagic(_))
        ));
        let mut b = good;
        b[8] = 9;
        assert_eq!(BootInfo::decode(&b), Err(BootInfoError::BadVersion(9)));
        let mut b = good;
        b[24] = 7;
        assert_eq!(
            BootInfo::decode(&b),
            Err(BootInfoError::BadField("flavour"))
        );
        let mut b = good;
        b[84] = 0;
        assert_eq!(
            BootInfo::decode(&b),
            Err(BootInfoError::BadField("host_flavour"))
        );
        let mut b = good;
        b[80] = 200;
        assert_eq!(
            BootInfo::decode(&b),
            Err(BootInfoError::BadField("usable_count"))
        );
        let mut b = good;
        b[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(BootInfo::decode(&b), Err(BootInfoError::BadField("initrd")));
    }

    #[test]
    fn the_hardware_setup_on_pvm_round_trips_and_is_recognised() {
        let mut bi = sample();
        assert!(!bi.hardware_setup_on_pvm());
        bi.flavour = KvmFlavour::Hardware;
        let back = BootInfo::decode(&bi.encode()).unwrap();
        assert_eq!(
            (back.flavour, back.host_flavour),
            (KvmFlavour::Hardware, KvmFlavour::Pvm)
        );
        assert!(back.hardware_setup_on_pvm());
        let native = BootInfo::new(1, KvmFlavour::Hardware, KernelConfig::Monolithic, 64 << 20);
        assert!(!native.hardware_setup_on_pvm());
    }

    #[test]
    fn tables_refuse_overflow() {
        let mut bi = sample();
        for _ in 1..MAX_RANGES {
            assert!(bi.push_usable(PhysRange::default()));
        }
        assert!(!bi.push_usable(PhysRange::default()));
        assert!(!bi.set_cmdline(&[b'x'; MAX_CMDLINE + 1]));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..ENCODED_SIZE + 8)) {
            let _ = BootInfo::decode(&bytes);
        }
    }
}
