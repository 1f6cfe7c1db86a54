//! Replays the committed, minimised cargo-fuzz corpus (`fuzz/corpus/<target>/`) through
//! the same code as the fuzz targets (`fuzz/bodies.rs`), on stable, as a normal test: an
//! input that once crashed a target and is in the corpus fails here if it crashes again.
//! Campaign figures and commands: `results/fuzz/README.md`.

#[path = "../fuzz/bodies.rs"]
mod bodies;
#[path = "../../fuzz_replay.rs"]
mod fuzz_replay;

#[test]
fn utcb_corpus_replays_without_a_crash() {
    fuzz_replay::replay(env!("CARGO_MANIFEST_DIR"), "utcb", bodies::utcb);
}

#[test]
fn payload_corpus_replays_without_a_crash() {
    fuzz_replay::replay(env!("CARGO_MANIFEST_DIR"), "payload", bodies::payload);
}

/// Writes the seeds the campaign in `results/fuzz/` started from to
/// `$KMODLAB_FUZZ_SEEDS/{utcb,payload}/`: UTCBs of valid messages (with payloads and leases)
/// and of what the kernel writes back, and one payload per request and reply type.
#[test]
#[ignore = "writes fuzz seeds; set KMODLAB_FUZZ_SEEDS=DIR"]
fn write_seeds() {
    use kmodlab_abi::channel::{Footprint, LoadCycles, ModuleRecord, ModuleState};
    use kmodlab_ipc::mgr::{self, encode};
    use kmodlab_ipc::msg::{Buffer, LEASE_READ, LEASE_WRITE, Lease, Message, Received, ReplyInfo};
    use kmodlab_ipc::server::{Import, ServedExport, ServerConfig};
    use kmodlab_ipc::task::{Fault, TaskId, TaskInfo, TaskState};
    use kmodlab_ipc::utcb;

    let write = |target: &str, i: usize, bytes: &[u8]| {
        fuzz_replay::write_seed(target, &format!("seed-{i:02}"), bytes);
    };
    let words =
        |area: &utcb::Area| -> Vec<u8> { area.iter().flat_map(|w| w.to_le_bytes()).collect() };

    let mut call = Message::new(mgr::op::INSMOD, [1, 2, 3, 4, 5, 6]);
    call.send = Buffer {
        addr: 0x40_0000,
        len: 32,
    };
    call.reply = Buffer {
        addr: 0x41_0000,
        len: 4096,
    };
    call.lease_count = 2;
    call.leases[0] = Lease {
        addr: 0x50_0000,
        len: 12288,
        flags: LEASE_READ,
    };
    call.leases[1] = Lease {
        addr: 0x60_0000,
        len: 64,
        flags: LEASE_READ | LEASE_WRITE,
    };
    let messages = [
        Message::new(0, [0; 6]),
        Message::new(0x1_0003, [7; 6]),
        call,
    ];
    let mut i = 0;
    for m in &messages {
        let mut area = [0u64; utcb::AREA];
        m.encode(&mut area);
        write("utcb", i, &words(&area));
        i += 1;
    }
    let mut area = [0u64; utcb::AREA];
    Received {
        sender: 3,
        badge: 9,
        op: 64,
        words: [0, 1, 4096, 0, 0, 0],
        len: 16,
        lease_count: 1,
        lease_len: [8, 0, 0, 0],
        lease_flags: [LEASE_WRITE, 0, 0, 0],
        notifications: 0,
    }
    .encode(&mut area);
    ReplyInfo {
        words: [1, 2, 3, 4, 5, 6],
        len: 40,
        from_kernel: true,
    }
    .encode(&mut area);
    write("utcb", i, &words(&area));

    let record = ModuleRecord {
        name: "kvstore".into(),
        state: ModuleState::Live,
        refcount: 1,
        used_by: vec!["kvclient".into()],
        uses: vec!["ramblk".into()],
        core_base: 0x4000_0000,
        core_bytes: 12288,
        init_bytes: 4096,
        init_freed: true,
        metadata_bytes: 900,
        pages: 4,
        relocations: 77,
        load_cycles: LoadCycles::default(),
        footprint: Footprint::default(),
        fault: None,
    };
    let failure = mgr::Failure {
        errno: 16,
        message: "Module kvstore is in use by: kvclient".into(),
    };
    let config = ServerConfig {
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
    };
    let info = TaskInfo {
        id: TaskId::new(3, 1),
        state: TaskState::Faulted(Fault {
            vector: 14,
            error_code: 6,
            rip: 0x4000_1234,
            cr2: 0,
            rsp: 0x7fff_0000,
        }),
        pages: 12,
        page_table_pages: 4,
        kernel_bytes: 900,
        syscalls: 77,
        ipc_sent: 10,
        user_cycles: 123_456,
    };
    let payloads = [
        encode(&mgr::Insmod {
            params: "count=3 greeting=hi".into(),
            may_manage_modules: true,
        }),
        encode(&mgr::InsmodArchive {
            name: "crc32".into(),
            params: String::new(),
        }),
        encode(&mgr::Rmmod {
            name: "hello".into(),
            may_manage_modules: false,
        }),
        encode(&mgr::ServiceLookup {
            service: "crc32".into(),
        }),
        encode(&mgr::Locate {
            task: TaskId::new(2, 1),
            addr: 0x4000_0042,
        }),
        encode(&mgr::LoadReply::Ok(record.clone())),
        encode(&mgr::LoadReply::Err(failure.clone())),
        encode(&mgr::DoneReply::Err(failure)),
        encode(&mgr::ListReply {
            modules: vec![record.clone(), record],
            transitions: (3, 2, 1),
        }),
        encode(&mgr::ServiceLookupReply::Ok(mgr::ServiceAddress {
            task: TaskId::new(4, 2),
            index: 1,
        })),
        encode(&mgr::LocateReply::Some(("kvstore".into(), 0x42))),
        encode(&config),
    ];
    for (i, p) in payloads.iter().enumerate() {
        write("payload", i, p.as_ref().unwrap());
    }
    let mut buf = [0u8; TaskInfo::MAX_ENCODED];
    let n = info.encode(&mut buf).unwrap();
    write("payload", payloads.len(), &buf[..n]);
}
