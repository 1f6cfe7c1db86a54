//! KVM integration tests of a working guest: boot and self-test in both configurations, the
//! serial console's integrity, and the control channel carrying large payloads.

mod common;

use common::{CONFIGS, context, kvm_usable, median, run};
use kmodlab::KvmFlavour;
use kmodlab::selftest::NATIVE_RATIO_LIMIT;
use kmodlab::vm::RunEnd;
use kmodlab_abi::channel::{Command, MAX_PAYLOAD, Reply, SelfTestParams, serial_test_line};

fn boot_and_self_test(config: kmodlab::KernelConfig) {
    if !kvm_usable() {
        return;
    }
    // Fewer runs than `kmodlab boot` to keep the suite fast; still enough for a median.
    let params = SelfTestParams {
        runs: 5,
        ..SelfTestParams::default()
    };
    let report = run(config, vec![Command::SelfTest(params)]);
    assert_eq!(
        report.end,
        RunEnd::Exited { status: 0 },
        "{}",
        context(&report)
    );

    let ready = report.controller.ready.as_ref().expect("no Ready message");
    assert_eq!(ready.config, config, "the guest booted the wrong kernel");
    assert_eq!(
        ready.flavour, report.flavour,
        "the guest was told the wrong flavour"
    );
    assert!(ready.image.text > 0 && ready.frames_free > 0 && ready.heap_bytes > 0);
    assert!(ready.frames_free <= ready.frames_total);
    match report.flavour {
        KvmFlavour::Pvm => assert!(report.vif_registered, "PVM without the VIF page"),
        KvmFlavour::Hardware => assert!(!report.vif_registered, "VIF page on hardware KVM"),
    }

    let [Reply::SelfTest(st)] = report.controller.replies.as_slice() else {
        panic!(
            "expected one self-test reply, got {:?}",
            report.controller.replies
        );
    };
    assert_eq!(st.params, params);
    assert!(!st.checks.is_empty(), "the self-test ran no checks");
    let failed: Vec<_> = st.checks.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    for samples in [
        &st.supervisor_loop_cycles,
        &st.user_loop_cycles,
        &st.syscall_cycles,
    ] {
        assert_eq!(samples.len(), params.runs as usize);
        assert!(
            samples.iter().all(|&c| c > 0),
            "zero cycle count: {samples:?}"
        );
    }
    let sup = median(&st.supervisor_loop_cycles);
    let user = median(&st.user_loop_cycles);
    assert!(
        sup <= NATIVE_RATIO_LIMIT * user,
        "supervisor loop {sup} cycles vs user loop {user}: supervisor code is not native \
         ({:?})",
        report.flavour
    );
    // Self-test exchanges are two (Ready, the reply): the work itself causes no doorbells.
    assert_eq!(
        report.exits.get("io_doorbell"),
        Some(&2),
        "{:?}",
        report.exits
    );
    assert_eq!(report.exits.get("io_exit"), Some(&1), "{:?}", report.exits);
    let t = &report.timings;
    let ready_ms = t.ready_ms.expect("no ready time");
    assert!(t.first_instruction_ms.expect("no first-instruction time") <= ready_ms);
    assert!(
        t.vm_created_ms <= t.loaded_ms && t.loaded_ms <= ready_ms,
        "{t:?}"
    );
}

#[test]
fn monolithic_boots_and_passes_self_test() {
    boot_and_self_test(kmodlab::KernelConfig::Monolithic);
}

#[test]
fn microkernel_boots_and_passes_self_test() {
    boot_and_self_test(kmodlab::KernelConfig::Microkernel);
}

#[test]
fn serial_output_arrives_intact() {
    if !kvm_usable() {
        return;
    }
    // 25 KB of output. Every byte is a port write the VMM handles (plus the driver's status
    // reads): ~85 µs a byte on kvm_pvm, so 2,000 lines would take 11 s here.
    const LINES: u32 = 400;
    let report = run(
        kmodlab::KernelConfig::Monolithic,
        vec![Command::PrintTestPattern { lines: LINES }],
    );
    assert_eq!(
        report.end,
        RunEnd::Exited { status: 0 },
        "{}",
        context(&report)
    );
    assert_eq!(report.controller.replies, vec![Reply::Done]);
    let text = report.console_text();
    let expected: Vec<String> = (0..LINES).map(serial_test_line).collect();
    let got: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != expected[0])
        .take(expected.len())
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "the pattern's first line is missing or it is cut short"
    );
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "serial line {i} differs");
    }
    // Nothing but the pattern between its first and last line, and no second copy.
    assert_eq!(text.matches(expected[0].as_str()).count(), 1);
}

#[test]
fn echo_round_trips_large_payloads() {
    if !kvm_usable() {
        return;
    }
    // Position-dependent bytes, so a shifted, truncated or zeroed copy cannot match.
    let pattern = |len: usize, seed: u32| -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    };
    let payloads = [
        Vec::new(),
        pattern(1, 1),
        pattern(300 << 10, 2),
        // The largest Echo there is: two enum tags (`HostMsg::Command` + `Command::Echo` one
        // way, `GuestMsg::Reply` + `Reply::Echo` the other) and a 3-byte length prefix
        // around the bytes fill each half of the channel exactly.
        pattern(MAX_PAYLOAD - 2 - 3, 3),
    ];
    for config in CONFIGS {
        let report = run(
            config,
            payloads.iter().cloned().map(Command::Echo).collect(),
        );
        assert_eq!(
            report.end,
            RunEnd::Exited { status: 0 },
            "{}",
            context(&report)
        );
        let expected: Vec<Reply> = payloads.iter().cloned().map(Reply::Echo).collect();
        assert!(
            report.controller.replies == expected,
            "{config:?}: echo replies differ from what was sent (lengths {:?})",
            report
                .controller
                .replies
                .iter()
                .map(|r| match r {
                    Reply::Echo(b) => b.len() as isize,
                    _ => -1,
                })
                .collect::<Vec<_>>()
        );
        // One doorbell per exchange: Ready plus one reply per command.
        assert_eq!(
            report.exits.get("io_doorbell"),
            Some(&(payloads.len() as u64 + 1))
        );
    }
}

/// Boots `images`, loads `hello` through the control channel and checks that the guest
/// exited cleanly; the reply is the caller's to check.
fn insmod_hello(
    vm_config: &kmodlab::vm::VmConfig,
    images: kmodlab::vm::GuestImages<'_>,
) -> kmodlab::vm::RunReport<kmodlab::control::Script> {
    let report = common::run_images(
        vm_config,
        images,
        vec![Command::InitModule {
            name: "hello".into(),
            params: String::new(),
        }],
    );
    assert_eq!(
        report.end,
        RunEnd::Exited { status: 0 },
        "{}: {}",
        vm_config.cmdline,
        context(&report)
    );
    report
}

/// The embedded images reach guest memory as read-only slots of the executable's own pages;
/// any other images (an archive with user modules, a kernel given as a copy) are copied.
/// Both boot, load a module from the archive, and say which happened.
#[test]
fn embedded_images_are_mapped_and_other_images_copied() {
    if !kvm_usable() {
        return;
    }
    let config = kmodlab::KernelConfig::Monolithic;
    let embedded = kmodlab::artifacts::images(config);
    let kernel_copy = embedded.kernel.to_vec();
    let archive_copy = embedded.initramfs.to_vec();
    let copied = kmodlab::vm::GuestImages {
        kernel: &kernel_copy,
        initramfs: &archive_copy,
    };
    for (images, mapped) in [(embedded, true), (copied, false)] {
        let vm_config = kmodlab::vm::VmConfig {
            deadline: common::DEADLINE,
            ..kmodlab::vm::VmConfig::new(config)
        };
        let report = insmod_hello(&vm_config, images);
        assert!(
            matches!(report.controller.replies.as_slice(), [Reply::Module(_)]),
            "{:?}",
            report.controller.replies
        );
        let t = &report.timings;
        if mapped {
            assert_eq!(t.archive, "mapped read-only from the executable");
            assert!(
                t.kernel.contains("mapped read-only from the executable"),
                "{}",
                t.kernel
            );
        } else {
            assert_eq!(
                t.archive,
                "copied into guest RAM (the archive is not the embedded one)"
            );
            assert_eq!(
                t.kernel,
                "copied into guest RAM (the kernel is not an embedded one)"
            );
        }
    }
}

/// Without read-only memory slots (a KVM lacking `KVM_CAP_READONLY_MEM`, here forced by the
/// debug option) the embedded images are copied, the boot says why, and a module loads from
/// the archive. A kernel that then writes its archive writes its own RAM: the run goes on,
/// and the next load finds the archive damaged and says so.
#[test]
fn without_read_only_slots_the_embedded_images_are_copied_and_writable() {
    if !kvm_usable() {
        return;
    }
    let why = "copied into guest RAM (read-only memory slots turned off by \
               `without_read_only_memory`)";
    for (cmdline, loads) in [("quiet", true), ("quiet debug.write_archive=1", false)] {
        let vm_config = kmodlab::vm::VmConfig {
            deadline: common::DEADLINE,
            cmdline: cmdline.into(),
            without_read_only_memory: true,
            ..kmodlab::vm::VmConfig::new(kmodlab::KernelConfig::Monolithic)
        };
        let report = insmod_hello(&vm_config, kmodlab::artifacts::images(vm_config.config));
        assert_eq!(report.timings.archive, why, "{cmdline}");
        assert_eq!(report.timings.kernel, why, "{cmdline}");
        match report.controller.replies.as_slice() {
            [Reply::Module(_)] if loads => {}
            [Reply::ModuleError(e)]
                if !loads && e.errno == 2 && e.message.contains("module archive unreadable") => {}
            other => panic!("{cmdline}: {other:?}"),
        }
    }
}

/// A guest that writes the read-only module archive is stopped with a typed end naming the
/// address and what lies there, not left running or crashing the VMM.
#[test]
fn a_guest_write_to_the_read_only_archive_ends_the_run_as_its_fault() {
    if !kvm_usable() {
        return;
    }
    let vm_config = kmodlab::vm::VmConfig {
        deadline: common::DEADLINE,
        cmdline: "quiet debug.write_archive=1".into(),
        ..kmodlab::vm::VmConfig::new(kmodlab::KernelConfig::Monolithic)
    };
    let report = common::run_with(&vm_config, vec![Command::Echo(b"after".to_vec())]);
    assert_eq!(
        report.end,
        RunEnd::ReadOnlyWrite {
            gpa: kmodlab_abi::layout::INITRD_GPA,
            what: "the module archive",
        },
        "{}",
        context(&report)
    );
    assert!(
        report
            .end
            .describe()
            .contains("which the kernel must only read"),
        "{}",
        report.end.describe()
    );
}
