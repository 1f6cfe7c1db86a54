//! Shared by the KVM integration tests: the KVM gate, one-call guest runs, and facts about the
//! embedded kernel images the assertions need.

// Each integration-test file compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

pub mod script_run;

use std::io::Write;
use std::time::{Duration, Instant};

use kmodlab::KernelConfig;
use kmodlab::control::Script;
use kmodlab::devices::serial::Echo;
use kmodlab::vm::{self, RunReport, VmConfig};
use kmodlab_abi::channel::Command;

/// Both kernel configurations, for tests that must hold for each.
pub const CONFIGS: [KernelConfig; 2] = [KernelConfig::Monolithic, KernelConfig::Microkernel];

/// Deadline for runs that are expected to finish: long enough for a loaded 2-core machine,
/// short enough that a hanging guest fails the test instead of stalling the suite.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Whether this process can use KVM. Without it the caller returns early (the test is
/// skipped, loudly), unless `KMODLAB_REQUIRE_KVM=1` (CI), where a missing KVM must fail.
pub fn kvm_usable() -> bool {
    match kmodlab::kvm::availability() {
        Ok(()) => true,
        Err(e) => {
            if std::env::var("KMODLAB_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("KMODLAB_REQUIRE_KVM=1 but KVM is unusable: {e}");
            }
            // Straight to the process's stderr, in one write so that parallel tests do not
            // interleave it: libtest captures `eprintln!` of passing tests, and a skip must
            // be visible in a plain `cargo test`.
            // libtest names each test's thread after the test.
            let test = std::thread::current().name().unwrap_or("test").to_owned();
            let line = format!("{test}: SKIPPED (no usable /dev/kvm: {e})\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            false
        }
    }
}

/// Console echo for test runs: quiet, unless `KMODLAB_TEST_CONSOLE=1` asks to watch the guest
/// while debugging a failing test.
pub fn echo() -> Echo {
    if std::env::var("KMODLAB_TEST_CONSOLE").as_deref() == Ok("1") {
        Echo::To(Box::new(std::io::stderr()))
    } else {
        Echo::Quiet
    }
}

/// Boots `config` with the embedded images, runs `commands` through a [`Script`] and returns
/// the report. Panics only if the VMM itself cannot run the guest.
pub fn run_with(vm_config: &VmConfig, commands: Vec<Command>) -> RunReport<Script> {
    run_images(
        vm_config,
        kmodlab::artifacts::images(vm_config.config),
        commands,
    )
}

/// [`run_with`] on images of the caller's (e.g. copies of the embedded ones).
pub fn run_images(
    vm_config: &VmConfig,
    images: vm::GuestImages<'_>,
    commands: Vec<Command>,
) -> RunReport<Script> {
    vm::run(
        vm_config,
        images,
        Script::new(commands),
        echo(),
        Instant::now(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "the VMM could not run the {:?} guest: {e}",
            vm_config.config
        )
    })
}

/// [`run_with`] on the default machine with the test deadline.
pub fn run(config: KernelConfig, commands: Vec<Command>) -> RunReport<Script> {
    let vm_config = VmConfig {
        deadline: DEADLINE,
        ..VmConfig::new(config)
    };
    run_with(&vm_config, commands)
}

/// Why a run ended, with the guest's last console lines: the message of a failed assertion.
pub fn context<C>(report: &RunReport<C>) -> String {
    format!(
        "{}\nlast console lines:\n{}",
        report.end.describe(),
        report.last_console_lines(25).join("\n")
    )
}

/// The virtual address range of the kernel image's executable segment (`.text`), read from
/// the embedded ELF, so a fault RIP can be checked against where kernel code really is.
pub fn kernel_text(config: KernelConfig) -> std::ops::Range<u64> {
    let elf = kmodlab::artifacts::kernel(config);
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    assert_eq!(
        &elf[..5],
        b"\x7fELF\x02",
        "the embedded kernel is not ELF64"
    );
    let phoff = u64_at(0x20) as usize;
    let phentsize = usize::from(u16_at(0x36));
    let phnum = usize::from(u16_at(0x38));
    const PT_LOAD: u32 = 1;
    const PF_X: u32 = 1;
    let text: Vec<_> = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&ph| u32_at(ph) == PT_LOAD && u32_at(ph + 4) & PF_X != 0)
        .map(|ph| u64_at(ph + 0x10)..u64_at(ph + 0x10) + u64_at(ph + 0x28))
        .collect();
    assert_eq!(text.len(), 1, "expected one executable segment: {text:x?}");
    text[0].clone()
}

/// The range the issue allows kernel segments in: `KERNEL_VIRT_OFFSET + [KERNEL_PHYS_START,
/// KERNEL_PHYS_END)`.
pub const KERNEL_IMAGE_RANGE: std::ops::Range<u64> = 0xffff_ffff_8020_0000..0xffff_ffff_8100_0000;

/// The median of `v`.
pub fn median(v: &[u64]) -> f64 {
    assert!(!v.is_empty(), "no samples");
    let mut s = v.to_vec();
    s.sort_unstable();
    let mid = s.len() / 2;
    if s.len() % 2 == 1 {
        s[mid] as f64
    } else {
        (s[mid - 1] as f64 + s[mid] as f64) / 2.0
    }
}
