//! The bodies of the control-channel fuzz targets, shared by `fuzz_targets/*.rs`
//! (cargo-fuzz, nightly) and `tests/fuzz_corpus.rs`, which replays the committed corpus on
//! stable. The input is a frame area as the other side wrote it: the VMM decodes
//! [`GuestMsg`] frames from an untrusted guest, the guest decodes [`HostMsg`] frames.
//!
//! Beyond "no panic", a decoded message must survive a round trip: encoding it and
//! decoding that gives a message that encodes to the same bytes (bytes, not `==`, so that
//! a NaN in a float field is not a false alarm).

use kmodlab_abi::channel::{GuestMsg, HEADER_SIZE, HostMsg, decode_frame, encode_frame};
use serde::Serialize;

fn encoded<T: Serialize>(seq: u32, msg: &T, room: usize) -> Option<Vec<u8>> {
    let mut area = vec![0u8; room.max(HEADER_SIZE)];
    let used = encode_frame(&mut area, seq, msg).ok()?;
    area.truncate(used);
    Some(area)
}

/// A host-to-guest frame.
pub fn host_msg(data: &[u8]) {
    let Ok((seq, msg)) = decode_frame::<HostMsg>(data) else {
        return;
    };
    let first = encoded(seq, &msg, data.len()).expect("a decoded message encodes in its room");
    let (seq2, again) = decode_frame::<HostMsg>(&first).expect("an encoded message decodes");
    assert_eq!(seq, seq2);
    assert_eq!(
        encoded(seq2, &again, data.len()).as_deref(),
        Some(&first[..])
    );
}

/// A guest-to-host frame.
pub fn guest_msg(data: &[u8]) {
    let Ok((seq, msg)) = decode_frame::<GuestMsg>(data) else {
        return;
    };
    let first = encoded(seq, &msg, data.len()).expect("a decoded message encodes in its room");
    let (seq2, again) = decode_frame::<GuestMsg>(&first).expect("an encoded message decodes");
    assert_eq!(seq, seq2);
    assert_eq!(
        encoded(seq2, &again, data.len()).as_deref(),
        Some(&first[..])
    );
}
