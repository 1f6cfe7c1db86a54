//! Export names are a module's from the moment it is COMING, as in Linux (issue 10, item 14):
//! a module loaded by another's init (`request_module`) cannot take a name the first one
//! exports, and the first one, whose init succeeded, becomes LIVE instead of being discarded
//! without its exit running.
//!
//! The two exporters are `rival` (from the module archive) and a copy of it renamed `rivaX`
//! in its `.modinfo` (and unsigned), sent by the host: same code, same export `rival_token`,
//! another module.

mod common;

use common::{context, kvm_usable};
use kmod_api::Errno;
use kmodlab::KernelConfig;
use kmodlab::vm::RunEnd;
use kmodlab_abi::channel::{Command, ModuleState, Reply};
use kmodlab_abi::initramfs::Archive;

/// `rival.ko` from the embedded module archive.
fn rival() -> &'static [u8] {
    Archive::new(kmodlab::artifacts::INITRAMFS)
        .expect("the embedded module archive parses")
        .find("lib/modules/rival.ko")
        .expect("rival.ko is in the module archive")
        .data
}

/// `image` with its `.modinfo` `name=FROM` changed to `name=TO` (same length, so nothing
/// else in the file moves).
fn renamed(image: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let old = format!("name={from}\0").into_bytes();
    let new = format!("name={to}\0").into_bytes();
    let at: Vec<usize> = image
        .windows(old.len())
        .enumerate()
        .filter(|(_, w)| *w == old.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "name={from} occurs {} times", at.len());
    let mut out = image.to_vec();
    out[at[0]..at[0] + new.len()].copy_from_slice(&new);
    out
}

/// rivaX: rival renamed. Renaming invalidates the build's signature, so the copy goes
/// unsigned (signatures are not enforced by default; the kernel notes the taint and loads it).
fn copy_of_rival(params: &str) -> Command {
    Command::InitModuleImage {
        image: renamed(kmod_sig::strip(rival()), "rival", "rivaX"),
        params: params.into(),
    }
}

fn names(reply: &Reply) -> Vec<&str> {
    match reply {
        Reply::Modules(m) => m.iter().map(|r| r.name.as_str()).collect(),
        other => panic!("expected the module list, got {other:?}"),
    }
}

/// rivaX's init asks for rival, which exports the name rivaX is about to export: rival is
/// refused (ENOEXEC, Linux's "exports duplicate symbol ... (owned by ...)"), rivaX's init
/// carries on and rivaX becomes LIVE; unloading it runs its exit and frees the name.
#[test]
fn a_module_loaded_by_anothers_init_cannot_take_its_exports() {
    if !kvm_usable() {
        return;
    }
    let report = common::run(
        KernelConfig::Monolithic,
        vec![
            // Warm-up: the first load creates the registry and the module area's tables, the
            // first unsigned load prints (and logs) the once-per-boot taint notice, and two
            // load/unload cycles bring the export table's name arena to its steady capacity
            // (removed names are garbage until they are the majority, then compacted).
            Command::InitModuleImage {
                image: kmod_sig::strip(rival()).to_vec(),
                params: String::new(),
            },
            Command::DeleteModule {
                name: "rival".into(),
            },
            copy_of_rival(""),
            Command::DeleteModule {
                name: "rivaX".into(),
            },
            Command::Echo(Vec::new()),
            Command::MemoryStats,
            copy_of_rival("want=rival"),
            Command::ListModules,
            Command::DeleteModule {
                name: "rivaX".into(),
            },
            // The name is free again: rival itself loads now.
            Command::InitModule {
                name: "rival".into(),
                params: String::new(),
            },
            Command::DeleteModule {
                name: "rival".into(),
            },
            Command::ListModules,
            Command::Echo(Vec::new()),
            Command::MemoryStats,
        ],
    );
    assert_eq!(
        report.end,
        RunEnd::Exited { status: 0 },
        "{}",
        context(&report)
    );
    let replies = &report.controller.replies[5..];
    assert_eq!(replies.len(), 9, "{replies:#?}");
    match &replies[1] {
        Reply::Module(m) => {
            assert_eq!((m.name.as_str(), m.state), ("rivaX", ModuleState::Live));
        }
        other => panic!("rivaX did not load: {other:?}\n{}", context(&report)),
    }
    assert_eq!(names(&replies[2]), ["rivaX"]);
    assert_eq!(replies[3], Reply::Done);
    assert!(
        matches!(&replies[4], Reply::Module(m) if m.name == "rival"),
        "{:?}",
        replies[4]
    );
    assert_eq!(replies[5], Reply::Done);
    assert!(names(&replies[6]).is_empty());
    assert_eq!(replies[0], replies[8], "memory before and after");

    let console = report.console_text();
    let refused =
        "request_module rival: rival: exports duplicate symbol rival_token (owned by rivaX)";
    let told = format!(
        "rival: request_module(rival): {}",
        Errno::ENOEXEC.name().unwrap_or_default()
    );
    for line in [refused, told.as_str()] {
        assert!(console.contains(line), "missing {line:?}:\n{console}");
    }
    // From the second rivaX's COMING on (the warm-up is before): rival's init never ran during rivaX's
    // load, no exit ran before rivaX's unload, and each module's exit ran once.
    let coming = console
        .find("module rivaX (#3)")
        .unwrap_or_else(|| panic!("no notifier line for the second rivaX (#3):\n{console}"));
    let console = &console[coming..];
    let going = console
        .find("GOING")
        .unwrap_or_else(|| panic!("no GOING for rivaX:\n{console}"));
    for line in ["rival: loaded, exporting rival_token", "rival: exit ran"] {
        assert!(
            !console[..going].contains(line),
            "{line:?} before rivaX was unloaded:\n{console}"
        );
    }
    assert_eq!(console.matches("rival: exit ran").count(), 2, "{console}");
}

/// The plain case: a second exporter of a LIVE module's symbol is refused with Linux's message,
/// naming the owner rather than a provider number.
#[test]
fn a_second_exporter_of_a_live_symbol_is_refused_naming_its_owner() {
    if !kvm_usable() {
        return;
    }
    let report = common::run(
        KernelConfig::Monolithic,
        vec![
            Command::InitModule {
                name: "rival".into(),
                params: String::new(),
            },
            copy_of_rival(""),
            Command::ListModules,
        ],
    );
    assert_eq!(
        report.end,
        RunEnd::Exited { status: 0 },
        "{}",
        context(&report)
    );
    let replies = &report.controller.replies;
    match &replies[1] {
        Reply::ModuleError(e) => {
            assert_eq!(e.errno, Errno::ENOEXEC.get(), "{e:?}");
            assert_eq!(
                e.message,
                "rivaX: exports duplicate symbol rival_token (owned by rival)"
            );
        }
        other => panic!("the second exporter was not refused: {other:?}"),
    }
    assert_eq!(names(&replies[2]), ["rival"]);
}
