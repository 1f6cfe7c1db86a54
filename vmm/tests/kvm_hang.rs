//! KVM integration test of a hanging guest. It has this file (so this process) to itself:
//! the test counts the process's threads and file descriptors before and after, which only
//! means something when no other test is starting VMs at the same time.

mod common;

use std::time::{Duration, Instant};

use common::{KERNEL_IMAGE_RANGE, context, echo, kvm_usable, run};
use kmodlab::KernelConfig;
use kmodlab::control::{Controller, Event, Script};
use kmodlab::vm::{self, RunEnd, VmConfig};
use kmodlab_abi::channel::{Command, HostMsg, Misbehaviour, Reply};

/// A [`Script`] that also lists the process's threads while the guest runs, to show that
/// the before/after comparison sees the VM's threads at all.
struct ThreadListingScript {
    script: Script,
    threads_while_running: Option<Vec<String>>,
}

impl Controller for ThreadListingScript {
    fn next(&mut self, event: Event) -> HostMsg {
        if self.threads_while_running.is_none() {
            self.threads_while_running = Some(thread_names());
        }
        self.script.next(event)
    }
}

fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .count()
}

fn threads() -> usize {
    count_entries("/proc/self/task")
}

fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim_end().to_string())
        .collect();
    names.sort();
    names
}

fn fds() -> usize {
    count_entries("/proc/self/fd")
}

/// Waits briefly for the thread count to drop to `expected`: a joined thread leaves
/// `/proc/self/task` a moment after `join` returns (the kernel reaps it after waking the
/// joiner). A thread still stuck in `KVM_RUN` never leaves, so the wait cannot hide one.
fn threads_settle_to(expected: usize) -> usize {
    let start = Instant::now();
    loop {
        let n = threads();
        if n <= expected || start.elapsed() > Duration::from_millis(500) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn hanging_guest_is_stopped_at_the_deadline_without_leaving_threads() {
    if !kvm_usable() {
        return;
    }
    let threads_before = threads();
    let fds_before = fds();
    let deadline = Duration::from_secs(2);
    for config in [KernelConfig::Monolithic, KernelConfig::Microkernel] {
        let vm_config = VmConfig {
            deadline,
            ..VmConfig::new(config)
        };
        let start = Instant::now();
        let controller = ThreadListingScript {
            script: Script::new([
                Command::Misbehave(Misbehaviour::Hang),
                Command::Echo(vec![1]),
            ]),
            threads_while_running: None,
        };
        let report = vm::run(
            &vm_config,
            kmodlab::artifacts::images(config),
            controller,
            echo(),
            start,
        )
        .expect("the VMM could not run the guest");
        let took = start.elapsed();
        let RunEnd::Hung { after, rip } = report.end else {
            panic!("{config:?}: expected a hang, got {}", context(&report));
        };
        assert_eq!(after, deadline);
        assert!(
            took >= deadline,
            "{config:?}: stopped early, after {took:?}"
        );
        assert!(
            took < deadline + Duration::from_secs(2),
            "{config:?}: took {took:?} to stop a guest with a {deadline:?} deadline"
        );
        // The guest spins in its own code, so the VMM must have read a kernel RIP.
        let rip = rip.expect("no RIP read from the stopped vCPU");
        assert!(
            KERNEL_IMAGE_RANGE.contains(&rip),
            "{config:?}: RIP {rip:#x}"
        );
        assert!(report.controller.script.replies.is_empty());
        // The vCPU thread, and on kernels with KVM's NX huge-page recovery, a kernel worker
        // in this process's thread group that lives as long as the VM file descriptor.
        let during = report
            .controller
            .threads_while_running
            .clone()
            .unwrap_or_default();
        assert_eq!(
            during.iter().filter(|n| *n == "kmodlab-vcpu0").count(),
            1,
            "{config:?}: threads while the guest ran: {during:?}"
        );
        assert!(during.len() > threads_before, "{during:?}");
        assert!(
            report.exits.get("interrupted").copied().unwrap_or(0) >= 1,
            "{config:?}: the vCPU was not kicked: {:?}",
            report.exits
        );
        drop(report);
        assert_eq!(
            threads_settle_to(threads_before),
            threads_before,
            "{config:?}: a thread outlived the hung run: {:?}",
            thread_names()
        );
        assert_eq!(
            fds(),
            fds_before,
            "{config:?}: a file descriptor outlived the run"
        );
    }

    // The kick (a signal) must not disturb the next run in the same process.
    let report = run(KernelConfig::Monolithic, vec![Command::Echo(vec![7; 100])]);
    assert_eq!(
        report.end,
        RunEnd::Exited { status: 0 },
        "{}",
        context(&report)
    );
    assert_eq!(report.controller.replies, vec![Reply::Echo(vec![7; 100])]);
    drop(report);
    assert_eq!(threads_settle_to(threads_before), threads_before);
    assert_eq!(fds(), fds_before);
}
