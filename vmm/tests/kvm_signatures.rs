//! Module signatures in the running monolithic kernel (Linux's `CONFIG_MODULE_SIG`): the
//! archive's modules are signed by the build's key and load with `module.sig_enforce=1`;
//! unsigned ones and ones signed by another key are refused under enforcement and load with
//! Linux's one-time notice without it; a module changed after signing is refused either way,
//! as in Linux. Each refusal carries its exact message and errno.

mod common;

use std::time::Instant;

use common::{echo, kvm_usable};
use kmodlab::KernelConfig;
use kmodlab::control::Script;
use kmodlab::vm::{self, RunEnd, RunReport, VmConfig};
use kmodlab_abi::channel::{Command, ModuleError, ModuleRecord, Reply};
use kmodlab_abi::initramfs::Archive;

// From the one errno table (kmod_api::errno), as the kernel uses it.
const EKEYREJECTED: i32 = kmod_api::Errno::EKEYREJECTED.get();
const EBADMSG: i32 = kmod_api::Errno::EBADMSG.get();

/// Linux's notice for a module loaded without a valid signature (printed once per boot).
const UNSIGNED_NOTICE: &str =
    "module verification failed: signature and/or required key missing - tainting kernel";

fn archive_module(name: &str) -> Vec<u8> {
    Archive::new(kmodlab::artifacts::INITRAMFS)
        .expect("the embedded module archive parses")
        .find(&format!("lib/modules/{name}.ko"))
        .unwrap_or_else(|| panic!("{name}.ko is not in the module archive"))
        .data
        .to_vec()
}

/// `name`'s ELF part, without the signature the build appended.
fn unsigned(name: &str) -> Vec<u8> {
    let signed = archive_module(name);
    kmod_sig::split(&signed)
        .expect("archive modules have well-formed trailers")
        .expect("archive modules are signed")
        .module
        .to_vec()
}

/// `name` signed by the build's key, with one byte of its ELF part changed afterwards.
fn tampered(name: &str) -> Vec<u8> {
    let mut file = archive_module(name);
    // A byte of the section contents, past the ELF header: what an attacker patching code
    // would change.
    file[0x100] ^= 0x01;
    file
}

fn other_key() -> kmod_sig::SigningKey {
    kmod_sig::SigningKey::generate()
}

fn image(bytes: Vec<u8>) -> Command {
    Command::InitModuleImage {
        image: bytes,
        params: String::new(),
    }
}

fn init_module(name: &str) -> Command {
    Command::InitModule {
        name: name.into(),
        params: String::new(),
    }
}

fn delete_module(name: &str) -> Command {
    Command::DeleteModule { name: name.into() }
}

fn run(cmdline: &str, commands: Vec<Command>) -> RunReport<Script> {
    let vm_config = VmConfig {
        deadline: common::DEADLINE,
        cmdline: cmdline.into(),
        ..VmConfig::new(KernelConfig::Monolithic)
    };
    let report = vm::run(
        &vm_config,
        kmodlab::artifacts::images(KernelConfig::Monolithic),
        Script::new(commands.clone()),
        echo(),
        Instant::now(),
    )
    .unwrap_or_else(|e| panic!("the VMM could not run the guest: {e}"));
    assert_eq!(
        report.end,
        RunEnd::Exited { status: 0 },
        "{}",
        common::context(&report)
    );
    assert_eq!(
        report.controller.replies.len(),
        commands.len(),
        "{:#?}",
        report.controller.replies
    );
    report
}

fn loaded(report: &RunReport<Script>, i: usize) -> &ModuleRecord {
    match &report.controller.replies[i] {
        Reply::Module(m) => m,
        other => panic!("reply {i}: expected a loaded module, got {other:?}"),
    }
}

fn refused(report: &RunReport<Script>, i: usize) -> &ModuleError {
    match &report.controller.replies[i] {
        Reply::ModuleError(e) => e,
        other => panic!("reply {i}: expected a module error, got {other:?}"),
    }
}

fn identity_text(key: &kmod_sig::SigningKey) -> String {
    key.identity().to_string()
}

#[test]
fn enforced_signatures_refuse_unsigned_foreign_and_tampered_modules() {
    if !kvm_usable() {
        return;
    }
    let foreign = other_key();
    let mut truncated = archive_module("hello");
    // Drop bytes of the PKCS#7 message: the trailer's sig_len no longer fits the file's
    // structure (the marker is intact).
    let cut = truncated.len() - kmod_sig::MAGIC.len() - kmod_sig::SIGNATURE_INFO_SIZE - 8;
    truncated.drain(cut..cut + 8);
    let commands = vec![
        init_module("hello"),
        image(unsigned("hello")),
        image(tampered("hello")),
        image(foreign.sign(&unsigned("hello")).unwrap()),
        image(truncated),
        delete_module("hello"),
        Command::Shell {
            script: Some("modprobe kvclient; insmod params.ko; insmod big.ko; lsmod".into()),
        },
        Command::ListModules,
    ];
    // Not `quiet`: the kernel log goes to the console, where the assertions read it.
    let report = run("module.sig_enforce=1", commands);

    let hello = loaded(&report, 0);
    assert_eq!(hello.name, "hello");
    assert!(hello.load_cycles.verify > 0, "{:?}", hello.load_cycles);
    assert!(hello.load_cycles.verify < hello.load_cycles.total);

    assert_eq!(
        refused(&report, 1),
        &ModuleError {
            errno: EKEYREJECTED,
            message: "Loading of unsigned module is rejected (module.sig_enforce=1): the module \
                      is not signed"
                .into()
        }
    );
    assert_eq!(
        refused(&report, 2),
        &ModuleError {
            errno: EKEYREJECTED,
            message: "module signature verification failed: the module's signature does not \
                      match its contents (changed after signing)"
                .into()
        }
    );
    assert_eq!(
        refused(&report, 3),
        &ModuleError {
            errno: EKEYREJECTED,
            message: format!(
                "Loading of module with unavailable key is rejected (module.sig_enforce=1): the \
                 module is signed by a key this kernel does not trust ({})",
                identity_text(&foreign)
            )
        }
    );
    let e = refused(&report, 4);
    assert_eq!(e.errno, EBADMSG, "{e:?}");
    assert!(
        e.message
            .starts_with("module signature verification failed: the module signature is not a valid PKCS#7 message: "),
        "{e:?}"
    );
    assert_eq!(report.controller.replies[5], Reply::Done);

    let shell = match &report.controller.replies[6] {
        Reply::Shell(out) => out,
        other => panic!("expected the shell's output, got {other:?}"),
    };
    assert_eq!(shell.failed, 0, "{}", shell.output);
    let Reply::Modules(list) = &report.controller.replies[7] else {
        panic!("expected the module list");
    };
    let mut names: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["big", "crc32", "kvclient", "kvstore", "params", "ramblk"]
    );

    let log = report.console_text();
    assert!(
        log.contains("module: signatures enforced (module.sig_enforce=1)"),
        "{log}"
    );
    assert_eq!(
        log.matches("Loading of unsigned module is rejected\n")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("Loading of module with unavailable key is rejected\n")
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains(UNSIGNED_NOTICE), "{log}");
}

#[test]
fn without_enforcement_unsigned_modules_load_with_linux_notice_once() {
    if !kvm_usable() {
        return;
    }
    let foreign = other_key();
    let commands = vec![
        init_module("params"),
        image(unsigned("hello")),
        delete_module("hello"),
        image(foreign.sign(&unsigned("hello")).unwrap()),
        delete_module("hello"),
        image(tampered("hello")),
        init_module("hello"),
    ];
    let report = run("", commands);
    // The signed module loads before any notice; the unsigned one is the first to get it.
    loaded(&report, 0);
    assert_eq!(loaded(&report, 1).name, "hello");
    assert_eq!(report.controller.replies[2], Reply::Done);
    assert_eq!(loaded(&report, 3).name, "hello");
    assert_eq!(report.controller.replies[4], Reply::Done);
    // Changed after signing: refused even without enforcement, as Linux does.
    assert_eq!(
        refused(&report, 5),
        &ModuleError {
            errno: EKEYREJECTED,
            message: "module signature verification failed: the module's signature does not \
                      match its contents (changed after signing)"
                .into()
        }
    );
    assert_eq!(loaded(&report, 6).name, "hello");

    let log = report.console_text();
    assert_eq!(
        log.matches(&format!("hello: {UNSIGNED_NOTICE}\n")).count(),
        1,
        "Linux prints the notice once per boot:\n{log}"
    );
    assert!(!log.contains("params: module verification failed"), "{log}");
    assert!(!log.contains("is rejected"), "{log}");
}

#[test]
fn a_module_re_signed_with_the_build_key_after_a_change_loads_under_enforcement() {
    if !kvm_usable() {
        return;
    }
    // What makes a module acceptable is the signature, not where it came from: the ELF part
    // changed (a byte of padding in the string table's end would do; here the last byte of
    // the file, past every section) and signed again with the build's key.
    let key = kmod_tools::sign::read_key(std::path::Path::new(env!("KMODLAB_MODULE_SIG_KEY_FILE")))
        .expect("the build's signing key");
    let mut elf = unsigned("hello");
    elf.push(0);
    let report = run("module.sig_enforce=1", vec![image(key.sign(&elf).unwrap())]);
    assert_eq!(loaded(&report, 0).name, "hello");
}

#[test]
fn kmodlab_run_sig_enforce_sets_the_kernel_switch() {
    if !kvm_usable() {
        return;
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kmodlab"))
            .args(args)
            .output()
            .expect("cannot run the kmodlab binary");
        let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
        (
            out.status.code(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&["run", "--sig-enforce", "-c", "insmod hello.ko; lsmod"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("module: signatures enforced (module.sig_enforce=1)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\nhello "), "{stdout}");
    let (code, stdout, stderr) = run(&["run", "-c", "insmod hello.ko"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("signatures enforced"), "{stdout}");
    assert!(!stdout.contains("module verification failed"), "{stdout}");
}
