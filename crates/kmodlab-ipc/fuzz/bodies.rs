//! The bodies of the IPC fuzz targets, shared by `fuzz_targets/*.rs` (cargo-fuzz, nightly)
//! and `tests/fuzz_corpus.rs`, which replays the committed corpus on stable.
//!
//! Two kinds of bytes cross the trust boundary between tasks:
//!
//! - [`utcb`]: the words of a UTCB. A task writes anything there; the kernel decodes its
//!   message with [`Message::decode`], a task decodes what the kernel wrote
//!   ([`Received::decode`], [`ReplyInfo::decode`]); the manager decodes a server's request
//!   ([`server::Request::decode`], with the bytes after the UTCB area as its payload), a
//!   server a call into it ([`server::Incoming::decode`]).
//! - [`payload`]: a message payload, postcard-encoded: the kernel's requests to the module
//!   manager and the manager's replies ([`kmodlab_ipc::mgr`]), the manager's server
//!   configuration ([`ServerConfig`], decoded by the server runtime), a `task_info` record.
//!
//! Beyond "no panic", whatever decodes must satisfy the decoder's promises (the limits
//! [`Message::decode`] checks) and survive a round trip: encoding it and decoding that gives
//! the same value, which encodes to the same bytes.

use kmodlab_ipc::mgr::{self, decode, encode};
use kmodlab_ipc::msg::{
    LEASE_READ, LEASE_WRITE, MAX_LEASE, MAX_LEASES, MAX_PAYLOAD, MSG_WORDS, Message, Received,
    ReplyInfo,
};
use kmodlab_ipc::server::{self, ServerConfig};
use kmodlab_ipc::task::{Perm, TaskInfo};
use kmodlab_ipc::utcb;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The input as a UTCB area: little-endian words, missing ones zero.
fn area(data: &[u8]) -> utcb::Area {
    let mut words = [0u64; utcb::AREA];
    for (word, chunk) in words.iter_mut().zip(data.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *word = u64::from_le_bytes(b);
    }
    words
}

/// UTCB words: the kernel's message decoder, the task's receive and reply decoders, and the
/// pure helpers that take untrusted words (export ops, stub code, permission codes).
pub fn utcb(data: &[u8]) {
    let words = area(data);
    match Message::decode(&words) {
        Ok(m) => {
            assert!(m.lease_count <= MAX_LEASES);
            assert!(m.send.len <= MAX_PAYLOAD && m.reply.len <= MAX_PAYLOAD);
            assert!(m.send.addr.checked_add(m.send.len).is_some());
            assert!(m.reply.addr.checked_add(m.reply.len).is_some());
            assert_eq!(m.leases().len(), m.lease_count);
            for l in m.leases() {
                let known = LEASE_READ | LEASE_WRITE;
                assert!(l.flags & known != 0 && l.flags & !known == 0);
                assert!(l.len <= MAX_LEASE && l.addr.checked_add(l.len).is_some());
            }
            let mut again = [0u64; utcb::AREA];
            m.encode(&mut again);
            assert_eq!(Message::decode(&again), Ok(m));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    let r = Received::decode(&words);
    assert!(r.lease_count <= MAX_LEASES as u64);
    let mut again = [0u64; utcb::AREA];
    r.encode(&mut again);
    assert_eq!(Received::decode(&again), r);

    let reply = ReplyInfo::decode(&words);
    let mut again = [0u64; utcb::AREA];
    reply.encode(&mut again);
    assert_eq!(ReplyInfo::decode(&again), reply);

    let [w0, w1, w2, w3, ..] = words;
    if let Some(index) = server::export_index(w0) {
        assert_eq!(server::export_call_op(index), Some(w0));
    }
    if let Some(code) = server::stub_code(w1, w2, w3) {
        assert_eq!(&code[..2], &[0x41, 0xbb]);
        assert_eq!(code[2..6], (w1 as u32).to_le_bytes());
        let rel = i32::from_le_bytes([code[7], code[8], code[9], code[10]]);
        assert_eq!(
            w2.wrapping_add(11).wrapping_add(rel as i64 as u64),
            w3,
            "the stub jumps to its entry"
        );
    }
    if let Some(p) = Perm::from_code(w0) {
        assert_eq!(p.code(), w0);
    }

    // A server's request to the manager (op, words, then the bytes after the UTCB area as
    // its payload), and a call into a server.
    let op = words[utcb::OP];
    let msg_words: [u64; MSG_WORDS] = core::array::from_fn(|i| words[utcb::MSG + i]);
    let payload = data.get(utcb::AREA * 8..).unwrap_or(&[]);
    match server::Request::decode(op, &msg_words, payload) {
        Ok(server::Request::RequestModule { name }) => {
            assert!(!name.is_empty() && name.len() <= server::MAX_MODULE_NAME);
            assert_eq!(name.as_bytes(), payload);
        }
        Ok(
            server::Request::ServiceRegister { name }
            | server::Request::ServiceUnregister { name }
            | server::Request::ServiceLookup { name },
        ) => assert_eq!(name.as_bytes(), payload),
        Ok(_) => assert!((server::op::HELLO..=server::op::HEAP_GROW).contains(&op)),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match server::Incoming::decode(op, &msg_words) {
        Ok(server::Incoming::Service(call)) => {
            assert_eq!(op, kmodlab_ipc::srv::op::SERVICE_CALL);
            assert_eq!(u64::from(call.op), msg_words[1]);
        }
        Ok(server::Incoming::Export(index)) => {
            assert!(index < server::MAX_EXPORTS);
            assert_eq!(server::export_call_op(index), Some(op));
        }
        Err(_) => {}
    }
}

/// Decodes `data` as a `T`; if it decodes, checks the round trip.
fn round_trip<T>(data: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + core::fmt::Debug,
{
    let Ok(value) = decode::<T>(data) else {
        return;
    };
    let first = encode(&value).expect("a decoded value encodes");
    let again = decode::<T>(&first).expect("an encoded value decodes");
    assert_eq!(again, value);
    assert_eq!(encode(&again).expect("encodes"), first);
}

/// A message payload, tried as every type a task or the kernel decodes from a peer.
pub fn payload(data: &[u8]) {
    // The kernel's requests, as the manager decodes them.
    round_trip::<mgr::Insmod>(data);
    round_trip::<mgr::InsmodArchive>(data);
    round_trip::<mgr::Rmmod>(data);
    round_trip::<mgr::ServiceLookup>(data);
    round_trip::<mgr::Locate>(data);
    // The manager's replies, as the kernel decodes them.
    round_trip::<mgr::LoadReply>(data);
    round_trip::<mgr::DoneReply>(data);
    round_trip::<mgr::ListReply>(data);
    round_trip::<mgr::ServiceLookupReply>(data);
    round_trip::<mgr::LocateReply>(data);
    // The manager's configuration of a server, as the server runtime decodes it.
    round_trip::<ServerConfig>(data);
    // A task_info record: whatever decodes fits the buffer size the kernel promises.
    if let Some(info) = TaskInfo::decode(data) {
        let mut buf = [0u8; TaskInfo::MAX_ENCODED];
        let n = info
            .encode(&mut buf)
            .expect("every TaskInfo fits MAX_ENCODED");
        assert_eq!(TaskInfo::decode(&buf[..n]), Some(info));
    }
}
