//! The UTCB (user thread control block): one page per task, at [`crate::layout::UTCB`] in the
//! task's address space, where it writes the message it sends and the kernel writes what it
//! receives. The kernel reaches the page through its frame, so reading a message costs no
//! page-table walk of user memory.
//!
//! The page is an array of [`WORDS`] little-endian `u64` words at fixed indices (below). The
//! task may write anything there at any time; the kernel copies words out once and checks
//! them ([`crate::msg::Message::decode`]) before it acts on them.

/// Words in a UTCB page.
pub const WORDS: usize = 512;

/// `op` of the message to send (call or reply).
pub const OP: usize = 0;
/// First of the [`crate::msg::MSG_WORDS`] message words.
pub const MSG: usize = 1;
/// Send payload: address in the sender's memory, then length.
pub const SEND_ADDR: usize = 7;
/// Send payload length.
pub const SEND_LEN: usize = 8;
/// Reply buffer of a call: address, then capacity.
pub const REPLY_ADDR: usize = 9;
/// Reply buffer capacity.
pub const REPLY_CAP: usize = 10;
/// Number of leases of a call.
pub const LEASE_COUNT: usize = 11;
/// Leases: [`crate::msg::MAX_LEASES`] × (address, length, flags).
pub const LEASES: usize = 12;

/// Receive area (written by the kernel): reply token of the sender, 0 for a notification.
pub const RECV_SENDER: usize = 32;
/// Badge of the capability the sender used.
pub const RECV_BADGE: usize = 33;
/// The message's op.
pub const RECV_OP: usize = 34;
/// The message's words.
pub const RECV_MSG: usize = 35;
/// Payload bytes copied into the receive buffer.
pub const RECV_LEN: usize = 41;
/// Number of leases.
pub const RECV_LEASE_COUNT: usize = 42;
/// Length of each lease.
pub const RECV_LEASE_LEN: usize = 43;
/// Flags of each lease.
pub const RECV_LEASE_FLAGS: usize = 47;
/// Notification bits delivered (with `RECV_SENDER` 0).
pub const RECV_NOTIFY: usize = 51;

/// Reply area (written by the kernel when a call completes): the reply's words.
pub const REPLY_MSG: usize = 56;
/// Reply payload bytes copied into the reply buffer.
pub const REPLY_LEN: usize = 62;
/// 1 if the status came from the kernel (e.g. `-EPIPE`), 0 if from the replier.
pub const REPLY_FROM_KERNEL: usize = 63;

/// Words the kernel reads and writes (its area is `[0, AREA)`); a task may use the rest of
/// the page as it likes.
pub const AREA: usize = 64;

/// The kernel's area of a UTCB, as copied out of (or into) the page.
pub type Area = [u64; AREA];

const _: () = {
    assert!(LEASES + 3 * crate::msg::MAX_LEASES <= RECV_SENDER);
    assert!(RECV_MSG + crate::msg::MSG_WORDS == RECV_LEN);
    assert!(RECV_LEASE_LEN + crate::msg::MAX_LEASES == RECV_LEASE_FLAGS);
    assert!(RECV_LEASE_FLAGS + crate::msg::MAX_LEASES == RECV_NOTIFY);
    assert!(REPLY_MSG + crate::msg::MSG_WORDS == REPLY_LEN);
    assert!(REPLY_FROM_KERNEL < AREA && AREA <= WORDS && WORDS * 8 == 4096);
};
