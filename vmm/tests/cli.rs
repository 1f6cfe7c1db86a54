//! The `kmodlab` binary's command line: usage errors exit with status 2, and `boot --json`
//! prints the summary the issue asks for.

mod common;

use std::process::{Command, Output};

use common::kvm_usable;

fn kmodlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args(args)
        .output()
        .expect("cannot run the kmodlab binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Status of a command-line usage error (clap's, and the README's).
const USAGE: i32 = 2;

#[test]
fn usage_errors_exit_with_status_2() {
    for args in [
        &["boot", "--ram-mib", "7"][..],
        &["boot", "--ram-mib", "4096"],
        &["boot", "--config", "bogus"],
        &["boot", "--timeout-secs", "0"],
        &["boot", "--iterations", "10"],
        &["boot", "--no-such-flag"],
        &["frobnicate"],
        &[],
    ] {
        let out = kmodlab(args);
        assert_eq!(
            out.status.code(),
            Some(USAGE),
            "kmodlab {args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "kmodlab {args:?} printed to stdout");
        assert!(!stderr(&out).is_empty(), "kmodlab {args:?} gave no reason");
    }
}

/// `--ram-mib` must be even (the help says so; guest RAM is mapped in 2 MiB pages), and an
/// odd value is a usage error like any other out-of-range value.
#[test]
fn odd_ram_size_is_a_usage_error() {
    let out = kmodlab(&["boot", "--ram-mib", "65"]);
    assert_eq!(out.status.code(), Some(USAGE), "{}", stderr(&out));
}

#[test]
fn help_lists_the_subcommands() {
    let out = kmodlab(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["boot", "run", "shell", "modinfo", "depmod", "objstat"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "--help lacks {cmd}:\n{help}"
        );
    }
}

#[test]
fn boot_json_reports_flavour_and_native_supervisor() {
    if !kvm_usable() {
        return;
    }
    let out = kmodlab(&["boot", "--json", "--config", "microkernel", "--runs", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}"));
    let flavour = v["kvm_flavour"].as_str().expect("no kvm_flavour");
    assert!(flavour == "pvm" || flavour == "hardware", "{flavour}");
    assert_eq!(v["config"], "microkernel");
    assert_eq!(v["supervisor_native"], true);
    for key in [
        "boot_ms",
        "supervisor_loop_cycles_per_iter",
        "user_loop_cycles_per_iter",
        "syscall_roundtrip_cycles",
    ] {
        let x = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number"));
        assert!(x > 0.0 && x.is_finite(), "{key} = {x}");
    }
    let sup = v["supervisor_loop_cycles_per_iter"]
        .as_f64()
        .unwrap_or_default();
    let user = v["user_loop_cycles_per_iter"].as_f64().unwrap_or_default();
    assert!(sup <= 2.0 * user, "supervisor {sup} vs user {user}");
    assert!(
        v["vm_exits"]["io_doorbell"].as_u64().is_some(),
        "{}",
        v["vm_exits"]
    );
    assert_eq!(
        v["samples"]["user_loop_cycles"].as_array().map(Vec::len),
        Some(3)
    );
    let checks = v["checks"].as_array().expect("no checks");
    assert!(!checks.is_empty());
    assert!(checks.iter().all(|c| c["passed"] == true), "{checks:#?}");
}
