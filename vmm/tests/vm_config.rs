//! Setting up a run with bad parameters or images is an error the caller gets back (never a
//! panic, never a guest that runs anyway); the smallest allowed machine works.

mod common;

use std::time::Instant;

use common::{context, kvm_usable, run_with};
use kmodlab::KernelConfig;
use kmodlab::control::Script;
use kmodlab::devices::serial::Echo;
use kmodlab::vm::{self, GuestImages, RunEnd, VmConfig, VmError};
use kmodlab_abi::boot_info::MAX_CMDLINE;
use kmodlab_abi::channel::{Command, Reply};
use kmodlab_abi::layout::{MAX_RAM, MIN_RAM};

fn try_run(vm_config: &VmConfig, images: GuestImages<'_>) -> Result<RunEnd, VmError> {
    vm::run(
        vm_config,
        images,
        Script::new([]),
        Echo::Quiet,
        Instant::now(),
    )
    .map(|r| r.end)
}

fn with_ram(ram_bytes: u64) -> VmConfig {
    VmConfig {
        ram_bytes,
        ..VmConfig::new(KernelConfig::Monolithic)
    }
}

/// Checked before KVM is opened, so this runs (and must pass) on machines without KVM too.
#[test]
fn bad_ram_sizes_are_rejected() {
    let images = kmodlab::artifacts::images(KernelConfig::Monolithic);
    for ram in [
        0,
        7 << 20,
        MIN_RAM - (2 << 20),
        MIN_RAM + (1 << 20),
        MIN_RAM + 4096,
        MAX_RAM + (2 << 20),
        u64::MAX,
    ] {
        match try_run(&with_ram(ram), images) {
            Err(VmError::BadRamSize(r)) => assert_eq!(r, ram),
            other => panic!("{ram:#x} bytes of RAM: expected BadRamSize, got {other:?}"),
        }
    }
}

#[test]
fn smallest_machine_boots() {
    if !kvm_usable() {
        return;
    }
    let report = run_with(&with_ram(MIN_RAM), vec![Command::Echo(vec![5; 4096])]);
    assert_eq!(
        report.end,
        RunEnd::Exited { status: 0 },
        "{}",
        context(&report)
    );
    assert_eq!(report.controller.replies, vec![Reply::Echo(vec![5; 4096])]);
}

#[test]
fn unloadable_kernel_images_are_rejected() {
    if !kvm_usable() {
        return;
    }
    let good = kmodlab::artifacts::images(KernelConfig::Monolithic);
    let not_elf = GuestImages {
        kernel: b"this is not an ELF file",
        ..good
    };
    assert!(
        matches!(
            try_run(&with_ram(MIN_RAM), not_elf),
            Err(VmError::Kernel(_))
        ),
        "a non-ELF kernel was accepted"
    );
    // A real image cut short: its program headers are still there, its segments are not.
    let truncated = GuestImages {
        kernel: &good.kernel[..256],
        ..good
    };
    assert!(
        matches!(
            try_run(&with_ram(MIN_RAM), truncated),
            Err(VmError::Kernel(_))
        ),
        "a truncated kernel was accepted"
    );
}

#[test]
fn too_long_command_line_is_rejected() {
    if !kvm_usable() {
        return;
    }
    let vm_config = VmConfig {
        cmdline: "x".repeat(MAX_CMDLINE + 1),
        ..with_ram(MIN_RAM)
    };
    let images = kmodlab::artifacts::images(KernelConfig::Monolithic);
    assert!(
        matches!(try_run(&vm_config, images), Err(VmError::CmdlineTooLong)),
        "an overlong command line was accepted"
    );
}
