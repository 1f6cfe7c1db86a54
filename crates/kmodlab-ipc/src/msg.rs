//! Messages: what a UTCB describes, decoded and checked.

use crate::utcb;

/// Machine words a message carries besides its op.
pub const MSG_WORDS: usize = 6;
/// Leases one call may carry.
pub const MAX_LEASES: usize = 4;
/// Largest payload the kernel copies (send or reply); larger data goes by lease.
pub const MAX_PAYLOAD: u64 = 64 * 1024;
/// Largest lease (the kernel copies lease data in bounded chunks, whatever the size).
pub const MAX_LEASE: u64 = 64 * 1024 * 1024;

/// A lease may be read by the receiver.
pub const LEASE_READ: u64 = 1 << 0;
/// A lease may be written by the receiver.
pub const LEASE_WRITE: u64 = 1 << 1;

/// A window on the caller's memory, lent to the receiver for the duration of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lease {
    /// Start, in the caller's address space.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// [`LEASE_READ`] and/or [`LEASE_WRITE`].
    pub flags: u64,
}

/// A user-memory range `(addr, len)` named by a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Buffer {
    /// Start, in the sender's address space.
    pub addr: u64,
    /// Length (or capacity) in bytes.
    pub len: u64,
}

/// A message as a task's UTCB describes it, checked for form (the kernel still checks that
/// every range lies in the sender's mapped memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Message {
    /// What is asked (protocol-defined).
    pub op: u64,
    /// Inline words.
    pub words: [u64; MSG_WORDS],
    /// Payload to copy to the receiver (length 0: none).
    pub send: Buffer,
    /// Where a reply payload may land (capacity 0: nowhere).
    pub reply: Buffer,
    /// Number of valid entries in `leases`.
    pub lease_count: usize,
    /// The leases.
    pub leases: [Lease; MAX_LEASES],
}

/// Why a UTCB does not describe a valid message (the sender is at fault: `-EINVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgError {
    /// More payload than [`MAX_PAYLOAD`].
    PayloadTooLarge(u64),
    /// A reply buffer larger than [`MAX_PAYLOAD`].
    ReplyBufferTooLarge(u64),
    /// More leases than [`MAX_LEASES`].
    TooManyLeases(u64),
    /// A lease with no rights, unknown flag bits, or longer than [`MAX_LEASE`].
    BadLease(usize),
    /// A range whose end overflows.
    Overflow,
}

impl core::fmt::Display for MsgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MsgError::PayloadTooLarge(n) => {
                write!(f, "payload of {n} bytes exceeds {MAX_PAYLOAD}")
            }
            MsgError::ReplyBufferTooLarge(n) => {
                write!(f, "reply buffer of {n} bytes exceeds {MAX_PAYLOAD}")
            }
            MsgError::TooManyLeases(n) => write!(f, "{n} leases, at most {MAX_LEASES}"),
            MsgError::BadLease(i) => write!(f, "lease {i} has bad flags or length"),
            MsgError::Overflow => write!(f, "a buffer's end overflows"),
        }
    }
}

fn checked(addr: u64, len: u64) -> Result<Buffer, MsgError> {
    addr.checked_add(len).ok_or(MsgError::Overflow)?;
    Ok(Buffer { addr, len })
}

impl Message {
    /// A message with `op` and `words`, nothing else.
    pub const fn new(op: u64, words: [u64; MSG_WORDS]) -> Message {
        Message {
            op,
            words,
            send: Buffer { addr: 0, len: 0 },
            reply: Buffer { addr: 0, len: 0 },
            lease_count: 0,
            leases: [Lease {
                addr: 0,
                len: 0,
                flags: 0,
            }; MAX_LEASES],
        }
    }

    /// The leases in use.
    pub fn leases(&self) -> &[Lease] {
        self.leases.get(..self.lease_count).unwrap_or(&[])
    }

    /// Reads and checks the message a task wrote into its UTCB (`words` is a copy of it).
    pub fn decode(words: &utcb::Area) -> Result<Message, MsgError> {
        let w = |i: usize| words.get(i).copied().unwrap_or(0);
        let send = checked(w(utcb::SEND_ADDR), w(utcb::SEND_LEN))?;
        if send.len > MAX_PAYLOAD {
            return Err(MsgError::PayloadTooLarge(send.len));
        }
        let reply = checked(w(utcb::REPLY_ADDR), w(utcb::REPLY_CAP))?;
        if reply.len > MAX_PAYLOAD {
            return Err(MsgError::ReplyBufferTooLarge(reply.len));
        }
        let count = w(utcb::LEASE_COUNT);
        if count > MAX_LEASES as u64 {
            return Err(MsgError::TooManyLeases(count));
        }
        let mut leases = [Lease::default(); MAX_LEASES];
        for (i, lease) in leases.iter_mut().enumerate().take(count as usize) {
            let base = utcb::LEASES + 3 * i;
            let (addr, len, flags) = (w(base), w(base + 1), w(base + 2));
            let known = LEASE_READ | LEASE_WRITE;
            if flags & known == 0 || flags & !known != 0 || len > MAX_LEASE {
                return Err(MsgError::BadLease(i));
            }
            checked(addr, len)?;
            *lease = Lease { addr, len, flags };
        }
        let mut msg = [0u64; MSG_WORDS];
        for (i, m) in msg.iter_mut().enumerate() {
            *m = w(utcb::MSG + i);
        }
        Ok(Message {
            op: w(utcb::OP),
            words: msg,
            send,
            reply,
            lease_count: count as usize,
            leases,
        })
    }

    /// Writes the message into a UTCB (what a task does before `call` or `reply`).
    pub fn encode(&self, words: &mut utcb::Area) {
        let mut set = |i: usize, v: u64| {
            if let Some(slot) = words.get_mut(i) {
                *slot = v;
            }
        };
        set(utcb::OP, self.op);
        for (i, v) in self.words.iter().enumerate() {
            set(utcb::MSG + i, *v);
        }
        set(utcb::SEND_ADDR, self.send.addr);
        set(utcb::SEND_LEN, self.send.len);
        set(utcb::REPLY_ADDR, self.reply.addr);
        set(utcb::REPLY_CAP, self.reply.len);
        set(utcb::LEASE_COUNT, self.lease_count as u64);
        for (i, l) in self.leases().iter().enumerate() {
            let base = utcb::LEASES + 3 * i;
            set(base, l.addr);
            set(base + 1, l.len);
            set(base + 2, l.flags);
        }
    }
}

/// What a `recv` delivered, as the kernel writes it into the receiver's UTCB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Received {
    /// Reply token of the sender (0 for a notification).
    pub sender: u64,
    /// Badge of the capability the sender used.
    pub badge: u64,
    /// Op.
    pub op: u64,
    /// Words.
    pub words: [u64; MSG_WORDS],
    /// Payload bytes copied into the receive buffer.
    pub len: u64,
    /// Leases: count, and each one's length and flags (their addresses stay the sender's).
    pub lease_count: u64,
    /// Length of each lease.
    pub lease_len: [u64; MAX_LEASES],
    /// Flags of each lease.
    pub lease_flags: [u64; MAX_LEASES],
    /// Notification bits (when `sender` is 0).
    pub notifications: u64,
}

impl Received {
    /// Writes the receive area (the kernel's side).
    pub fn encode(&self, words: &mut utcb::Area) {
        let mut set = |i: usize, v: u64| {
            if let Some(slot) = words.get_mut(i) {
                *slot = v;
            }
        };
        set(utcb::RECV_SENDER, self.sender);
        set(utcb::RECV_BADGE, self.badge);
        set(utcb::RECV_OP, self.op);
        for (i, v) in self.words.iter().enumerate() {
            set(utcb::RECV_MSG + i, *v);
        }
        set(utcb::RECV_LEN, self.len);
        set(utcb::RECV_LEASE_COUNT, self.lease_count);
        for i in 0..MAX_LEASES {
            set(utcb::RECV_LEASE_LEN + i, self.lease_len[i]);
            set(utcb::RECV_LEASE_FLAGS + i, self.lease_flags[i]);
        }
        set(utcb::RECV_NOTIFY, self.notifications);
    }

    /// Reads the receive area (the task's side; the kernel wrote it, so no checks beyond
    /// clamping the lease count).
    pub fn decode(words: &utcb::Area) -> Received {
        let w = |i: usize| words.get(i).copied().unwrap_or(0);
        let mut r = Received {
            sender: w(utcb::RECV_SENDER),
            badge: w(utcb::RECV_BADGE),
            op: w(utcb::RECV_OP),
            len: w(utcb::RECV_LEN),
            lease_count: w(utcb::RECV_LEASE_COUNT).min(MAX_LEASES as u64),
            notifications: w(utcb::RECV_NOTIFY),
            ..Received::default()
        };
        for i in 0..MSG_WORDS {
            r.words[i] = w(utcb::RECV_MSG + i);
        }
        for i in 0..MAX_LEASES {
            r.lease_len[i] = w(utcb::RECV_LEASE_LEN + i);
            r.lease_flags[i] = w(utcb::RECV_LEASE_FLAGS + i);
        }
        r
    }
}

/// What a completed call got back, in the caller's UTCB reply area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyInfo {
    /// The reply's words.
    pub words: [u64; MSG_WORDS],
    /// Payload bytes copied into the reply buffer.
    pub len: u64,
    /// Whether the status came from the kernel rather than the replier.
    pub from_kernel: bool,
}

impl ReplyInfo {
    /// Writes the reply area (the kernel's side).
    pub fn encode(&self, words: &mut utcb::Area) {
        for (i, v) in self.words.iter().enumerate() {
            if let Some(slot) = words.get_mut(utcb::REPLY_MSG + i) {
                *slot = *v;
            }
        }
        if let Some(slot) = words.get_mut(utcb::REPLY_LEN) {
            *slot = self.len;
        }
        if let Some(slot) = words.get_mut(utcb::REPLY_FROM_KERNEL) {
            *slot = u64::from(self.from_kernel);
        }
    }

    /// Reads the reply area.
    pub fn decode(words: &utcb::Area) -> ReplyInfo {
        let w = |i: usize| words.get(i).copied().unwrap_or(0);
        let mut r = ReplyInfo {
            len: w(utcb::REPLY_LEN),
            from_kernel: w(utcb::REPLY_FROM_KERNEL) != 0,
            ..ReplyInfo::default()
        };
        for i in 0..MSG_WORDS {
            r.words[i] = w(utcb::REPLY_MSG + i);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn page() -> utcb::Area {
        [0; utcb::AREA]
    }

    #[test]
    fn a_message_round_trips_through_the_utcb() {
        let mut m = Message::new(7, [1, 2, 3, 4, 5, 6]);
        m.send = Buffer {
            addr: 0x40_1000,
            len: 64,
        };
        m.reply = Buffer {
            addr: 0x40_2000,
            len: 4096,
        };
        m.lease_count = 2;
        m.leases[0] = Lease {
            addr: 0x50_0000,
            len: 4096,
            flags: LEASE_READ,
        };
        m.leases[1] = Lease {
            addr: 0x60_0000,
            len: 10,
            flags: LEASE_WRITE,
        };
        let mut p = page();
        m.encode(&mut p);
        assert_eq!(p[utcb::OP], 7);
        assert_eq!(p[utcb::MSG..utcb::MSG + 6], [1, 2, 3, 4, 5, 6]);
        assert_eq!(p[utcb::LEASES + 3..utcb::LEASES + 6], [0x60_0000, 10, 2]);
        assert_eq!(Message::decode(&p), Ok(m));
    }

    #[test]
    fn malformed_messages_are_refused() {
        let mut p = page();
        p[utcb::SEND_LEN] = MAX_PAYLOAD + 1;
        assert_eq!(
            Message::decode(&p),
            Err(MsgError::PayloadTooLarge(MAX_PAYLOAD + 1))
        );
        let mut p = page();
        p[utcb::REPLY_CAP] = MAX_PAYLOAD + 1;
        assert_eq!(
            Message::decode(&p),
            Err(MsgError::ReplyBufferTooLarge(MAX_PAYLOAD + 1))
        );
        let mut p = page();
        p[utcb::LEASE_COUNT] = 5;
        assert_eq!(Message::decode(&p), Err(MsgError::TooManyLeases(5)));
        let mut p = page();
        p[utcb::LEASE_COUNT] = 1;
        assert_eq!(Message::decode(&p), Err(MsgError::BadLease(0)));
        p[utcb::LEASES + 2] = LEASE_READ | 8;
        assert_eq!(Message::decode(&p), Err(MsgError::BadLease(0)));
        p[utcb::LEASES + 2] = LEASE_READ;
        p[utcb::LEASES + 1] = MAX_LEASE + 1;
        assert_eq!(Message::decode(&p), Err(MsgError::BadLease(0)));
        p[utcb::LEASES] = u64::MAX;
        p[utcb::LEASES + 1] = 2;
        assert_eq!(Message::decode(&p), Err(MsgError::Overflow));
        let mut p = page();
        p[utcb::SEND_ADDR] = u64::MAX;
        p[utcb::SEND_LEN] = 1;
        assert_eq!(Message::decode(&p), Err(MsgError::Overflow));
    }

    #[test]
    fn receive_and_reply_areas_round_trip() {
        let r = Received {
            sender: 0x1_0000_0003,
            badge: 9,
            op: 4,
            words: [6, 5, 4, 3, 2, 1],
            len: 12,
            lease_count: 1,
            lease_len: [100, 0, 0, 0],
            lease_flags: [LEASE_WRITE, 0, 0, 0],
            notifications: 0,
        };
        let mut p = page();
        r.encode(&mut p);
        assert_eq!(p[utcb::RECV_SENDER], 0x1_0000_0003);
        assert_eq!(Received::decode(&p), r);
        let reply = ReplyInfo {
            words: [1, 0, 0, 0, 0, 9],
            len: 33,
            from_kernel: true,
        };
        reply.encode(&mut p);
        assert_eq!(p[utcb::REPLY_FROM_KERNEL], 1);
        assert_eq!(ReplyInfo::decode(&p), reply);
        // The areas do not overlap what a sender writes.
        assert_eq!(Received::decode(&p), r);
    }

    proptest! {
        #[test]
        fn decoding_any_utcb_never_panics_and_valid_ones_round_trip(
            words in proptest::collection::vec(any::<u64>(), utcb::AREA),
            small in proptest::collection::vec(0u64..8, 24),
        ) {
            let mut p = page();
            p.copy_from_slice(&words);
            let _ = Message::decode(&p);
            let _ = Received::decode(&p);
            let _ = ReplyInfo::decode(&p);
            // Small values in the descriptor fields: mostly valid messages, which must
            // round-trip exactly.
            for (i, v) in small.iter().enumerate() {
                p[utcb::SEND_ADDR + i] = *v;
            }
            if let Ok(m) = Message::decode(&p) {
                let mut q = page();
                m.encode(&mut q);
                prop_assert_eq!(Message::decode(&q), Ok(m));
            }
        }
    }
}
