//! The hardware-KVM guest setup (no VIF page, kernel page-table entries without U/S), which
//! most users run, booted on whatever KVM this machine has (issue 10, item 15): on a kvm_pvm
//! host through the VMM's debug option `VmConfig::hardware_setup` (`boot --hardware-setup`),
//! where supervisor code is then emulated, slowly, but the paging, boot and fault paths are
//! the hardware ones.
//!
//! What cannot run that way on kvm_pvm, and why: a user `syscall` is emulated without its
//! privilege switch (it faults at CPL 3 on the system call entry, #PF error 0x15), so user
//! programs that make system calls cannot run. The self-test must report its checks that need
//! them (system calls and IPC) as not run, never as passed; the shell cannot run. Modules load and unload
//! through the control channel, whose commands run in the kernel. The microkernel
//! configuration has no module loader yet; the one being built runs in user mode (a
//! module-manager program reached by system calls and IPC), so it cannot load modules in this
//! setup on kvm_pvm either: for it, boot and self-test only.

mod common;

use std::process::Command as Process;
use std::time::{Duration, Instant};

use common::{context, kvm_usable};
use kmodlab::KernelConfig;
use kmodlab::control::Script;
use kmodlab::vm::{self, RunEnd, RunReport, VmConfig};
use kmodlab_abi::KvmFlavour;
use kmodlab_abi::channel::{
    Command, FaultKind, Misbehaviour, ModuleState, Reply, SelfTestParams, SelfTestReport,
};
use kmodlab_abi::layout::MIN_RAM;

/// Emulated supervisor code costs thousands of cycles per instruction: a boot and a self-test
/// take seconds, not milliseconds (more on a loaded machine).
const DEADLINE: Duration = Duration::from_secs(180);

/// The checks that make system calls (IPC is system calls too), which cannot run in this
/// setup on kvm_pvm. A new check of that kind must be added here, or this test fails.
const NEED_SYSCALLS: [&str; 13] = [
    "user-mode loop runs",
    "null system calls run",
    "a write longer than 64 KiB gives EINVAL",
    "task_map into itself without the factory gives EACCES",
    "a bad user pointer gives EFAULT",
    "IPC round trips run",
    "IPC delivers words, payload and leases exactly",
    "a call to a server that dies fails with EPIPE from the kernel",
    "a call cycle fails with EDEADLK instead of hanging",
    "a malformed message fails with EINVAL",
    "a call through an empty capability slot fails with EBADF",
    "a computing program is preempted and resumes with its registers intact",
    "a program that loops forever is stopped by the watchdog",
];

/// Few iterations: every supervisor instruction is emulated.
const PARAMS: SelfTestParams = SelfTestParams {
    loop_iterations: 1_000,
    runs: 1,
    syscall_iterations: 10,
};

fn run(config: KernelConfig, commands: Vec<Command>) -> RunReport<Script> {
    let cfg = VmConfig {
        ram_bytes: MIN_RAM,
        deadline: DEADLINE,
        hardware_setup: true,
        ..VmConfig::new(config)
    };
    vm::run(
        &cfg,
        kmodlab::artifacts::images(config),
        Script::new(commands),
        common::echo(),
        Instant::now(),
    )
    .unwrap_or_else(|e| panic!("the VMM could not run the {config:?} guest: {e}"))
}

/// The self-test's verdict in this setup: on kvm_pvm, every check passes except those that
/// need system calls, which are reported as not run with the reason; on hardware KVM
/// (where the option changes nothing) every check passes.
fn assert_self_test(report: &RunReport<Script>, st: &SelfTestReport) {
    let on_pvm = report.flavour == KvmFlavour::Pvm;
    for c in &st.checks {
        let needs_syscalls = NEED_SYSCALLS.contains(&c.name.as_str());
        if on_pvm && needs_syscalls {
            assert!(!c.passed, "{c:?} passed although it cannot run");
            let why = c.not_run.as_deref().unwrap_or_else(|| panic!("{c:?}"));
            assert!(
                why.contains("does not reach supervisor mode") && why.contains("CPL 3"),
                "{c:?}"
            );
        } else {
            assert!(
                c.passed && c.not_run.is_none(),
                "{c:?}\n{}",
                context(report)
            );
        }
    }
    for name in NEED_SYSCALLS {
        assert!(
            st.checks.iter().any(|c| c.name == name),
            "no check {name:?}"
        );
    }
    // The hardware paths ran: kernel pages are supervisor-only, so user mode cannot read
    // kernel memory (on kvm_pvm's own setup it can).
    assert!(st.user_kernel_isolation, "{st:#?}");
    let ready = report.controller.ready.as_ref().expect("ready message");
    assert_eq!(ready.flavour, KvmFlavour::Hardware, "the guest's setup");
    assert_eq!(report.guest_setup, KvmFlavour::Hardware);
    assert!(!report.vif_registered, "no VIF page in the hardware setup");
}

/// Boots `config` in this setup, self-tests, and (monolithic) loads and unloads a module.
fn boot_and_self_test(config: KernelConfig) {
    let mut commands = vec![Command::SelfTest(PARAMS)];
    if config == KernelConfig::Monolithic {
        // Loading and unloading run in the kernel (no system call): the loader, the
        // module's code and the page-permission changes on the hardware paging path.
        commands.extend([
            Command::InitModule {
                name: "hello".into(),
                params: String::new(),
            },
            Command::ListModules,
            Command::DeleteModule {
                name: "hello".into(),
            },
            Command::ListModules,
        ]);
    }
    let report = run(config, commands);
    assert_eq!(
        report.end,
        RunEnd::Exited { status: 0 },
        "{config:?}: {}",
        context(&report)
    );
    let replies = &report.controller.replies;
    let Some(Reply::SelfTest(st)) = replies.first() else {
        panic!("{config:?}: {replies:?}");
    };
    assert_self_test(&report, st);
    if config == KernelConfig::Monolithic {
        match &replies[1] {
            Reply::Module(m) => {
                assert_eq!((m.name.as_str(), m.state), ("hello", ModuleState::Live))
            }
            other => panic!("hello did not load: {other:?}\n{}", context(&report)),
        }
        assert!(
            matches!(&replies[2], Reply::Modules(m) if m.len() == 1),
            "{replies:?}"
        );
        assert_eq!(replies[3], Reply::Done, "hello did not unload");
        assert!(
            matches!(&replies[4], Reply::Modules(m) if m.is_empty()),
            "{replies:?}"
        );
        let console = report.console_text();
        for line in [
            "hello: Hello from a kmodlab module",
            "hello: Goodbye from a kmodlab module",
        ] {
            assert!(console.contains(line), "{line:?} missing:\n{console}");
        }
    }
}

#[test]
fn the_monolithic_configuration_boots_self_tests_and_loads_a_module_with_the_hardware_setup() {
    if kvm_usable() {
        boot_and_self_test(KernelConfig::Monolithic);
    }
}

/// Boot and self-test only: the microkernel's module loader will run in user mode, which
/// cannot make system calls in this setup on kvm_pvm (see the module documentation).
#[test]
fn the_microkernel_configuration_boots_and_self_tests_with_the_hardware_setup() {
    if kvm_usable() {
        boot_and_self_test(KernelConfig::Microkernel);
    }
}

/// A supervisor fault in this setup is reported by the kernel's own handler, as on hardware
/// KVM: vector, CPL 0, the faulting address.
#[test]
fn a_supervisor_fault_is_reported_with_the_hardware_setup() {
    if !kvm_usable() {
        return;
    }
    let report = run(
        KernelConfig::Monolithic,
        vec![Command::Misbehave(Misbehaviour::SupervisorFault(
            FaultKind::NullDereference,
        ))],
    );
    match &report.end {
        RunEnd::KernelFault(f) => {
            assert_eq!((f.vector, f.cpl, f.cr2), (14, 0, 0), "{f:?}");
            assert!(
                common::kernel_text(KernelConfig::Monolithic).contains(&f.rip),
                "{f:?}"
            );
        }
        other => panic!("{other:?}\n{}", context(&report)),
    }
}

/// `kmodlab boot --hardware-setup` says which setup it booted and which checks it could not
/// run, and passes.
#[test]
fn boot_hardware_setup_reports_what_it_could_not_run() {
    if !kvm_usable() {
        return;
    }
    let out = Process::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args([
            "boot",
            "--hardware-setup",
            "--json",
            "--ram-mib",
            "64",
            "--runs",
            "1",
            "--iterations",
            "1000",
            "--timeout-secs",
            "180",
        ])
        .output()
        .expect("cannot run the kmodlab binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["guest_setup"], "hardware");
    let checks = v["checks"].as_array().expect("checks");
    let not_run: Vec<&str> = checks
        .iter()
        .filter(|c| !c["not_run"].is_null())
        .filter_map(|c| c["name"].as_str())
        .collect();
    if v["kvm_flavour"] == "pvm" {
        assert_eq!(not_run, NEED_SYSCALLS, "{checks:#?}");
        assert_eq!(v["pvm_vif_registered"], false);
        assert!(stderr.contains("WARNING: --hardware-setup"), "{stderr}");
        for name in NEED_SYSCALLS {
            assert!(
                stderr.contains(&format!("self-test check NOT RUN: {name} (")),
                "{stderr}"
            );
        }
    } else {
        assert!(not_run.is_empty(), "{checks:#?}");
    }
    assert!(
        checks
            .iter()
            .all(|c| c["passed"] == true || !c["not_run"].is_null()),
        "{checks:#?}"
    );
}
