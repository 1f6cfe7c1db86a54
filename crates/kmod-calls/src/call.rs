//! A call to another server's export, both sides: the stub's [`Descriptor::marshal`] and
//! [`Request::complete`], the server's [`Descriptor::accept`] and [`Accepted::finish`].
//!
//! # The message
//!
//! | part | request (stub → server) | reply (server → stub) |
//! |---|---|---|
//! | op | the runtime's export-call op | — |
//! | status | — | 0: the function ran; `-errno`: refused ([`crate::RequestError`]) |
//! | word *i* | argument *i*: an integer made canonical ([`crate::Int::canonical`]); 0 for a pointer | word 0: the return value, canonical (0 for void); words 1..: each `outlen` argument's final value in argument order ([`OUTLEN_UNSET`] if the function stored none, 0 when null); the rest 0 |
//! | payload | the 16-byte [`RequestHeader`] | none |
//! | leases | one per non-null buffer, in argument order: its address and byte length, read-only (`in`), write-only (`out`) or both (`inout`) | — |
//!
//! The server copies `in`/`inout` leases into buffers of its own before the call and copies
//! `out`/`inout` buffers back into the leases after it, all before it replies; the stub writes
//! the `outlen` values through the caller's pointers when the reply arrives.

use kmodlab_ipc::msg::{Lease, MAX_LEASES, MSG_WORDS, Received};

use crate::error::{DescriptorError, MarshalError, ReplyError, RequestError};
use crate::sig::{Arg, Dir, Export, Extent, Int, MAX_ARGS, Ret, Signature};

/// What an out-length holds when the function is called, and what says "not stored" in the
/// reply: out-lengths are output only. A function that leaves it there (an error path of
/// `kvstore_get`) leaves the caller's variable untouched and its buffer not copied back, as
/// in the monolithic kernel; one that stores `u64::MAX` itself is taken as not storing.
pub const OUTLEN_UNSET: u64 = u64::MAX;

/// Bytes of the [`RequestHeader`], the request's whole payload.
pub const HEADER_LEN: usize = 16;
/// The protocol version a [`RequestHeader`] carries.
pub const VERSION: u8 = 1;

/// How much data one call may move: both sides check (the stub to fail early and cheaply,
/// the server because the client is untrusted and it must allocate copies of the buffers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest buffer, in bytes.
    pub max_buffer: u64,
    /// Largest sum of all buffers of a call.
    pub max_total: u64,
}

impl Limits {
    /// 1 MiB per buffer, 4 MiB per call: more than any export of the module set moves
    /// (kvstore's records are 512 bytes; a ramblk of 8192 blocks is 4 MiB).
    pub const DEFAULT: Limits = Limits {
        max_buffer: 1 << 20,
        max_total: 4 << 20,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// The request's payload: which export, checked against which signature, and which
/// pointer arguments are null.
///
/// ```text
/// bytes 0..8   fingerprint (u64 LE): Export::fingerprint of the signature the stub used
/// bytes 8..12  export index (u32 LE): position in the exporter's signature section
/// byte  12     null mask: bit i set = pointer argument i is null
/// byte  13     version (1)
/// bytes 14..16 reserved, 0
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// [`Export::fingerprint`] of the signature the stub was built from.
    pub fingerprint: u64,
    /// The export's index in the exporting module's table ([`crate::ExportTable`]).
    pub export: u32,
    /// Bit *i*: pointer argument *i* is null (it gets no lease; the function gets null).
    pub null_mask: u8,
}

impl RequestHeader {
    /// The payload bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let (fp, rest) = b.split_at_mut(8);
        fp.copy_from_slice(&self.fingerprint.to_le_bytes());
        let (export, rest) = rest.split_at_mut(4);
        export.copy_from_slice(&self.export.to_le_bytes());
        if let [mask, version, ..] = rest {
            *mask = self.null_mask;
            *version = VERSION;
        }
        b
    }

    /// Reads a request payload (untrusted: any bytes give `Ok` or an error).
    pub fn decode(payload: &[u8]) -> Result<RequestHeader, RequestError> {
        let b: &[u8; HEADER_LEN] = payload.try_into().map_err(|_| RequestError::HeaderLength {
            len: payload.len() as u64,
            expected: HEADER_LEN,
        })?;
        let [
            f0,
            f1,
            f2,
            f3,
            f4,
            f5,
            f6,
            f7,
            e0,
            e1,
            e2,
            e3,
            null_mask,
            version,
            r0,
            r1,
        ] = *b;
        let reserved = u16::from_le_bytes([r0, r1]);
        if version != VERSION || reserved != 0 {
            return Err(RequestError::Version { version, reserved });
        }
        Ok(RequestHeader {
            fingerprint: u64::from_le_bytes([f0, f1, f2, f3, f4, f5, f6, f7]),
            export: u32::from_le_bytes([e0, e1, e2, e3]),
            null_mask,
        })
    }
}

/// Everything either side needs to know about one export: its index, its signature and the
/// signature's fingerprint. The manager builds one per import of a client (for its stub)
/// and per export of a server (for the server runtime's table), from the exporter's
/// [`crate::ExportTable`], and hands them over as [`Descriptor::to_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Descriptor {
    /// Index of the export in its module's table.
    pub export: u32,
    /// [`Export::fingerprint`].
    pub fingerprint: u64,
    /// The signature.
    pub sig: Signature,
}

const KIND_IN: u8 = 16;
const KIND_OUT: u8 = 17;
const KIND_INOUT: u8 = 18;
const KIND_OUTLEN: u8 = 24;
const FIXED: u8 = 0xff;

/// Where argument `i`'s 8 bytes start in a descriptor.
fn arg_at(i: usize) -> usize {
    i.saturating_mul(8).saturating_add(16)
}

impl Descriptor {
    /// Bytes of [`Descriptor::to_bytes`].
    pub const LEN: usize = 64;

    /// The descriptor of export `index` of a table.
    pub fn new(index: u32, export: &Export<'_>) -> Descriptor {
        Descriptor {
            export: index,
            fingerprint: export.fingerprint(),
            sig: export.sig,
        }
    }

    /// A fixed-size, position-independent encoding (for a stub page or the server
    /// runtime's export table):
    ///
    /// ```text
    /// bytes 0..8    fingerprint (u64 LE)
    /// bytes 8..12   export index (u32 LE)
    /// byte  12      argument count (0..=6)
    /// byte  13      return type: 0 void, 1..=8 u8 u16 u32 u64 i8 i16 i32 i64
    /// bytes 14..16  0
    /// bytes 16+8i.. argument i: kind (1..=8 integer as above, 16 in, 17 out, 18 inout,
    ///               24 outlen), position (count argument, outlen's buffer; 0xff: fixed
    ///               size; 0 for an integer), 0, 0, size (u32 LE: element or fixed size;
    ///               0 for an integer or outlen); all 0 past the count
    /// ```
    pub fn to_bytes(&self) -> [u8; Descriptor::LEN] {
        let mut b = [0u8; Descriptor::LEN];
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(dst) = b.get_mut(at..at.saturating_add(bytes.len())) {
                dst.copy_from_slice(bytes);
            }
        };
        put(0, &self.fingerprint.to_le_bytes());
        put(8, &self.export.to_le_bytes());
        let args = self.sig.args();
        put(12, &[args.len() as u8, self.sig.ret().code()]);
        for (i, a) in args.iter().enumerate() {
            let (kind, pos, size) = match *a {
                Arg::Int(t) => (t.code(), 0, 0),
                Arg::Buffer { dir, extent } => {
                    let kind = match dir {
                        Dir::In => KIND_IN,
                        Dir::Out => KIND_OUT,
                        Dir::InOut => KIND_INOUT,
                    };
                    match extent {
                        Extent::Count { arg, elem } => (kind, arg, elem),
                        Extent::Fixed { bytes } => (kind, FIXED, bytes),
                    }
                }
                Arg::OutLen { buffer } => (KIND_OUTLEN, buffer, 0),
            };
            put(arg_at(i), &[kind, pos, 0, 0]);
            put(arg_at(i).saturating_add(4), &size.to_le_bytes());
        }
        b
    }

    /// Reads [`Descriptor::to_bytes`] back, checking every byte and the signature's rules
    /// (any bytes give `Ok` or an error).
    pub fn from_bytes(bytes: &[u8]) -> Result<Descriptor, DescriptorError> {
        let b: &[u8; Descriptor::LEN] = bytes
            .try_into()
            .map_err(|_| DescriptorError::Length { len: bytes.len() })?;
        let byte = |at: usize| b.get(at).copied().unwrap_or(0);
        let bad = |at: usize| DescriptorError::BadByte {
            at,
            value: byte(at),
        };
        let u32_at = |at: usize| {
            u32::from_le_bytes([
                byte(at),
                byte(at.saturating_add(1)),
                byte(at.saturating_add(2)),
                byte(at.saturating_add(3)),
            ])
        };
        let fingerprint = u64::from(u32_at(0)) | (u64::from(u32_at(4)) << 32);
        let export = u32_at(8);
        let argc = usize::from(byte(12));
        if argc > MAX_ARGS {
            return Err(bad(12));
        }
        let ret = Ret::from_code(byte(13)).ok_or_else(|| bad(13))?;
        for at in [14, 15] {
            if byte(at) != 0 {
                return Err(bad(at));
            }
        }
        let mut args = [Arg::Int(Int::U64); MAX_ARGS];
        for (i, slot) in args.iter_mut().enumerate() {
            let at = arg_at(i);
            let (kind, pos, size) = (
                byte(at),
                byte(at.saturating_add(1)),
                u32_at(at.saturating_add(4)),
            );
            for pad in [at.saturating_add(2), at.saturating_add(3)] {
                if byte(pad) != 0 {
                    return Err(bad(pad));
                }
            }
            if i >= argc {
                if kind != 0 || pos != 0 || size != 0 {
                    return Err(bad(at));
                }
                continue;
            }
            *slot = match kind {
                KIND_IN | KIND_OUT | KIND_INOUT => {
                    let dir = match kind {
                        KIND_IN => Dir::In,
                        KIND_OUT => Dir::Out,
                        _ => Dir::InOut,
                    };
                    let extent = if pos == FIXED {
                        Extent::Fixed { bytes: size }
                    } else {
                        Extent::Count {
                            arg: pos,
                            elem: size,
                        }
                    };
                    Arg::Buffer { dir, extent }
                }
                KIND_OUTLEN if size == 0 => Arg::OutLen { buffer: pos },
                k => match Int::from_code(k) {
                    Some(t) if pos == 0 && size == 0 => Arg::Int(t),
                    _ => return Err(bad(at)),
                },
            };
        }
        let sig = Signature::new(args.get(..argc).unwrap_or(&[]), ret)
            .map_err(DescriptorError::Invalid)?;
        Ok(Descriptor {
            export,
            fingerprint,
            sig,
        })
    }

    /// What a stub returns to the calling module when the call could not be made (the
    /// server is dead, the call would deadlock, a limit, a refusal): `-errno` for a signed
    /// return type (Linux's convention for every `i32` export of the module set; -1 if
    /// `-errno` does not fit the type), 0 for an unsigned or void one, which cannot say it
    /// failed. The runtime should log the failure too.
    pub fn failure_return(&self, errno: u64) -> u64 {
        match self.sig.ret() {
            Ret::Int(t) if t.signed() => {
                let negated = 0u64.wrapping_sub(errno);
                if t.is_canonical(negated) && errno != 0 {
                    negated
                } else {
                    t.canonical(u64::MAX)
                }
            }
            Ret::Int(_) | Ret::Void => 0,
        }
    }

    /// The byte length of buffer argument `arg` given the (canonical) `words`, or `None`
    /// when its count is negative; saturates at `u64::MAX`.
    fn buffer_len(&self, extent: Extent, words: &[u64; MSG_WORDS]) -> Option<u64> {
        match extent {
            Extent::Fixed { bytes } => Some(u64::from(bytes)),
            Extent::Count { arg: count, elem } => {
                let count = usize::from(count);
                let ty = match self.sig.args().get(count) {
                    Some(Arg::Int(t)) => *t,
                    // Signature::new guarantees an integer count argument.
                    _ => return Some(u64::MAX),
                };
                let n = ty.as_count(words.get(count).copied().unwrap_or(0))?;
                Some(n.saturating_mul(u64::from(elem)))
            }
        }
    }

    /// The stub's side: turns the caller's argument registers (`rdi, rsi, rdx, rcx, r8, r9`)
    /// into the request. Reads no memory: buffers become leases on the caller's pointers.
    ///
    /// Refuses ([`MarshalError`]) a buffer or call over `limits`, a negative count of a
    /// non-null buffer, a buffer that wraps around, and overlapping buffers one of which is
    /// written.
    pub fn marshal(
        &self,
        regs: &[u64; MSG_WORDS],
        limits: &Limits,
    ) -> Result<Request, MarshalError> {
        let args = self.sig.args();
        let mut words = [0u64; MSG_WORDS];
        for (i, a) in args.iter().enumerate() {
            if let (Arg::Int(t), Some(w), Some(r)) = (a, words.get_mut(i), regs.get(i)) {
                *w = t.canonical(*r);
            }
        }
        let mut null_mask = 0u8;
        let mut leases = [Lease::default(); MAX_LEASES];
        let mut lease_count = 0usize;
        let mut outlen_ptrs = [0u64; MSG_WORDS];
        // (start, end, written, argument) of every non-empty pointed-to range.
        let mut ranges = [(0u64, 0u64, false, 0usize); MAX_ARGS];
        let mut range_count = 0usize;
        let mut total = 0u64;
        for (i, a) in args.iter().enumerate() {
            let addr = regs.get(i).copied().unwrap_or(0);
            if !a.is_pointer() {
                continue;
            }
            if addr == 0 {
                null_mask |= 1 << i;
                continue;
            }
            let (len, written) = match *a {
                Arg::Int(_) => continue,
                Arg::Buffer { dir, extent } => {
                    let len =
                        self.buffer_len(extent, &words)
                            .ok_or(MarshalError::NegativeCount {
                                arg: i,
                                count: match extent {
                                    Extent::Count { arg, .. } => usize::from(arg),
                                    Extent::Fixed { .. } => i,
                                },
                            })?;
                    check_limits(i, len, &mut total, limits)?;
                    if let Some(l) = leases.get_mut(lease_count) {
                        *l = Lease {
                            addr,
                            len,
                            flags: dir.lease_flags(),
                        };
                    }
                    lease_count = lease_count.saturating_add(1);
                    (len, dir.writes())
                }
                Arg::OutLen { .. } => {
                    if let Some(p) = outlen_ptrs.get_mut(i) {
                        *p = addr;
                    }
                    (8, true)
                }
            };
            let end = addr
                .checked_add(len)
                .ok_or(MarshalError::BadAddress { arg: i, addr })?;
            if len > 0 {
                if let Some(r) = ranges.get_mut(range_count) {
                    *r = (addr, end, written, i);
                }
                range_count = range_count.saturating_add(1);
            }
        }
        let ranges = ranges.get(..range_count).unwrap_or(&[]);
        for (k, &(s1, e1, w1, a1)) in ranges.iter().enumerate() {
            for &(s2, e2, w2, a2) in ranges.iter().skip(k.saturating_add(1)) {
                if (w1 || w2) && s1 < e2 && s2 < e1 {
                    return Err(MarshalError::Overlap {
                        first: a1,
                        second: a2,
                    });
                }
            }
        }
        Ok(Request {
            words,
            header: RequestHeader {
                fingerprint: self.fingerprint,
                export: self.export,
                null_mask,
            }
            .encode(),
            leases,
            lease_count,
            outlen_ptrs,
            sig: self.sig,
        })
    }

    /// The server's side: checks a received request against this (the server's own)
    /// descriptor, trusting nothing the client sent: the header's export and fingerprint,
    /// every word (canonical integers, zeros elsewhere), the null mask, and one lease per
    /// non-null buffer with exactly its direction's rights and the length the words give,
    /// within `limits`. `header` is [`RequestHeader::decode`] of the payload, which also
    /// told the runtime which descriptor to use.
    pub fn accept(
        &self,
        header: &RequestHeader,
        received: &Received,
        limits: &Limits,
    ) -> Result<Accepted, RequestError> {
        if header.export != self.export {
            return Err(RequestError::WrongExport {
                expected: self.export,
                got: header.export,
            });
        }
        if header.fingerprint != self.fingerprint {
            return Err(RequestError::Fingerprint {
                expected: self.fingerprint,
                got: header.fingerprint,
            });
        }
        let args = self.sig.args();
        let pointers = args
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_pointer())
            .fold(0u8, |m, (i, _)| m | (1 << i));
        if header.null_mask & !pointers != 0 {
            return Err(RequestError::NullMask {
                mask: header.null_mask,
            });
        }
        let words = &received.words;
        for (index, &word) in words.iter().enumerate().skip(args.len()) {
            if word != 0 {
                return Err(RequestError::UnexpectedWord { index, word });
            }
        }
        for (arg, (a, &word)) in args.iter().zip(words).enumerate() {
            if let Arg::Int(t) = a
                && !t.is_canonical(word)
            {
                return Err(RequestError::NonCanonical {
                    arg,
                    word,
                    ty: t.name(),
                });
            }
        }
        let mut slots = [Slot::Scalar(0); MAX_ARGS];
        let mut lease = 0usize;
        let mut total = 0u64;
        for (i, (a, &word)) in args.iter().zip(words).enumerate() {
            let null = header.null_mask & (1 << i) != 0;
            let slot = match *a {
                Arg::Int(_) => Slot::Scalar(word),
                Arg::Buffer { .. } | Arg::OutLen { .. } if null => {
                    if word != 0 {
                        return Err(RequestError::UnexpectedWord { index: i, word });
                    }
                    Slot::Null
                }
                Arg::OutLen { .. } => {
                    if word != 0 {
                        return Err(RequestError::UnexpectedWord { index: i, word });
                    }
                    Slot::OutLen
                }
                Arg::Buffer { dir, extent } => {
                    if word != 0 {
                        return Err(RequestError::UnexpectedWord { index: i, word });
                    }
                    let len = self.buffer_len(extent, words).ok_or(RequestError::Limits(
                        MarshalError::NegativeCount {
                            arg: i,
                            count: match extent {
                                Extent::Count { arg, .. } => usize::from(arg),
                                Extent::Fixed { .. } => i,
                            },
                        },
                    ))?;
                    check_limits(i, len, &mut total, limits).map_err(RequestError::Limits)?;
                    let (got_len, got_flags) = if (lease as u64) < received.lease_count {
                        (
                            received.lease_len.get(lease).copied().unwrap_or(0),
                            received.lease_flags.get(lease).copied().unwrap_or(0),
                        )
                    } else {
                        return Err(RequestError::LeaseCount {
                            expected: lease.saturating_add(1),
                            got: received.lease_count,
                        });
                    };
                    if got_flags != dir.lease_flags() {
                        return Err(RequestError::LeaseFlags {
                            arg: i,
                            lease,
                            expected: dir.lease_flags(),
                            got: got_flags,
                        });
                    }
                    if got_len != len {
                        return Err(RequestError::LeaseLength {
                            arg: i,
                            lease,
                            expected: len,
                            got: got_len,
                        });
                    }
                    let s = Slot::Buffer(BufferSlot {
                        lease: lease as u8,
                        len,
                        dir,
                    });
                    lease = lease.saturating_add(1);
                    s
                }
            };
            if let Some(s) = slots.get_mut(i) {
                *s = slot;
            }
        }
        if received.lease_count != lease as u64 {
            return Err(RequestError::LeaseCount {
                expected: lease,
                got: received.lease_count,
            });
        }
        Ok(Accepted {
            sig: self.sig,
            slots,
        })
    }
}

fn check_limits(
    arg: usize,
    len: u64,
    total: &mut u64,
    limits: &Limits,
) -> Result<(), MarshalError> {
    if len > limits.max_buffer {
        return Err(MarshalError::BufferTooLarge {
            arg,
            len,
            max: limits.max_buffer,
        });
    }
    *total = total.saturating_add(len);
    if *total > limits.max_total {
        return Err(MarshalError::TotalTooLarge {
            total: *total,
            max: limits.max_total,
        });
    }
    Ok(())
}

/// A request ready to send: what the stub writes into its UTCB
/// (`kmodlab_ipc::msg::Message`: `words`, the payload [`Request::header`], the leases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The message words.
    pub words: [u64; MSG_WORDS],
    /// The payload.
    pub header: [u8; HEADER_LEN],
    leases: [Lease; MAX_LEASES],
    lease_count: usize,
    outlen_ptrs: [u64; MSG_WORDS],
    sig: Signature,
}

impl Request {
    /// The leases, in order (their addresses are the caller's pointers: nothing is copied
    /// on the caller's side).
    pub fn leases(&self) -> &[Lease] {
        self.leases.get(..self.lease_count).unwrap_or(&[])
    }

    /// The stub's side of a successful reply (status 0): checks the reply words and says
    /// what to return and which `outlen` values to store through the caller's pointers.
    pub fn complete(&self, reply: &[u64; MSG_WORDS]) -> Result<Completed, ReplyError> {
        let ret = self.sig.ret();
        let word = reply.first().copied().unwrap_or(0);
        if ret.canonical(word) != word {
            return Err(ReplyError::NonCanonicalReturn {
                word,
                ty: match ret {
                    Ret::Void => "void (0)",
                    Ret::Int(t) => t.name(),
                },
            });
        }
        let mut done = Completed {
            ret: word,
            writes: [OutLenWrite::default(); 3],
            count: 0,
        };
        let mut next = 1usize;
        for (i, a) in self.sig.args().iter().enumerate() {
            if !matches!(a, Arg::OutLen { .. }) {
                continue;
            }
            let value = reply.get(next).copied().unwrap_or(0);
            let addr = self.outlen_ptrs.get(i).copied().unwrap_or(0);
            if addr == 0 {
                if value != 0 {
                    return Err(ReplyError::UnexpectedWord {
                        index: next,
                        word: value,
                    });
                }
            } else if value == OUTLEN_UNSET {
                // The function did not store a length: the caller's variable stays as it was.
            } else if let Some(w) = done.writes.get_mut(done.count) {
                *w = OutLenWrite { addr, value };
                done.count = done.count.saturating_add(1);
            }
            next = next.saturating_add(1);
        }
        for (index, &word) in reply.iter().enumerate().skip(next) {
            if word != 0 {
                return Err(ReplyError::UnexpectedWord { index, word });
            }
        }
        Ok(done)
    }
}

/// A value the stub stores through an `outlen` pointer of the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutLenWrite {
    /// The caller's pointer.
    pub addr: u64,
    /// The `u64` to store there.
    pub value: u64,
}

/// What a completed call gives the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed {
    /// The value for `rax`.
    pub ret: u64,
    // At most three: each outlen needs its own out buffer among six arguments.
    writes: [OutLenWrite; 3],
    count: usize,
}

impl Completed {
    /// The `outlen` values to store, in argument order.
    pub fn outlen_writes(&self) -> &[OutLenWrite] {
        self.writes.get(..self.count).unwrap_or(&[])
    }
}

/// A buffer argument of an accepted call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSlot {
    /// Its lease's index.
    pub lease: u8,
    /// Its length in bytes (the lease's, already checked).
    pub len: u64,
    /// Its direction: read the lease into the local copy first if [`Dir::reads`].
    pub dir: Dir,
}

/// What the server runtime prepares for one argument before the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// An integer: this register value.
    Scalar(u64),
    /// A null pointer: the function gets 0.
    Null,
    /// A buffer: allocate `len` zeroed bytes (any non-null address if 0), fill them from
    /// the lease if it is read, pass their address.
    Buffer(BufferSlot),
    /// An out-length: a local `u64` holding [`OUTLEN_UNSET`], whose address the function
    /// gets.
    OutLen,
}

/// A request the server checked: how to set up the call ([`Accepted::slots`],
/// [`Accepted::registers`]) and how to answer it ([`Accepted::finish`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    sig: Signature,
    slots: [Slot; MAX_ARGS],
}

impl Accepted {
    /// One slot per argument.
    pub fn slots(&self) -> &[Slot] {
        self.slots.get(..self.sig.args().len()).unwrap_or(&[])
    }

    /// The function's argument registers: integers as received, null pointers 0, and for
    /// every buffer and out-length `local[i]`, the address of the server's copy.
    pub fn registers(&self, local: &[u64; MAX_ARGS]) -> [u64; MAX_ARGS] {
        let mut regs = [0u64; MAX_ARGS];
        for (i, (r, s)) in regs.iter_mut().zip(self.slots()).enumerate() {
            *r = match *s {
                Slot::Scalar(w) => w,
                Slot::Null => 0,
                Slot::Buffer(_) | Slot::OutLen => local.get(i).copied().unwrap_or(0),
            };
        }
        regs
    }

    /// After the function returned `rax`, with `cells[i]` the final value of each
    /// out-length's local `u64`: the reply words and the buffers to copy back into their
    /// write leases. An `out` buffer with a non-null out-length goes back up to that many
    /// units (clamped to its length; nothing if the function left [`OUTLEN_UNSET`]), any
    /// other written buffer whole (bytes the function did not write go back as the zeros
    /// the server allocated).
    pub fn finish(&self, rax: u64, cells: &[u64; MAX_ARGS]) -> Finished {
        let mut words = [0u64; MSG_WORDS];
        if let Some(w) = words.first_mut() {
            *w = self.sig.ret().canonical(rax);
        }
        let mut next = 1usize;
        let args = self.sig.args();
        for (i, (a, s)) in args.iter().zip(self.slots()).enumerate() {
            if let Arg::OutLen { .. } = a {
                if let Some(w) = words.get_mut(next) {
                    *w = match s {
                        Slot::OutLen => cells.get(i).copied().unwrap_or(OUTLEN_UNSET),
                        _ => 0,
                    };
                }
                next = next.saturating_add(1);
            }
        }
        let mut copy_back = [CopyBack::default(); MAX_LEASES];
        let mut count = 0usize;
        for (i, (a, s)) in args.iter().zip(self.slots()).enumerate() {
            let (Arg::Buffer { extent, .. }, Slot::Buffer(b)) = (a, s) else {
                continue;
            };
            if !b.dir.writes() {
                continue;
            }
            let filled = match (b.dir, self.sig.outlen_of(i)) {
                (Dir::Out, Some(j)) => match (self.slots.get(j), cells.get(j).copied()) {
                    (Some(Slot::OutLen), Some(OUTLEN_UNSET) | None) => 0,
                    (Some(Slot::OutLen), Some(n)) => {
                        n.saturating_mul(u64::from(extent.unit())).min(b.len)
                    }
                    _ => b.len,
                },
                _ => b.len,
            };
            if let Some(c) = copy_back.get_mut(count) {
                *c = CopyBack {
                    arg: i as u8,
                    lease: b.lease,
                    len: filled,
                };
                count = count.saturating_add(1);
            }
        }
        Finished {
            words,
            copy_back,
            count,
        }
    }
}

/// Bytes to copy from a local buffer into its write lease, from offset 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyBack {
    /// The buffer argument.
    pub arg: u8,
    /// Its lease.
    pub lease: u8,
    /// How many bytes.
    pub len: u64,
}

/// How to answer a call that ran: copy [`Finished::copy_backs`], then reply status 0 with
/// [`Finished::words`] and no payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The reply words.
    pub words: [u64; MSG_WORDS],
    copy_back: [CopyBack; MAX_LEASES],
    count: usize,
}

impl Finished {
    /// The buffers to copy back, in argument order.
    pub fn copy_backs(&self) -> &[CopyBack] {
        self.copy_back.get(..self.count).unwrap_or(&[])
    }
}
