//! The server protocol: what a module server (the server runtime `kmodrt`, running one
//! module) and the module manager say to each other, and the calls one server makes into
//! another.
//!
//! A module server is a task the manager built: the runtime at
//! [`crate::layout::RUNTIME_BASE`], the module at [`crate::layout::MODULE_BASE`], a heap at
//! [`crate::layout::HEAP_BASE`], call stubs at [`crate::layout::STUB_BASE`]. Its supervisor
//! capability ([`crate::cap::SUPERVISOR`]) reaches the manager, badged with the module's id,
//! so every request below names its module by the badge alone.
//!
//! The manager **never waits for a server**: it only receives, answers and posts
//! notifications. A server's life is therefore a sequence of calls *to* the manager:
//!
//! 1. [`op::HELLO`]: the runtime starts and asks for its [`ServerConfig`];
//! 2. it runs the module's `init_module`, calling the manager for services, memory and
//!    `request_module` as the module asks ([`op::SERVICE_REGISTER`], [`op::HEAP_GROW`],
//!    [`op::REQUEST_MODULE`], ...);
//! 3. [`op::INIT_DONE`] with init's status: the manager marks the module LIVE (or undoes
//!    the load) and answers; the runtime then serves calls on its own endpoint
//!    ([`crate::srv::op::SERVICE_CALL`], [`export_call_op`]);
//! 4. on the notification [`crate::cap::notify::EXIT_REQUESTED`] it runs `cleanup_module`
//!    and calls [`op::EXIT_DONE`], which the manager never answers: it destroys the server.
//!
//! Ops `32..=63` go to the manager; calls into a server use [`crate::srv::op::SERVICE_CALL`]
//! and the export-call range from [`EXPORT_CALL_BASE`]. Payloads are postcard, decoded with
//! [`crate::mgr::decode`] (any bytes give `Err`, never a panic).

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// Ops a module server sends to the manager (badge: the module's id).
pub mod op {
    /// The runtime has started: word 0 is the capacity of its reply buffer. Replies status 0
    /// with the [`super::ServerConfig`] as payload, or `-EMSGSIZE` with word 0 the size the
    /// buffer needs (the runtime asks again with a larger one).
    pub const HELLO: u64 = 32;
    /// `init_module` returned: word 0 is its status (an `i32`, sign-extended). Replies status
    /// 0 once the manager has recorded the outcome (LIVE, or the load undone); the init
    /// region is unmapped before the reply, as Linux frees it after init.
    pub const INIT_DONE: u64 = 33;
    /// `cleanup_module` returned: words 0 and 1 are the `kmod_alloc` blocks and bytes the
    /// module did not free. Never answered: the manager destroys the server.
    pub const EXIT_DONE: u64 = 34;
    /// The heap is full: word 0 is how many more bytes the runtime needs. Replies status 0
    /// with word 0 the address the new memory starts at (the old end of the heap) and word 1
    /// its length, or `-ENOMEM`.
    pub const HEAP_GROW: u64 = 35;
    /// `kmod_request_module`: the payload is the module's name. Answered when the module (and
    /// what it depends on) is LIVE, with status 0, or with the request's `-errno`.
    pub const REQUEST_MODULE: u64 = 36;
    /// `kmod_service_register`: the payload is the name. Replies 0 with word 0 the service's
    /// id (unique for the manager's life, never reused), or `-EEXIST`/`-EINVAL`.
    pub const SERVICE_REGISTER: u64 = 37;
    /// `kmod_service_unregister`: the payload is the name. Replies 0 with word 0 the id it
    /// had, or `-ENOENT` if this module has no service of that name.
    pub const SERVICE_UNREGISTER: u64 = 38;
    /// `kmod_service_lookup`: the payload is the name. Replies 0 with word 0 the capability
    /// slot (in the caller) of the owning server's endpoint and word 1 the service's id, or
    /// `-ENOENT`.
    pub const SERVICE_LOOKUP: u64 = 39;
    /// Last op number a server may send to the manager.
    pub const LAST: u64 = 63;
}

/// The first op of calls to another module's exports: export number `i` of the server is
/// called with op `EXPORT_CALL_BASE + i`, which leaves all six message words for arguments.
pub const EXPORT_CALL_BASE: u64 = 0x1_0000;
/// Most exports one server offers (and most imports one server has).
pub const MAX_EXPORTS: u64 = 0x1_0000;

/// The op of a call to export `index`, if the index is in range.
pub const fn export_call_op(index: u64) -> Option<u64> {
    if index < MAX_EXPORTS {
        Some(EXPORT_CALL_BASE + index)
    } else {
        None
    }
}

/// The export index an op calls, if it is an export call.
pub const fn export_index(op: u64) -> Option<u64> {
    if op >= EXPORT_CALL_BASE && op - EXPORT_CALL_BASE < MAX_EXPORTS {
        Some(op - EXPORT_CALL_BASE)
    } else {
        None
    }
}

/// Longest module name a server may ask for ([`op::REQUEST_MODULE`]).
pub const MAX_MODULE_NAME: usize = 64;

/// A module server's request to the manager, decoded from its op, words and payload (the
/// server is untrusted: [`Request::decode`] checks everything it can without the manager's
/// state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// [`op::HELLO`].
    Hello {
        /// Capacity of the runtime's reply buffer.
        reply_cap: u64,
    },
    /// [`op::INIT_DONE`].
    InitDone {
        /// `init_module`'s status (word 0, truncated to the `i32` the runtime sign-extended).
        status: i32,
    },
    /// [`op::EXIT_DONE`].
    ExitDone {
        /// `kmod_alloc` blocks the module did not free.
        blocks: u64,
        /// Bytes of them.
        bytes: u64,
    },
    /// [`op::HEAP_GROW`].
    HeapGrow {
        /// Bytes the runtime needs.
        bytes: u64,
    },
    /// [`op::REQUEST_MODULE`].
    RequestModule {
        /// The module's name: UTF-8, 1 to [`MAX_MODULE_NAME`] bytes.
        name: &'a str,
    },
    /// [`op::SERVICE_REGISTER`].
    ServiceRegister {
        /// The service's name (UTF-8; the registry checks the rest).
        name: &'a str,
    },
    /// [`op::SERVICE_UNREGISTER`].
    ServiceUnregister {
        /// The service's name.
        name: &'a str,
    },
    /// [`op::SERVICE_LOOKUP`].
    ServiceLookup {
        /// The service's name.
        name: &'a str,
    },
}

/// Why a server's request does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Not an op of the server protocol (`ENOSYS`).
    UnknownOp(u64),
    /// A name that is not UTF-8, or (for a module) empty or longer than
    /// [`MAX_MODULE_NAME`] (`EINVAL`).
    BadName,
}

impl core::fmt::Display for RequestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RequestError::UnknownOp(op) => write!(f, "op {op} is not a server request"),
            RequestError::BadName => write!(
                f,
                "the name is not UTF-8, or a module name not 1 to {MAX_MODULE_NAME} bytes"
            ),
        }
    }
}

impl<'a> Request<'a> {
    /// Decodes a request: `op` and `words` as received, `payload` the bytes copied.
    pub fn decode(
        op: u64,
        words: &[u64; crate::msg::MSG_WORDS],
        payload: &'a [u8],
    ) -> Result<Request<'a>, RequestError> {
        let name = || core::str::from_utf8(payload).map_err(|_| RequestError::BadName);
        let [w0, w1, ..] = *words;
        Ok(match op {
            op::HELLO => Request::Hello { reply_cap: w0 },
            op::INIT_DONE => Request::InitDone {
                status: w0 as i64 as i32,
            },
            op::EXIT_DONE => Request::ExitDone {
                blocks: w0,
                bytes: w1,
            },
            op::HEAP_GROW => Request::HeapGrow { bytes: w0 },
            op::REQUEST_MODULE => {
                let name = name()?;
                if name.is_empty() || name.len() > MAX_MODULE_NAME {
                    return Err(RequestError::BadName);
                }
                Request::RequestModule { name }
            }
            op::SERVICE_REGISTER => Request::ServiceRegister { name: name()? },
            op::SERVICE_UNREGISTER => Request::ServiceUnregister { name: name()? },
            op::SERVICE_LOOKUP => Request::ServiceLookup { name: name()? },
            other => return Err(RequestError::UnknownOp(other)),
        })
    }
}

/// A call into a module server, decoded from its op and words (the caller is untrusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// [`crate::srv::op::SERVICE_CALL`].
    Service(crate::srv::ServiceCall),
    /// A call of export `index` ([`export_index`]).
    Export(u64),
}

/// Why a call into a server does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomingError {
    /// Not an op a server serves (`ENOSYS`).
    UnknownOp(u64),
    /// A service call whose service op does not fit 32 bits (`EINVAL`).
    BadServiceOp(u64),
}

impl Incoming {
    /// Decodes a call by its op and words.
    pub fn decode(
        op: u64,
        words: &[u64; crate::msg::MSG_WORDS],
    ) -> Result<Incoming, IncomingError> {
        if op == crate::srv::op::SERVICE_CALL {
            let [service, service_op, reply_cap, ..] = *words;
            let op =
                u32::try_from(service_op).map_err(|_| IncomingError::BadServiceOp(service_op))?;
            Ok(Incoming::Service(crate::srv::ServiceCall {
                service,
                op,
                reply_cap,
            }))
        } else if let Some(index) = export_index(op) {
            Ok(Incoming::Export(index))
        } else {
            Err(IncomingError::UnknownOp(op))
        }
    }
}

/// An export the server offers: other servers call it with op
/// `EXPORT_CALL_BASE + its index in `[`ServerConfig::exports`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedExport {
    /// The exported name.
    pub name: String,
    /// Its address in the server (in the module's core region).
    pub address: u64,
    /// Its declared signature, in the module file's encoding (how arguments travel).
    pub signature: Vec<u8>,
}

/// An import of another module's export: what stub `i` (at
/// [`crate::layout::STUB_BASE`]` + i * `[`STUB_SIZE`]) calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    /// The imported name.
    pub name: String,
    /// The capability slot, in this server, of the exporting server's endpoint.
    pub slot: u64,
    /// The export's index in the exporting server (its op is `EXPORT_CALL_BASE + index`).
    pub index: u64,
    /// The export's declared signature, in the module file's encoding.
    pub signature: Vec<u8>,
}

/// Bytes of one call stub.
pub const STUB_SIZE: u64 = 16;

/// Everything the runtime needs to run its module (the reply to [`op::HELLO`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// The module's name (`.modinfo` `name=`).
    pub name: String,
    /// Address of `init_module`, if the module has one.
    pub init: Option<u64>,
    /// Address of `cleanup_module`, if the module has one.
    pub exit: Option<u64>,
    /// The heap mapped so far: it starts at [`crate::layout::HEAP_BASE`].
    pub heap_len: u64,
    /// The exports this server offers, by index.
    pub exports: Vec<ServedExport>,
    /// The imports of other modules' exports, by stub index.
    pub imports: Vec<Import>,
}

/// The machine code of call stub `index` at address `at`: `mov r11d, index; jmp entry`
/// (`entry` is the runtime's import entry point), padded with `int3`. The stub leaves the
/// six argument registers as the module's call set them; the entry saves them and calls the
/// runtime, which marshals the call by stub `index`'s signature. `None` if `entry` is out of
/// reach of a 32-bit jump or the index does not fit.
pub fn stub_code(index: u64, at: u64, entry: u64) -> Option<[u8; STUB_SIZE as usize]> {
    let index = u32::try_from(index).ok()?;
    let mut code = [0xcc; STUB_SIZE as usize];
    // mov r11d, imm32
    code[0] = 0x41;
    code[1] = 0xbb;
    code[2..6].copy_from_slice(&index.to_le_bytes());
    // jmp rel32, relative to the end of the 5-byte jump at offset 6
    code[6] = 0xe9;
    let next = at.checked_add(11)?;
    let rel = i32::try_from((entry as i64).checked_sub(next as i64)?).ok()?;
    code[7..11].copy_from_slice(&rel.to_le_bytes());
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgr::{decode, encode};
    use proptest::prelude::*;

    fn config() -> ServerConfig {
        ServerConfig {
            name: "kvstore".into(),
            init: Some(0x4000_0010),
            exit: None,
            heap_len: 0x1_0000,
            exports: vec![ServedExport {
                name: "kvstore_put".into(),
                address: 0x4000_0100,
                signature: vec![1, 2, 3],
            }],
            imports: vec![Import {
                name: "ramblk_read".into(),
                slot: 5,
                index: 0,
                signature: vec![4],
            }],
        }
    }

    #[test]
    fn server_requests_decode_and_bad_names_are_refused() {
        let w = [7, 9, 0, 0, 0, 0];
        assert_eq!(
            Request::decode(op::HELLO, &w, &[]),
            Ok(Request::Hello { reply_cap: 7 })
        );
        assert_eq!(
            Request::decode(op::INIT_DONE, &[(-12i64) as u64, 0, 0, 0, 0, 0], &[]),
            Ok(Request::InitDone { status: -12 })
        );
        assert_eq!(
            Request::decode(op::EXIT_DONE, &w, &[]),
            Ok(Request::ExitDone {
                blocks: 7,
                bytes: 9
            })
        );
        assert_eq!(
            Request::decode(op::REQUEST_MODULE, &w, b"crc32"),
            Ok(Request::RequestModule { name: "crc32" })
        );
        assert_eq!(
            Request::decode(op::REQUEST_MODULE, &w, b""),
            Err(RequestError::BadName)
        );
        assert_eq!(
            Request::decode(op::REQUEST_MODULE, &w, &[b'a'; MAX_MODULE_NAME + 1]),
            Err(RequestError::BadName)
        );
        assert_eq!(
            Request::decode(op::SERVICE_LOOKUP, &w, &[0xff, 0xfe]),
            Err(RequestError::BadName)
        );
        assert_eq!(
            Request::decode(op::SERVICE_REGISTER, &w, b""),
            Ok(Request::ServiceRegister { name: "" })
        );
        assert_eq!(
            Request::decode(op::LAST, &w, &[]),
            Err(RequestError::UnknownOp(op::LAST))
        );
    }

    #[test]
    fn calls_into_a_server_decode() {
        let w = [3, 17, 4096, 0, 0, 0];
        assert_eq!(
            Incoming::decode(crate::srv::op::SERVICE_CALL, &w),
            Ok(Incoming::Service(crate::srv::ServiceCall {
                service: 3,
                op: 17,
                reply_cap: 4096
            }))
        );
        assert_eq!(
            Incoming::decode(crate::srv::op::SERVICE_CALL, &[3, 1 << 32, 0, 0, 0, 0]),
            Err(IncomingError::BadServiceOp(1 << 32))
        );
        assert_eq!(
            Incoming::decode(EXPORT_CALL_BASE + 2, &w),
            Ok(Incoming::Export(2))
        );
        assert_eq!(
            Incoming::decode(crate::srv::op::FIRST_PRIVATE, &w),
            Err(IncomingError::UnknownOp(crate::srv::op::FIRST_PRIVATE))
        );
    }

    #[test]
    fn the_config_round_trips() {
        let c = config();
        assert_eq!(decode::<ServerConfig>(&encode(&c).unwrap()).unwrap(), c);
    }

    #[test]
    fn export_ops_map_to_indices_and_back() {
        assert_eq!(export_call_op(0), Some(EXPORT_CALL_BASE));
        assert_eq!(export_index(EXPORT_CALL_BASE + 7), Some(7));
        assert_eq!(export_call_op(MAX_EXPORTS), None);
        assert_eq!(export_index(EXPORT_CALL_BASE + MAX_EXPORTS), None);
        assert_eq!(export_index(crate::srv::op::SERVICE_CALL), None);
        assert_eq!(export_index(u64::MAX), None);
        // The server protocol's ops never collide with calls into servers.
        const { assert!(op::LAST < crate::srv::op::SERVICE_CALL) };
        const { assert!(crate::srv::op::FIRST_PRIVATE <= EXPORT_CALL_BASE) };
    }

    #[test]
    fn a_stub_is_mov_r11d_then_a_relative_jump() {
        let code = stub_code(3, 0x3800_0030, 0x1000_0000).unwrap();
        assert_eq!(code[..6], [0x41, 0xbb, 3, 0, 0, 0]);
        assert_eq!(code[6], 0xe9);
        let rel = i32::from_le_bytes(code[7..11].try_into().unwrap());
        assert_eq!(0x3800_0030_i64 + 11 + i64::from(rel), 0x1000_0000);
        assert_eq!(code[11..], [0xcc; 5]);
        // Out of reach of rel32, or an index that does not fit the immediate.
        assert_eq!(stub_code(0, 0x3800_0000, 0x7fff_0000_0000), None);
        assert_eq!(
            stub_code(u64::from(u32::MAX) + 1, 0x3800_0000, 0x1000_0000),
            None
        );
        assert_eq!(stub_code(0, u64::MAX, 0), None);
    }

    proptest! {
        #[test]
        fn decoding_any_config_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = decode::<ServerConfig>(&bytes);
        }

        #[test]
        fn truncated_configs_are_refused(cut in 0usize..64) {
            let bytes = encode(&config()).unwrap();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(decode::<ServerConfig>(&bytes[..cut]).is_err());
        }

        #[test]
        fn stubs_reach_their_entry_whenever_they_are_built(index in any::<u64>(), at in any::<u64>(), entry in any::<u64>()) {
            if let Some(code) = stub_code(index, at, entry) {
                let rel = i32::from_le_bytes(code[7..11].try_into().unwrap());
                prop_assert_eq!((at.wrapping_add(11) as i64).wrapping_add(i64::from(rel)), entry as i64);
                prop_assert_eq!(u64::from(u32::from_le_bytes(code[2..6].try_into().unwrap())), index);
            }
        }
    }
}
