//! Replays the committed, minimised cargo-fuzz corpus (`fuzz/corpus/<target>/`) through
//! the same code as the fuzz targets (`fuzz/bodies.rs`), on stable, as a normal test: an
//! input that once crashed a target and is in the corpus fails here if it crashes again.
//! Campaign figures and commands: `results/fuzz/README.md`.

#[path = "../fuzz/bodies.rs"]
mod bodies;
#[path = "../../fuzz_replay.rs"]
mod fuzz_replay;

#[test]
fn host_msg_corpus_replays_without_a_crash() {
    fuzz_replay::replay(env!("CARGO_MANIFEST_DIR"), "host_msg", bodies::host_msg);
}

#[test]
fn guest_msg_corpus_replays_without_a_crash() {
    fuzz_replay::replay(env!("CARGO_MANIFEST_DIR"), "guest_msg", bodies::guest_msg);
}

/// Writes one valid frame per message kind to `$KMODLAB_FUZZ_SEEDS/{host_msg,guest_msg}/`:
/// the seeds the campaign in `results/fuzz/` started from.
#[test]
#[ignore = "writes fuzz seeds; set KMODLAB_FUZZ_SEEDS=DIR"]
fn write_seed_frames() {
    use kmodlab_abi::channel::*;
    use kmodlab_abi::{KernelConfig, KvmFlavour};
    let write = |target: &str, i: usize, frame: &dyn Fn(&mut [u8]) -> usize| {
        let mut area = vec![0u8; 4096];
        let n = frame(&mut area);
        fuzz_replay::write_seed(target, &format!("seed-{i:02}"), &area[..n]);
    };
    let record = ModuleRecord {
        name: "kvstore".into(),
        state: ModuleState::Live,
        refcount: 1,
        used_by: vec!["kvclient".into()],
        uses: vec!["ramblk".into(), "crc32".into()],
        core_base: 0xffff_ffff_c000_0000,
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
    let fault = FaultReport {
        vector: 14,
        error_code: 2,
        rip: 0xffff_ffff_8020_1234,
        cr2: 8,
        rsp: 0xffff_ffff_8030_0000,
        rflags: 0x2,
        cpl: 3,
    };
    let host = [
        HostMsg::Command(Command::SelfTest(SelfTestParams::default())),
        HostMsg::Command(Command::Echo(vec![1, 2, 3])),
        HostMsg::Command(Command::Misbehave(Misbehaviour::UserFault(
            FaultKind::DivideByZero,
        ))),
        HostMsg::Command(Command::PrintTestPattern { lines: 3 }),
        HostMsg::Command(Command::Shell {
            script: Some("insmod hello.ko\nlsmod\n".into()),
        }),
        HostMsg::Command(Command::InitModule {
            name: "params".into(),
            params: "count=3 greeting=hi".into(),
        }),
        HostMsg::Command(Command::DeleteModule {
            name: "params".into(),
        }),
        HostMsg::Command(Command::ListModules),
        HostMsg::Command(Command::InitModuleImage {
            image: b"\x7fELF\x02\x01\x01".to_vec(),
            params: String::new(),
        }),
        HostMsg::Command(Command::MemoryStats),
        HostMsg::Shutdown { status: 0 },
    ];
    for (i, msg) in host.iter().enumerate() {
        write("host_msg", i, &|a| encode_frame(a, i as u32, msg).unwrap());
    }
    let replies = [
        Reply::SelfTest(SelfTestReport {
            params: SelfTestParams::default(),
            supervisor_loop_cycles: vec![100, 101],
            user_loop_cycles: vec![120],
            syscall_cycles: vec![900],
            ipc_cycles: vec![2000],
            checks: vec![Check {
                name: "paging".into(),
                passed: true,
                detail: "ok".into(),
                not_run: None,
            }],
            user_kernel_isolation: true,
            kpti: true,
            isolation_warning: None,
        }),
        Reply::Echo(vec![9, 8, 7]),
        Reply::UserFaultContained(fault),
        Reply::Done,
        Reply::Shell(ShellOutput {
            output: "hello\n".into(),
            output_bytes: 6,
            lines: 1,
            failed: 0,
        }),
        Reply::Module(record.clone()),
        Reply::Modules(vec![record]),
        Reply::ModuleError(ModuleError {
            errno: 2,
            message: "no such module".into(),
        }),
        Reply::Memory(MemoryStats {
            heap_used: 1,
            heap_size: 2,
            frames_free: 3,
            frames_total: 4,
        }),
        Reply::Error("bad".into()),
    ];
    let mut i = 0;
    let ready = GuestMsg::Ready(ReadyInfo {
        config: KernelConfig::Monolithic,
        flavour: KvmFlavour::Pvm,
        tsc_entry: 1,
        tsc_memory_ready: 2,
        tsc_ready: 3,
        image: KernelImageInfo::default(),
        frames_total: 4096,
        frames_free: 4000,
        heap_bytes: 1 << 20,
    });
    let panic = GuestMsg::Panic(PanicReport {
        message: "boom",
        file: "main.rs",
        line: 9,
    });
    for msg in [ready, GuestMsg::Fault(fault), panic] {
        write("guest_msg", i, &|a| {
            encode_frame(a, i as u32, &msg).unwrap()
        });
        i += 1;
    }
    for reply in replies {
        let msg = GuestMsg::Reply(reply);
        write("guest_msg", i, &|a| {
            encode_frame(a, i as u32, &msg).unwrap()
        });
        i += 1;
    }
}
