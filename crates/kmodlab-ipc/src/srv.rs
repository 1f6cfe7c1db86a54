//! Calls into a module server, the part the kernel speaks (the rest of the server protocol
//! belongs to the manager and the server runtime).

/// Ops of calls into a module server.
pub mod op {
    /// Call one of the server's services: word 0 is the service's index (from
    /// [`crate::mgr::op::SERVICE_LOOKUP`]), word 1 the service's op, word 2 the capacity of
    /// the caller's reply buffer (the handler's `reply_cap`); the payload is the request; the
    /// reply payload is the service's reply and the status its status.
    pub const SERVICE_CALL: u64 = 64;
    /// First op of the server protocol that only the manager and server runtime know.
    pub const FIRST_PRIVATE: u64 = 65;
}

/// A [`op::SERVICE_CALL`]'s words, decoded ([`crate::server::Incoming::decode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCall {
    /// The service's index in the server (word 0).
    pub service: u64,
    /// The service's op (word 1, which must fit 32 bits).
    pub op: u32,
    /// Capacity of the caller's reply buffer (word 2; the server clamps it to its own).
    pub reply_cap: u64,
}
