//! `kmodlab faults` on KVM, small: a microkernel campaign that covers every fault at every
//! phase must contain every one of them (no crash, no hang, no leaked frame, each reported
//! with module and offset, each lie refused, the other services answering), and the same
//! plan in the monolithic configuration must crash the kernel on each exception.

mod common;

use std::time::Duration;

use common::kvm_usable;
use kmodlab::KernelConfig;
use kmodlab::faults::plan::{COMBINATIONS, Fault, Phase, plan};
use kmodlab::faults::{self, Options, Silent, Verdict};

fn options(config: KernelConfig, count: u64, batch: u64) -> Options {
    Options {
        config,
        count,
        seed: 2026,
        batch,
        watchdog_ms: 50,
        command_timeout: Duration::from_secs(3),
        ram_bytes: 256 << 20,
    }
}

#[test]
fn a_microkernel_campaign_contains_every_fault_at_every_phase() {
    if !kvm_usable() {
        return;
    }
    let count = 40;
    assert!(count >= COMBINATIONS as u64);
    let c = faults::run(&options(KernelConfig::Microkernel, count, 20), &mut Silent)
        .expect("the campaign runs");
    let t = c.totals();
    let bad: Vec<_> = c
        .outcomes
        .iter()
        .filter(|o| o.verdict != Verdict::Contained)
        .collect();
    assert!(bad.is_empty(), "not contained: {bad:#?}");
    assert_eq!(t.injected, count);
    assert_eq!(t.contained, count);
    assert_eq!((t.kernel_crashes, t.hangs, t.leaked_frames), (0, 0, 0));
    assert_eq!(t.reported_with_offset, t.exceptions, "{t:?}");
    assert_eq!(t.lies_refused, t.lies, "{t:?}");
    assert!(t.lies >= 3, "garbage at init, exit and call: {t:?}");
    assert_eq!(t.services_answered, count);
    assert_eq!(c.run.boots, 2, "one boot per batch of 20");
    assert!(c.goal_met());
    // Every fault × phase ran, and the exceptions were reported with their vector.
    for fault in Fault::ALL {
        for phase in Phase::ALL {
            assert!(
                c.outcomes
                    .iter()
                    .any(|o| o.injection.fault == fault && o.injection.phase == phase),
                "{fault:?} at {phase:?} not injected"
            );
        }
    }
    for o in &c.outcomes {
        let expected = match o.injection.fault {
            Fault::Null | Fault::WildUser | Fault::WildKernelText | Fault::Stack => Some(14),
            Fault::Ud | Fault::Panic => Some(6),
            Fault::Div0 => Some(0),
            Fault::Loop => Some(kmodlab_abi::channel::WATCHDOG_VECTOR),
            Fault::WildNonCanonical => Some(13),
            Fault::Garbage => None,
            // Almost always #GP (a non-canonical pointer); #PF if the bytes were canonical.
            Fault::Scribble => o.vector.filter(|v| [13, 14].contains(v)),
        };
        assert_eq!(o.vector, expected, "{o:#?}");
        assert!(o.recovery_us.is_some(), "{o:#?}");
    }
}

#[test]
fn the_monolithic_campaign_reports_a_kernel_crash_per_exception() {
    if !kvm_usable() {
        return;
    }
    // A plan without `loop`: in the monolithic kernel it hangs, and each hang costs the
    // batch's whole deadline (kvm_modules.rs checks that hang); with a `garbage`, which the
    // kernel refuses without crashing.
    let count = 6;
    let seed = (0..)
        .find(|s| {
            let p = plan(count, *s);
            p.iter().all(|i| i.fault != Fault::Loop) && p.iter().any(|i| i.fault == Fault::Garbage)
        })
        .expect("some seed");
    let opts = Options {
        seed,
        ..options(KernelConfig::Monolithic, count, 10)
    };
    let c = faults::run(&opts, &mut Silent).expect("the campaign runs");
    assert_eq!(c.outcomes.len() as u64, count);
    for o in &c.outcomes {
        let what = format!("{}: {o:#?}", o.injection.params());
        match o.injection.fault {
            // The kernel checks the lies it is told, in either configuration.
            Fault::Garbage => assert_eq!(o.verdict, Verdict::Contained, "{what}"),
            // No watchdog in the kernel: a module that never returns hangs it.
            Fault::Loop => assert_eq!(o.verdict, Verdict::Hang, "{what}"),
            Fault::Scribble if !o.fired => {}
            _ => {
                assert_eq!(o.verdict, Verdict::KernelCrash, "{what}");
                // A double fault (the stack overflow's) leaves RIP undefined; every other
                // crash report names the module and the offset.
                if o.vector != Some(8) {
                    assert!(o.reported, "{what}");
                }
            }
        }
    }
    let t = c.totals();
    let exceptions = c
        .outcomes
        .iter()
        .filter(|o| o.injection.fault.is_exception() && o.injection.fault != Fault::Loop)
        .count() as u64;
    assert!(t.kernel_crashes >= 1, "{t:?}");
    assert_eq!(t.kernel_crashes + t.hangs + t.contained, count, "{t:?}");
    // Each crash cost a boot.
    assert_eq!(
        c.run.boots,
        1 + t.kernel_crashes + t.hangs - u64::from(ends_last(&c))
    );
    assert!(exceptions >= t.kernel_crashes);
    assert!(!c.goal_met());
}

/// Whether the campaign's last injection ended its boot (no boot followed it).
fn ends_last(c: &faults::Campaign) -> bool {
    c.outcomes
        .last()
        .is_some_and(|o| matches!(o.verdict, Verdict::KernelCrash | Verdict::Hang))
}
