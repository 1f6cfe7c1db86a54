//! The kmodlab microkernel's IPC contract, shared by the kernel and every user-space task (the
//! module manager, module servers and their runtime, the shell), and tested on the host.
//!
//! The kernel offers a handful of mechanisms, in the style of L4/seL4 and Hubris:
//!
//! - **Tasks**, each with its own address space ([`layout`] fixes where things live in one).
//! - **Endpoints**: every task owns one; others reach it only through a **capability**
//!   ([`cap`]) in their own capability table, which carries a *badge* the receiver sees.
//! - **Synchronous IPC** ([`sys`]): `call` (send, then wait for the reply), `recv`, `reply`,
//!   `reply_recv`. A message is an `op` and [`MSG_WORDS`](msg::MSG_WORDS) machine words, plus
//!   an optional payload the kernel *copies* into the receiver's buffer, plus up to
//!   [`MAX_LEASES`](msg::MAX_LEASES) **leases**: windows on the caller's memory, read-only or
//!   write-only, that the receiver reads or writes only through kernel copy calls while the
//!   call lasts (Hubris's leases). All of it is described in the task's message buffer, the
//!   [`utcb`], which the kernel reads and checks with [`msg::Message::decode`] before use.
//! - **Notifications**: bits posted to an endpoint without blocking (a child's fault, a
//!   request to unload), delivered at the receiver's next `recv`.
//!
//! Every decoder here takes untrusted input (a user-written UTCB, a server's reply) and
//! returns a typed error; none panics (property-tested).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cap;
pub mod layout;
pub mod mgr;
pub mod msg;
pub mod server;
pub mod srv;
pub mod sys;
pub mod task;
pub mod utcb;
