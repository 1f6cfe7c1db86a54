//! The guest shell's input and output, end to end through the `kmodlab` binary (issue 10,
//! items 9–12): no script line is cut and no command silently dropped, whatever its length;
//! output larger than the control channel arrives whole; every errno prints its `strerror`
//! text; and a command whose standard output cannot be written fails.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::kvm_usable;
use kmodlab::vm::{RunEnd, VmConfig};
use kmodlab_abi::channel::{self, Command as GuestCommand, Reply};

fn kmodlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args(args)
        .output()
        .expect("cannot run the kmodlab binary")
}

/// `kmodlab ARGS` with `stdin` as its input.
fn kmodlab_with_input(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the kmodlab binary");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // From a thread, so that a child writing much output before it reads cannot deadlock
    // with us; a child that stops reading early (it refused an oversized script) closes the
    // pipe, which is its right, not a failure.
    let writer = std::thread::spawn(move || match input.write_all(&stdin) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            panic!("write the shell's input: {e}")
        }
        _ => {}
    });
    let out = child.wait_with_output().expect("wait for kmodlab");
    writer.join().expect("the input writer");
    out
}

/// stdout and stderr with `\n` line ends (the guest console's are `\r\n`).
fn outputs(out: &Output) -> (String, String) {
    let text = |b: &[u8]| String::from_utf8_lossy(b).replace("\r\n", "\n");
    (text(&out.stdout), text(&out.stderr))
}

/// The commands a script run echoed, in order (the shell echoes each after its prompt).
fn echoed(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("kmodlab# "))
        .collect()
}

/// The shell's longest line (`guest-kernel/user/src/bin/sh.rs`, `MAX_LINE`).
const SHELL_MAX_LINE: usize = 64 << 10;

/// 200 `insmod; rmmod` pairs on one line (≈ 5,600 bytes) ran 293 of 401 commands and exited 0:
/// the line was cut at 4,096 bytes. Every command must run, in order.
#[test]
fn a_script_line_longer_than_4096_bytes_runs_every_command() {
    if !kvm_usable() {
        return;
    }
    let mut line = String::new();
    for _ in 0..200 {
        line.push_str("insmod hello.ko; rmmod hello; ");
    }
    line.push_str("lsmod");
    assert!(line.len() > 4096 + 1024, "{}", line.len());
    // A second long line: one 5,000-character word, echoed whole, then a short line.
    let word = "x".repeat(5_000);
    let script = format!("{line}\necho {word}\necho after");
    let out = kmodlab(&["run", "--quiet", "-c", &script]);
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    let mut expected: Vec<String> = Vec::new();
    for _ in 0..200 {
        expected.push("insmod hello.ko".into());
        expected.push("rmmod hello".into());
    }
    expected.push("lsmod".into());
    expected.push(format!("echo {word}"));
    expected.push("echo after".into());
    assert_eq!(echoed(&stdout), expected, "{stderr}");
    assert!(
        stdout.contains(&format!("\n{word}\n")),
        "the long word was cut"
    );
    assert!(stdout.ends_with("kmodlab# echo after\nafter\n"), "{stdout}");
}

/// A line longer than the shell takes is refused with a clear message, counted as failed (exit
/// 1), and the lines after it still run; nothing of it runs.
#[test]
fn a_line_longer_than_the_shell_takes_fails_clearly_and_the_rest_runs() {
    if !kvm_usable() {
        return;
    }
    let long = format!("echo {}", "y".repeat(SHELL_MAX_LINE + 100));
    let script = format!("echo before\n{long}\necho after");
    let out = kmodlab(&["run", "--quiet", "-c", &script]);
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");
    assert_eq!(echoed(&stdout), ["echo before", "echo after"], "{stdout}");
    assert!(
        stdout.contains(&format!(
            "sh: line 2 is {} bytes long, more than the {SHELL_MAX_LINE} this shell takes; \
             it was not run\n",
            long.len()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("yyyy"), "part of the refused line ran");
    assert!(
        stderr.contains("kmodlab: 1 of 3 shell commands failed"),
        "{stderr}"
    );
}

/// A script the control channel cannot carry is refused before anything boots, saying how
/// large it may be (a usage error, status 2): given with `-f` (a command-line argument cannot
/// even hold one: Linux limits each to 128 KiB), from a file or from standard input.
#[test]
fn a_script_larger_than_the_control_channel_is_refused_before_boot() {
    let max = kmodlab::control::max_script_bytes();
    let script = "echo 0123456789abcdef\n".repeat(max / 20);
    assert!(script.len() > max);
    let dir = std::env::temp_dir().join(format!("kmodlab-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let file = dir.join("script");
    std::fs::write(&file, &script).expect("write the script");
    let file = file.to_str().expect("UTF-8 path");
    for (args, input) in [
        (vec!["run", "-f", file], &b""[..]),
        (vec!["run", "-f", "-"], script.as_bytes()),
    ] {
        let out = kmodlab_with_input(&args, input);
        let (stdout, stderr) = outputs(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}\n{stdout}");
        assert!(stdout.is_empty(), "{stdout}");
        let name = if args[2] == "-" { "-" } else { file };
        assert!(
            stderr.contains(&format!(
                "kmodlab: the script {name} is more than {max} bytes; the control channel \
                 carries at most {max} bytes of script"
            )),
            "{args:?}: {stderr}"
        );
    }
    // A script from a file runs like one given with -c.
    if kvm_usable() {
        std::fs::write(dir.join("small"), "echo from a file\nlsmod\n").expect("write");
        let small = dir.join("small");
        let out = kmodlab(&["run", "--quiet", "-f", small.to_str().expect("UTF-8")]);
        let (stdout, stderr) = outputs(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(echoed(&stdout), ["echo from a file", "lsmod"]);
        assert!(stdout.contains("\nfrom a file\n"), "{stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// More than half a MiB of shell output (the control channel's half) ended the run with "the
/// VMM's answer is unreadable", blaming the host for the guest's oversized reply. It must
/// arrive whole, on the console and in the shell's reply.
#[test]
fn shell_output_larger_than_the_control_channel_arrives_whole() {
    if !kvm_usable() {
        return;
    }
    let n = 800;
    let script = vec!["help"; n].join("\n");
    let out = kmodlab(&["run", "--quiet", "-c", &script]);
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.len() > channel::HALF_SIZE, "{} bytes", stdout.len());
    assert_eq!(echoed(&stdout).len(), n);
    assert_eq!(stdout.matches("several commands on one line").count(), n);

    // The same through the control channel: the reply holds every byte the shell wrote, and
    // the console shows the same text.
    let cfg = VmConfig {
        deadline: common::DEADLINE,
        cmdline: "quiet".into(),
        ..VmConfig::new(kmodlab::KernelConfig::Monolithic)
    };
    let report = common::run_with(
        &cfg,
        vec![GuestCommand::Shell {
            script: Some(script),
        }],
    );
    assert_eq!(
        report.end,
        RunEnd::Exited { status: 0 },
        "{}",
        common::context(&report)
    );
    let Some(Reply::Shell(shell)) = report.controller.replies.first() else {
        panic!("{:?}", report.controller.replies);
    };
    assert_eq!((shell.lines, shell.failed), (n as u32, 0));
    assert_eq!(shell.output.replace("\r\n", "\n"), stdout);
    // The kernel's count of streamed bytes is what arrived, and nothing was dropped.
    assert_eq!(shell.output_bytes, shell.output.len() as u64);
    assert_eq!(report.controller.output_dropped, 0);
}

/// Input that ends without a final newline: the last line runs and the shell ends, instead of
/// waiting for input that never comes.
#[test]
fn interactive_input_without_a_final_newline_runs_its_last_line() {
    if !kvm_usable() {
        return;
    }
    let long = "z".repeat(6_000);
    let input = format!("echo one\necho {long}\necho two");
    let out = kmodlab_with_input(&["shell", "--timeout-secs", "30"], input.as_bytes());
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    assert!(stdout.contains("one\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("{long}\n")),
        "the 6,000-byte line was cut"
    );
    assert!(stdout.contains("two\n"), "{stdout}");
}

/// An errno the old table lacked (ENOSPC from kvclient on a ramblk too small for its keys)
/// printed "Unknown error"; it prints glibc's text.
#[test]
fn every_errno_prints_its_strerror_text() {
    if !kvm_usable() {
        return;
    }
    let out = kmodlab(&[
        "run",
        "--quiet",
        "-c",
        "insmod crc32; insmod ramblk blocks=8; insmod kvstore; insmod kvclient keys=48",
    ]);
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");
    let text = kmod_api::Errno::ENOSPC
        .text()
        .expect("ENOSPC is in the table");
    assert_eq!(text, "No space left on device");
    assert!(
        stdout.contains(&format!(
            "insmod: ERROR: could not insert module kvclient.ko: {text}"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("Unknown error"), "{stdout}");
}

/// `kmodlab ARGS > /dev/full`: the status and stderr.
fn to_dev_full(args: &[&str]) -> (Option<i32>, String) {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let out = Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .expect("cannot run the kmodlab binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every command that writes standard output fails (status 1, a message naming the cause)
/// when that write fails, as the host tools already did; `run` exited 0 with its output lost.
#[test]
fn every_command_fails_when_its_standard_output_cannot_be_written() {
    let dir = std::env::temp_dir().join(format!("kmodlab-devfull-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let ko = dir.join("hello.ko");
    let archive = kmodlab_abi::initramfs::Archive::new(kmodlab::artifacts::INITRAMFS)
        .expect("the embedded archive parses");
    let hello = archive.find("lib/modules/hello.ko").expect("hello.ko");
    std::fs::write(&ko, hello.data).expect("write hello.ko");
    let ko = ko.to_str().expect("UTF-8 path");

    let dir_arg = dir.to_str().expect("UTF-8 path");
    let mut cases: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["--version"],
        vec!["run", "--help"],
        vec!["modinfo", ko],
        vec!["objstat", ko],
        vec!["objstat", "--json", ko],
        vec!["depmod", "-n", dir_arg],
    ];
    if kvm_usable() {
        cases.extend([
            vec!["boot", "--runs", "1"],
            vec!["boot", "--json", "--runs", "1"],
            vec!["run", "--quiet", "-c", "lsmod"],
            vec!["run", "-c", "echo hello"],
            vec!["shell", "--timeout-secs", "30"],
        ]);
    }
    for args in cases {
        let (status, stderr) = to_dev_full(&args);
        assert_eq!(status, Some(1), "kmodlab {args:?} > /dev/full: {stderr}");
        assert!(
            stderr.contains("No space left on device"),
            "kmodlab {args:?} > /dev/full gave no reason: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
