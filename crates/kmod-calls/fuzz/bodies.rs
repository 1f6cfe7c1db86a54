//! The bodies of the call fuzz targets, shared by `fuzz_targets/*.rs` (cargo-fuzz, nightly)
//! and `tests/fuzz_corpus.rs`, which replays the committed corpus on stable.
//!
//! - [`export_table`]: a module's `.kmod_exportsig` section (module-supplied: the manager
//!   parses it), as the section's bytes and as a whole module file.
//! - [`call`]: a call between servers, both ends: the server runtime decodes a descriptor
//!   (from the manager), a request header and the received message (from an untrusted
//!   client) and accepts or refuses the call; the client's stub marshals registers and
//!   checks the (untrusted) server's reply words.

use kmod_calls::{
    Descriptor, Dir, Export, ExportTable, HEADER_LEN, Limits, MAX_ARGS, RequestHeader, Slot,
};
use kmodlab_ipc::msg::{MAX_LEASES, MSG_WORDS, Received};

/// A module's export-signature section, and the same bytes as a module file.
pub fn export_table(data: &[u8]) {
    if let Ok(table) = ExportTable::parse(data) {
        let exports: Vec<Export<'_>> = table.iter().collect();
        assert_eq!(exports.len(), table.len(), "every counted record parses");
        for (i, e) in exports.iter().enumerate() {
            // The canonical text parses back to the same export.
            let text = e.to_string();
            let again = Export::parse(text.as_bytes()).expect("the canonical text parses");
            assert_eq!(again.fingerprint(), e.fingerprint());
            assert_eq!(again.to_string(), text);
            let index = u32::try_from(i).expect("few exports");
            assert_eq!(table.find(e.name).map(|(j, _)| j), Some(index));
            let d = Descriptor::new(index, e);
            assert_eq!(Descriptor::from_bytes(&d.to_bytes()), Ok(d));
        }
        assert!(
            table
                .get(u32::try_from(exports.len()).unwrap_or(u32::MAX))
                .is_none()
        );
    }
    if let Ok(table) = ExportTable::from_module(data) {
        assert_eq!(table.iter().count(), table.len());
    }
    let _ = Export::parse(data);
}

/// Reads little-endian words off the input, zero when it runs out.
struct Words<'a>(&'a [u8]);

impl Words<'_> {
    fn next(&mut self) -> u64 {
        let n = self.0.len().min(8);
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(head);
        u64::from_le_bytes(b)
    }

    fn array<const N: usize>(&mut self) -> [u64; N] {
        core::array::from_fn(|_| self.next())
    }
}

/// One call: byte 0 selects, bytes 1..65 are a descriptor, 65..81 a request header, the rest
/// words (the received message, then the function's return and out-length cells, the
/// caller's registers, the reply words).
///
/// Bit 0 of byte 0 replaces the header's fingerprint and export index with the
/// descriptor's, so that mutations reach the checks after them.
pub fn call(data: &[u8]) {
    let Some((&select, rest)) = data.split_first() else {
        return;
    };
    let (desc_bytes, rest) = rest.split_at(rest.len().min(Descriptor::LEN));
    let (header_bytes, rest) = rest.split_at(rest.len().min(HEADER_LEN));
    let Ok(desc) = Descriptor::from_bytes(desc_bytes) else {
        return;
    };
    assert_eq!(Descriptor::from_bytes(&desc.to_bytes()), Ok(desc));
    let limits = Limits::DEFAULT;
    let mut w = Words(rest);
    let received = Received {
        sender: 1,
        badge: 2,
        op: w.next(),
        words: w.array::<MSG_WORDS>(),
        len: HEADER_LEN as u64,
        lease_count: w.next() % (MAX_LEASES as u64 + 1),
        lease_len: w.array::<MAX_LEASES>(),
        lease_flags: w.array::<MAX_LEASES>(),
        notifications: 0,
    };
    let rax = w.next();
    let cells = w.array::<MAX_ARGS>();
    let regs = w.array::<MSG_WORDS>();
    let reply = w.array::<MSG_WORDS>();

    // The server's side.
    let header = match RequestHeader::decode(header_bytes) {
        Ok(mut h) => {
            if select & 1 != 0 {
                h.fingerprint = desc.fingerprint;
                h.export = desc.export;
            }
            assert_eq!(RequestHeader::decode(&h.encode()), Ok(h));
            Some(h)
        }
        Err(e) => {
            let _ = (e.errno(), e.to_string());
            None
        }
    };
    if let Some(header) = header {
        match desc.accept(&header, &received, &limits) {
            Ok(accepted) => {
                let mut total = 0u64;
                for s in accepted.slots() {
                    if let Slot::Buffer(b) = s {
                        let lease = usize::from(b.lease);
                        assert!((lease as u64) < received.lease_count, "an existing lease");
                        assert!(b.len <= limits.max_buffer && b.len <= received.lease_len[lease]);
                        let flags = received.lease_flags[lease];
                        assert!(!b.dir.reads() || flags & kmodlab_ipc::msg::LEASE_READ != 0);
                        assert!(!b.dir.writes() || flags & kmodlab_ipc::msg::LEASE_WRITE != 0);
                        total += b.len;
                    }
                }
                assert!(total <= limits.max_total);
                let local: [u64; MAX_ARGS] = core::array::from_fn(|i| 0x1000 * (i as u64 + 1));
                let _ = accepted.registers(&local);
                let finished = accepted.finish(rax, &cells);
                for c in finished.copy_backs() {
                    let Some(Slot::Buffer(b)) = accepted.slots().get(usize::from(c.arg)) else {
                        panic!("a copy-back of a buffer argument: {c:?}");
                    };
                    assert!(b.dir.writes() && c.len <= b.len && c.lease == b.lease);
                    assert_ne!(b.dir, Dir::In);
                }
            }
            Err(e) => {
                let _ = (e.errno(), e.to_string());
            }
        }
    }

    // The client's side.
    match desc.marshal(&regs, &limits) {
        Ok(request) => {
            assert!(request.leases().len() <= MAX_LEASES);
            let h = RequestHeader::decode(&request.header).expect("the stub's header decodes");
            assert_eq!((h.fingerprint, h.export), (desc.fingerprint, desc.export));
            match request.complete(&reply) {
                Ok(done) => assert!(done.outlen_writes().len() <= MAX_ARGS),
                Err(e) => {
                    let _ = (e.errno(), e.to_string());
                }
            }
        }
        Err(e) => {
            let _ = (e.errno(), e.to_string());
        }
    }
}
