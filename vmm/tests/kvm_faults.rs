//! KVM integration tests of a misbehaving guest: supervisor faults and triple faults end the
//! run with a report, user-mode faults are contained by the guest kernel, and garbage on the
//! control channel ends the run with an error instead of a VMM panic.

mod common;

use common::{CONFIGS, KERNEL_IMAGE_RANGE, context, kernel_text, kvm_usable, run};
use kmodlab::KernelConfig;
use kmodlab::vm::RunEnd;
use kmodlab_abi::channel::{
    Command, FaultKind, FrameError, MAX_PAYLOAD, Misbehaviour, Reply, vector_name,
};
use kmodlab_abi::ports::DOORBELL_MESSAGE;

const ALL_FAULTS: [FaultKind; 5] = [
    FaultKind::NullDereference,
    FaultKind::InvalidOpcode,
    FaultKind::DivideByZero,
    FaultKind::GeneralProtection,
    FaultKind::StackOverflow,
];

/// The vectors a fault may raise. A kernel stack overflow faults on the guard page and then
/// again pushing the #PF frame onto the same stack, which is a #DF, unless the kernel switches
/// stacks for #PF.
fn expected_vectors(kind: FaultKind, cpl: u8) -> &'static [u8] {
    match kind {
        FaultKind::NullDereference => &[14],
        FaultKind::InvalidOpcode => &[6],
        FaultKind::DivideByZero => &[0],
        FaultKind::GeneralProtection => &[13],
        FaultKind::StackOverflow if cpl == 0 => &[8, 14],
        FaultKind::StackOverflow => &[14],
    }
}

fn supervisor_fault_is_reported(config: KernelConfig, kind: FaultKind) {
    let report = run(
        config,
        vec![
            Command::Misbehave(Misbehaviour::SupervisorFault(kind)),
            // Must never run: the fault ends the guest.
            Command::Echo(vec![1, 2, 3]),
        ],
    );
    let RunEnd::KernelFault(f) = report.end else {
        panic!(
            "{config:?} {kind:?}: expected a kernel fault, got {}",
            context(&report)
        );
    };
    let what = format!("{config:?} {kind:?}: {f:x?}");
    assert!(
        expected_vectors(kind, 0).contains(&f.vector),
        "{what}: wrong vector"
    );
    assert_eq!(
        f.cpl, 0,
        "{what}: a supervisor fault reported as from CPL {}",
        f.cpl
    );
    assert!(
        KERNEL_IMAGE_RANGE.contains(&f.rip),
        "{what}: RIP outside the kernel image range"
    );
    // The CPU leaves the RIP saved by a #DF undefined; every other fault is at the
    // instruction that raised it, in the kernel's code.
    if f.vector != 8 {
        let text = kernel_text(config);
        assert!(text.contains(&f.rip), "{what}: RIP outside .text {text:x?}");
    }
    match kind {
        FaultKind::NullDereference => {
            assert_eq!(f.cr2, 0, "{what}: CR2 is not the null address");
            // Not present (bit 0), read (bit 1), supervisor (bit 2), data (bit 4).
            assert_eq!(f.error_code & 0b1_0111, 0, "{what}: wrong #PF error code");
        }
        FaultKind::GeneralProtection => assert_eq!(f.error_code, 0, "{what}"),
        _ => {}
    }
    assert!(
        report.controller.replies.is_empty(),
        "{what}: the guest replied after faulting: {:?}",
        report.controller.replies
    );
    let lines = report.last_console_lines(10).join("\n");
    let banner = format!(
        "KERNEL FAULT: {} (vector {}) in supervisor mode",
        vector_name(f.vector),
        f.vector
    );
    assert!(
        lines.contains(&banner),
        "{what}: console lacks {banner:?}:\n{lines}"
    );
    assert!(
        lines.contains(&format!("rip {:#018x}", f.rip)),
        "{what}: console lacks the RIP:\n{lines}"
    );
    assert!(
        report.end.describe().contains(&format!("{:#x}", f.rip)),
        "{what}: the description lacks the RIP"
    );
}

#[test]
fn supervisor_faults_are_reported_with_vector_and_rip() {
    if !kvm_usable() {
        return;
    }
    for config in CONFIGS {
        for kind in ALL_FAULTS {
            supervisor_fault_is_reported(config, kind);
        }
    }
}

/// A fault inside the kernel's allocator, with the heap locked (the kernel command line's
/// `debug.alloc_fault=1` makes the first allocation after boot execute `ud2` there), is
/// reported as a kernel fault: the fault report allocates nothing, so it does not wait
/// forever for the lock the faulting code holds.
#[test]
fn a_fault_inside_the_allocator_is_reported_not_a_hang() {
    if !kvm_usable() {
        return;
    }
    for config in CONFIGS {
        let vm_config = kmodlab::vm::VmConfig {
            deadline: common::DEADLINE,
            cmdline: "debug.alloc_fault=1".into(),
            ..kmodlab::vm::VmConfig::new(config)
        };
        // Decoding the command allocates (the echo's bytes): that allocation faults.
        let report = common::run_with(&vm_config, vec![Command::Echo(vec![1, 2, 3])]);
        let RunEnd::KernelFault(f) = report.end else {
            panic!(
                "{config:?}: expected a kernel fault, got {}",
                context(&report)
            );
        };
        assert_eq!((f.vector, f.cpl), (6, 0), "{config:?}: {f:x?}");
        let text = kernel_text(config);
        assert!(
            text.contains(&f.rip),
            "{config:?}: RIP outside .text: {f:x?}"
        );
        assert!(report.controller.replies.is_empty());
        let lines = report.last_console_lines(10).join("\n");
        assert!(
            lines.contains("debug.alloc_fault=1: the next heap allocation faults")
                && lines.contains("KERNEL FAULT: #UD invalid opcode (vector 6) in supervisor mode"),
            "{config:?}: console:\n{lines}"
        );
    }
}

#[test]
fn triple_fault_is_reported() {
    if !kvm_usable() {
        return;
    }
    for config in CONFIGS {
        let report = run(config, vec![Command::Misbehave(Misbehaviour::TripleFault)]);
        assert!(
            matches!(report.end, RunEnd::TripleFault { .. }),
            "{config:?}: {}",
            context(&report)
        );
        assert!(
            report.exits.get("shutdown") == Some(&1),
            "{:?}",
            report.exits
        );
        assert!(report.controller.replies.is_empty());
    }
}

#[test]
fn user_faults_are_contained_and_the_kernel_continues() {
    if !kvm_usable() {
        return;
    }
    // Every fault in one guest, then an Echo: the kernel must survive them all, in a row.
    let mut commands: Vec<Command> = ALL_FAULTS
        .iter()
        .map(|&k| Command::Misbehave(Misbehaviour::UserFault(k)))
        .collect();
    commands.push(Command::Echo(b"still alive".to_vec()));
    for config in CONFIGS {
        let report = run(config, commands.clone());
        assert_eq!(
            report.end,
            RunEnd::Exited { status: 0 },
            "{config:?}: {}",
            context(&report)
        );
        let replies = &report.controller.replies;
        assert_eq!(
            replies.len(),
            ALL_FAULTS.len() + 1,
            "{config:?}: {replies:?}"
        );
        for (kind, reply) in ALL_FAULTS.iter().zip(replies) {
            let Reply::UserFaultContained(f) = reply else {
                panic!("{config:?} {kind:?}: expected a contained user fault, got {reply:?}");
            };
            let what = format!("{config:?} {kind:?}: {f:x?}");
            assert_eq!(f.cpl, 3, "{what}");
            assert!(
                expected_vectors(*kind, 3).contains(&f.vector),
                "{what}: wrong vector"
            );
            assert!(
                f.rip < 0x0000_8000_0000_0000,
                "{what}: RIP not in user space"
            );
            match kind {
                FaultKind::NullDereference => {
                    assert_eq!(f.cr2, 0, "{what}");
                    // Not present, read, user (bit 2).
                    assert_eq!(f.error_code & 0b111, 0b100, "{what}: wrong #PF error code");
                }
                // The fault is at the stack pointer (a guard page), not somewhere else.
                FaultKind::StackOverflow => {
                    assert!(f.cr2.abs_diff(f.rsp) < 8192, "{what}: CR2 is not near RSP");
                }
                _ => {}
            }
        }
        assert_eq!(
            replies.last(),
            Some(&Reply::Echo(b"still alive".to_vec())),
            "{config:?}"
        );
    }
}

/// Runs one channel misbehaviour and returns how the run ended; the guest must not get to
/// reply to anything after it.
fn channel_misbehaviour(config: KernelConfig, how: Misbehaviour) -> RunEnd {
    let report = run(
        config,
        vec![Command::Misbehave(how), Command::Echo(vec![0])],
    );
    assert!(
        report.controller.replies.is_empty(),
        "{config:?} {how:?}: {:?}",
        report.controller.replies
    );
    report.end
}

#[test]
fn garbage_frame_is_a_channel_error() {
    if !kvm_usable() {
        return;
    }
    for config in CONFIGS {
        let end = channel_misbehaviour(config, Misbehaviour::GarbageFrame);
        assert!(
            matches!(end, RunEnd::ChannelError(FrameError::BadMagic { .. })),
            "{config:?}: {end:?}"
        );
    }
}

#[test]
fn oversized_frame_is_a_length_error() {
    if !kvm_usable() {
        return;
    }
    for config in CONFIGS {
        let end = channel_misbehaviour(config, Misbehaviour::OversizedFrame);
        assert_eq!(
            end,
            RunEnd::ChannelError(FrameError::BadLength {
                len: u32::MAX,
                capacity: MAX_PAYLOAD
            }),
            "{config:?}"
        );
    }
}

#[test]
fn bad_doorbell_is_reported() {
    if !kvm_usable() {
        return;
    }
    for config in CONFIGS {
        let end = channel_misbehaviour(config, Misbehaviour::BadDoorbell);
        let RunEnd::BadDoorbell { value } = end else {
            panic!("{config:?}: expected a bad doorbell, got {end:?}");
        };
        assert_ne!(value, DOORBELL_MESSAGE);
    }
}
