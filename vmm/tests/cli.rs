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
    for cmd in [
        "boot", "run", "shell", "modinfo", "depmod", "objstat", "sign",
    ] {
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
    // Native, not emulated (≈ 4,000×); see `selftest::NATIVE_RATIO_LIMIT` for why not 2×.
    assert!(
        sup <= kmodlab::selftest::NATIVE_RATIO_LIMIT * user,
        "supervisor {sup} vs user {user}"
    );
    assert_eq!(v["supervisor_native"], serde_json::Value::Bool(true));
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

/// A scratch directory of this test, made empty.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn sign_makes_a_key_signs_a_module_and_modinfo_shows_it_like_kmod() {
    let dir = scratch("cli-sign");
    let key = dir.join("key.pem");
    let out = kmodlab(&["sign", "--new-key", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("signer: issuer \"CN=kmodlab module signing key\", serial "),
        "{text}"
    );
    // Again: never overwritten.
    let again = kmodlab(&["sign", "--new-key", key.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    let unsigned = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/kmod-tools/tests/fixtures/kmodlab/hello.ko");
    let signed = dir.join("hello.ko");
    let out = kmodlab(&[
        "sign",
        key.to_str().unwrap(),
        unsigned.to_str().unwrap(),
        "-o",
        signed.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ours = kmodlab(&["modinfo", signed.to_str().unwrap()]);
    assert_eq!(ours.status.code(), Some(0), "{}", stderr(&ours));
    let ours = String::from_utf8(ours.stdout).unwrap();
    for field in [
        "sig_id:         PKCS#7\n",
        "sig_hashalgo:   sha256\n",
        "signature:      ",
    ] {
        assert!(ours.contains(field), "{ours}");
    }
    match std::process::Command::new("/sbin/modinfo")
        .arg(&signed)
        .output()
    {
        Ok(kmod) if kmod.status.success() => {
            assert_eq!(ours, String::from_utf8(kmod.stdout).unwrap());
        }
        _ => eprintln!("/sbin/modinfo is not installed: comparison against kmod SKIPPED"),
    }

    // Usage: a key without a module is a usage error; a file that is not a key is a failure.
    let out = kmodlab(&["sign", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(USAGE), "{}", stderr(&out));
    let out = kmodlab(&["sign", unsigned.to_str().unwrap(), signed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a PEM PKCS#8 ECDSA P-256 private key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn faults_refuses_bad_counts_with_a_clear_message() {
    for (args, says) in [
        (&["faults", "--count", "0"][..], "0 is not in 1..=10000000"),
        (
            &["faults", "--count", "lots"],
            "invalid digit found in string",
        ),
        (&["faults", "--count", "-5"], "unexpected argument '-5'"),
        (&["faults", "--batch", "0"], "0 is not in 1..=100000"),
        (&["faults", "--seed", "x"], "invalid digit found in string"),
        (&["faults", "--config", "hybrid"], "invalid value 'hybrid'"),
        (&["faults", "--watchdog-ms", "1"], "1 is not in 10..=10000"),
    ] {
        let out = kmodlab(args);
        assert_eq!(
            out.status.code(),
            Some(USAGE),
            "kmodlab {args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "kmodlab {args:?} printed to stdout");
        assert!(
            stderr(&out).contains(says),
            "kmodlab {args:?}: expected {says:?} in: {}",
            stderr(&out)
        );
    }
}
