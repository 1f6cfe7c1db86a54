//! KVM integration tests of the microkernel configuration's module subsystem: the module
//! manager (`sbin/modmgr`) and module servers (`sbin/kmodrt` + one module each), mirroring
//! `kvm_modules.rs` for the monolithic kernel — every module loads, runs and unloads, the
//! same errors give the same errno and message (compared with the monolithic kernel in the
//! same test), dependencies, request_module, the undo of failed loads measured by the
//! kernel's memory statistics — plus what only a microkernel has: a module that faults is
//! contained (`faulty` in every mode, at init, exit and during a call), the restart policy,
//! and one shell script run in both configurations with the outputs diffed.
//!
//! Module servers show up in the kernel's `MemoryStats` (their tasks are kernel objects,
//! their pages frames), so "memory as before" covers the servers too; the manager's own heap
//! is a static arena, mapped once at boot.

mod common;

use common::script_run::{Run, delete_module, init_module, service_call, shell};
use common::{echo, kvm_usable};
use std::path::Path;
use std::time::{Duration, Instant};

use kmodlab::KernelConfig;
use kmodlab::control::Script;
use kmodlab::vm::{self, GuestImages, VmConfig};
use kmodlab_abi::channel::{
    Command, FaultPhase, ModuleRecord, ModuleState, Reply, ShellOutput, WATCHDOG_VECTOR,
    vector_name,
};

// ---- harness ------------------------------------------------------------------------------

const DEADLINE: Duration = common::DEADLINE;

/// A module server's module area (`kmodlab_ipc::layout::MODULE_BASE..MODULE_END`): where a
/// module's code runs in its server, the same address in every server.
const MODULE_AREA: std::ops::Range<u64> = 0x4000_0000..0x7000_0000;
/// Where every module's core region starts in its server.
const MODULE_BASE: u64 = 0x4000_0000;

/// Every module of the archive that is meant to load, in an order that loads providers
/// first (as in `kvm_modules.rs`).
const LOADABLE: [&str; 10] = [
    "hello", "params", "crc32", "ramblk", "kvstore", "kvclient", "cstats", "big", "faulty",
    "autoload",
];

/// The kvclient chain in dependency order (providers first).
const CHAIN: [&str; 4] = ["crc32", "ramblk", "kvstore", "kvclient"];

/// How to boot for one test.
#[derive(Clone)]
struct Boot {
    config: KernelConfig,
    images: GuestImages<'static>,
    deadline: Duration,
    cmdline: Vec<&'static str>,
}

impl Boot {
    fn microkernel() -> Boot {
        Boot {
            config: KernelConfig::Microkernel,
            images: kmodlab::artifacts::images(KernelConfig::Microkernel),
            deadline: DEADLINE,
            cmdline: Vec::new(),
        }
    }

    fn monolithic() -> Boot {
        Boot {
            config: KernelConfig::Monolithic,
            images: kmodlab::artifacts::images(KernelConfig::Monolithic),
            ..Boot::microkernel()
        }
    }

    fn both() -> [Boot; 2] {
        [Boot::monolithic(), Boot::microkernel()]
    }

    fn quiet(mut self) -> Boot {
        self.cmdline.push("quiet");
        self
    }

    fn arg(mut self, word: &'static str) -> Boot {
        self.cmdline.push(word);
        self
    }

    fn deadline(self, deadline: Duration) -> Boot {
        Boot { deadline, ..self }
    }

    fn run(&self, commands: Vec<Command>) -> Run {
        let vm_config = VmConfig {
            deadline: self.deadline,
            cmdline: self.cmdline.join(" "),
            ..VmConfig::new(self.config)
        };
        let report = vm::run(
            &vm_config,
            self.images,
            Script::new(commands),
            echo(),
            Instant::now(),
        )
        .unwrap_or_else(|e| panic!("the VMM could not run the guest: {e}"));
        Run { report }
    }
}

/// The script shell's output, split per command: `(command line, what it printed)`.
fn sections(output: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in output.lines() {
        if let Some(cmd) = line.strip_prefix("kmodlab# ") {
            out.push((cmd.to_string(), String::new()));
        } else {
            let (_, text) = out
                .last_mut()
                .unwrap_or_else(|| panic!("shell output before the first prompt: {output}"));
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

fn section<'a>(sections: &'a [(String, String)], cmd: &str) -> &'a str {
    let found: Vec<_> = sections.iter().filter(|(c, _)| c == cmd).collect();
    assert_eq!(found.len(), 1, "command {cmd:?} in {sections:#?}");
    &found[0].1
}

const LSMOD_HEADER: &str = "Module                  Size  Used by";

/// What `lsmod` must print for `records`: kmod's columns, newest first, `[faulted]` after a
/// module whose server died.
fn expected_lsmod(records: &[ModuleRecord]) -> String {
    let mut out = format!("{LSMOD_HEADER}\n");
    for r in records.iter().rev() {
        let size = r.core_bytes + if r.init_freed { 0 } else { r.init_bytes };
        out.push_str(&format!("{:<19} {:>8}  {}", r.name, size, r.refcount));
        if !r.used_by.is_empty() {
            out.push(' ');
            out.push_str(&r.used_by.join(","));
        }
        if r.fault.is_some() {
            out.push_str(" [faulted]");
        }
        out.push('\n');
    }
    out
}

fn set(items: &[String]) -> std::collections::BTreeSet<&str> {
    items.iter().map(String::as_str).collect()
}

fn names(records: &[ModuleRecord]) -> Vec<&str> {
    records.iter().map(|r| r.name.as_str()).collect()
}

fn record<'a>(records: &'a [ModuleRecord], name: &str) -> &'a ModuleRecord {
    records
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} is not loaded: {:?}", names(records)))
}

fn position(haystack: &str, needle: &str) -> usize {
    haystack
        .find(needle)
        .unwrap_or_else(|| panic!("console lacks {needle:?}:\n{haystack}"))
}

fn assert_contains(haystack: &str, needle: &str, what: &str) {
    assert!(
        haystack.contains(needle),
        "{what}: {needle:?} not found in:\n{haystack}"
    );
}

/// All `module NAME (#N): STATE` lines of `console`, as `(name, state)`, in order.
fn state_lines(console: &str) -> Vec<(String, String)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("module ")?;
            let (name, rest) = rest.split_once(" (#")?;
            let (_, state) = rest.split_once("): ")?;
            Some((name.to_string(), state.to_string()))
        })
        .collect()
}

/// Where the manager's first `module NAME (#N): STATE` line is in `console`.
fn state_line(console: &str, name: &str, state: &str) -> usize {
    let prefix = format!("module {name} (#");
    console
        .match_indices(&prefix)
        .map(|(i, _)| i)
        .find(|&i| {
            let line = console[i..].lines().next().unwrap_or("");
            line.ends_with(&format!("): {state}"))
        })
        .unwrap_or_else(|| panic!("console lacks {prefix}..): {state}:\n{console}"))
}

/// Checks the accounting of a LIVE module record of a module server.
fn assert_live_server_record(r: &ModuleRecord) {
    let what = format!("record of {}: {r:#?}", r.name);
    assert_eq!(r.state, ModuleState::Live, "{what}");
    assert_eq!(r.fault, None, "{what}");
    assert_eq!(r.core_base, MODULE_BASE, "{what}: core base");
    assert!(r.core_bytes > 0 && r.init_bytes > 0, "{what}: region bytes");
    assert!(r.init_freed, "{what}: init region not freed");
    assert_eq!(r.pages, r.core_bytes.div_ceil(4096), "{what}: pages");
    assert!(r.metadata_bytes > 0 && r.relocations > 0, "{what}");
    let c = r.load_cycles;
    for (step, cycles) in [
        ("copy", c.copy),
        ("verify", c.verify),
        ("validate", c.validate),
        ("layout", c.layout),
        ("allocate", c.allocate),
        ("resolve", c.resolve),
        ("relocate", c.relocate),
        ("protect", c.protect),
        ("init", c.init),
        ("total", c.total),
        ("aspace", c.aspace),
        ("transfer", c.transfer),
        ("start", c.start),
    ] {
        assert!(cycles > 0, "{what}: no cycles for the {step} step");
    }
    let steps = c.copy
        + c.verify
        + c.validate
        + c.params
        + c.layout
        + c.allocate
        + c.resolve
        + c.relocate
        + c.protect
        + c.init
        + c.aspace
        + c.transfer
        + c.start;
    assert!(c.total >= steps, "{what}: total below the sum of the steps");
    // Memory by kind: the server's own page tables, stack, kernel objects, IPC buffers,
    // heap, runtime copy.
    let f = r.footprint;
    assert_eq!(f.section_bytes, r.core_bytes, "{what}");
    assert_eq!(f.section_pages, r.pages, "{what}");
    assert!(f.page_table_pages >= 3, "{what}: page tables");
    assert_eq!(f.stack_bytes, 64 * 1024, "{what}: stack");
    assert!(f.kernel_object_bytes > 0, "{what}: kernel objects");
    assert!(f.ipc_buffer_bytes >= 4096, "{what}: IPC buffers");
    assert!(f.heap_bytes >= 64 * 1024, "{what}: heap");
    assert!(f.runtime_bytes >= 8 * 4096, "{what}: runtime");
    assert_eq!(f.metadata_bytes, r.metadata_bytes, "{what}");
    assert_eq!(r.refcount as usize, r.used_by.len(), "{what}: refcount");
}

/// One file of the loader's corpus of malformed modules.
struct Malformed {
    file: String,
    bytes: Vec<u8>,
}

fn corpus() -> Vec<Malformed> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/kmod-loader/tests/corpus");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (entry, _) = l.split_once('#').unwrap_or((l, ""));
            let (file, _) = entry.trim().split_once(' ').expect("FILE KIND");
            let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            Malformed {
                file: file.into(),
                bytes,
            }
        })
        .collect()
}

/// What each module prints on init and on exit (as in `kvm_modules.rs`).
fn init_and_exit_lines(name: &str) -> (&'static str, &'static str) {
    match name {
        "hello" => (
            "hello: Hello from a kmodlab module",
            "hello: Goodbye from a kmodlab module",
        ),
        "params" => (
            "params: greeted 3 times, sum of offsets -3",
            "params: unloaded (count was 3)",
        ),
        "crc32" => (
            "crc32: self-test ok: crc32(\"123456789\")=0xcbf43926",
            "crc32: service \"crc32\" unregistered",
        ),
        "ramblk" => (
            "ramblk: 64 blocks x 512 bytes = 32768 bytes ready (self-test ok)",
            "32768 bytes freed",
        ),
        "kvstore" => (
            "kvstore: formatted 63 slots on ramblk",
            "kvstore: 0 keys left in 63 slots; detached from ramblk",
        ),
        "kvclient" => (
            "kvclient: put 16, read back 16 ok, deleted 4, count 12",
            "kvclient: removed 12 keys, store count now 0",
        ),
        "cstats" => ("cstats: 1000 samples (seed 42)", "cstats: freed 4000 bytes"),
        "big" => ("big: 112744 generated relocations checked", "big: unloaded"),
        "faulty" => (
            "faulty: about to fault: mode=none\nfaulty: mode=none did not fault\nfaulty: loaded cleanly",
            "faulty: unloaded",
        ),
        "autoload" => (
            "autoload: request_module(kvclient): ok\nrequest_module autoload: module autoload is busy (Loading)\nautoload: request_module(self) while COMING: EBUSY, as expected",
            "autoload: request_module(self) while GOING: EBUSY, as expected",
        ),
        other => panic!("no expectations for module {other}"),
    }
}

/// The parameters each module is loaded with here: the defaults (autoload asks for
/// kvclient, which is LIVE by then).
fn params_of(_name: &str) -> &'static str {
    ""
}

// ---- 1. insmod / lsmod / rmmod of every module ----------------------------------------------

#[test]
fn every_module_loads_into_its_own_server_runs_and_unloads() {
    if !kvm_usable() {
        return;
    }
    let load: Vec<String> = LOADABLE
        .iter()
        .map(|m| format!("insmod {m}.ko {}", params_of(m)))
        .collect();
    let unload: Vec<String> = LOADABLE
        .iter()
        .rev()
        .map(|m| format!("rmmod {m}"))
        .collect();
    let run = Boot::microkernel().run(vec![
        shell(&format!("{}; lsmod; lsmod -v", load.join("; "))),
        Command::ListModules,
        shell(&format!("{}; lsmod", unload.join("; "))),
        Command::ListModules,
    ]);
    run.assert_clean(4);
    let console = run.console();

    let loaded = run.shell(0);
    assert_eq!(
        (loaded.lines, loaded.failed),
        (LOADABLE.len() as u32 + 2, 0),
        "{}",
        loaded.output
    );
    let records = run.modules(1);
    assert_eq!(names(records), LOADABLE, "load order");
    for r in records {
        assert_live_server_record(r);
    }
    let out = sections(&loaded.output);
    assert_eq!(section(&out, "lsmod"), expected_lsmod(records));
    let verbose = section(&out, "lsmod -v");
    let n = records.len() as u64;
    assert!(
        verbose.starts_with(&format!(
            "transitions since boot: {n} COMING, {n} LIVE, 0 GOING\n"
        )),
        "{verbose}"
    );
    for r in records {
        let c = r.load_cycles;
        assert_contains(
            verbose,
            &format!(
                "{}: state Live, core {} B at {:#x}, init {} B (freed), metadata {} B, {} pages, \
                 {} relocations\n  load cycles: copy {} verify {} validate {} params {} layout {} \
                 allocate {} resolve {} relocate {} protect {} init {} total {}\n  server steps: \
                 aspace {} transfer {} start {}\n  server memory: sections {} pages, page tables",
                r.name,
                r.core_bytes,
                r.core_base,
                r.init_bytes,
                r.metadata_bytes,
                r.pages,
                r.relocations,
                c.copy,
                c.verify,
                c.validate,
                c.params,
                c.layout,
                c.allocate,
                c.resolve,
                c.relocate,
                c.protect,
                c.init,
                c.total,
                c.aspace,
                c.transfer,
                c.start,
                r.footprint.section_pages,
            ),
            "lsmod -v",
        );
    }
    let big = record(records, "big");
    assert!(big.relocations > 100_000, "{big:#?}");
    assert!(big.pages > 256, "{big:#?}");
    // Dependencies as the symbols make them, as in the monolithic kernel: each import of an
    // export is a call stub and a capability to the exporter's server.
    let get = |name: &str| record(records, name);
    assert_eq!(set(&get("crc32").used_by), ["cstats", "kvstore"].into());
    assert_eq!(set(&get("ramblk").used_by), ["kvstore"].into());
    assert_eq!(set(&get("kvstore").uses), ["crc32", "ramblk"].into());
    assert_eq!(set(&get("kvstore").used_by), ["kvclient"].into());
    assert_eq!(set(&get("kvclient").uses), ["kvstore"].into());
    assert_eq!(set(&get("cstats").uses), ["crc32"].into());
    for independent in ["hello", "params", "big", "faulty", "autoload"] {
        let r = get(independent);
        assert!(r.uses.is_empty() && r.used_by.is_empty(), "{r:#?}");
    }
    // autoload asked for kvclient, which was LIVE: nothing was loaded on its behalf.
    assert!(!console.contains("request_module: loading"), "{console}");
    for (cmd, text) in &out[..LOADABLE.len()] {
        assert!(cmd.starts_with("insmod "), "{cmd}");
        assert_eq!(text, "", "insmod printed something: {cmd}");
    }
    // Each module ran its init (in its server) between the manager's COMING and LIVE lines,
    // and its exit after GOING.
    for name in LOADABLE {
        let (init, exit) = init_and_exit_lines(name);
        let coming = state_line(&console, name, "COMING");
        let init_at = position(&console, init);
        let live = state_line(&console, name, "LIVE");
        let going = state_line(&console, name, "GOING");
        let exit_at = position(&console[going..], exit) + going;
        assert!(
            coming < init_at && init_at < live && live < going && going < exit_at,
            "{name}: COMING {coming}, init {init_at}, LIVE {live}, GOING {going}, exit {exit_at}"
        );
    }

    let unloaded = run.shell(2);
    assert_eq!(unloaded.failed, 0, "{}", unloaded.output);
    let out = sections(&unloaded.output);
    assert_eq!(section(&out, "lsmod"), format!("{LSMOD_HEADER}\n"));
    assert!(run.modules(3).is_empty(), "{:#?}", run.modules(3));
}

#[test]
fn module_parameters_take_effect_in_the_server_and_bad_ones_are_refused() {
    if !kvm_usable() {
        return;
    }
    let run = Boot::microkernel().run(vec![
        shell(
            "insmod params.ko count=5 verbose greeting=\"hi there\"; lsmod; rmmod params; \
             insmod params.ko count=11; insmod params.ko bogus=1; insmod params.ko count=x",
        ),
        init_module("params", "count=9 count=0x2 greeting=ok"),
        delete_module("params"),
        init_module("params", "server.restart=lots"),
        Command::ListModules,
    ]);
    run.assert_clean(5);
    let console = run.console();
    assert_contains(
        &console,
        "params: count=5 verbose=true greeting=\"hi there\" offset=-1\n",
        "parameters given to insmod",
    );
    for i in 1..=5 {
        assert_contains(&console, &format!("params: hi there #{i}\n"), "verbose");
    }
    assert_contains(&console, "params: unloaded (count was 5)", "exit");
    let out = run.shell(0);
    assert_eq!((out.lines, out.failed), (6, 3), "{}", out.output);
    let s = sections(&out.output);
    assert_eq!(
        section(&s, "insmod params.ko count=11"),
        "insmod: ERROR: could not insert module params.ko: Invalid argument\n  \
         kernel: params: init_module failed with -22\n"
    );
    assert_eq!(
        section(&s, "insmod params.ko bogus=1"),
        "insmod: ERROR: could not insert module params.ko: Unknown symbol in module, or \
         unknown parameter\n  kernel: params: unknown parameter 'bogus'\n"
    );
    assert_eq!(
        section(&s, "insmod params.ko count=x"),
        "insmod: ERROR: could not insert module params.ko: Invalid argument\n  \
         kernel: params: invalid value for parameter 'count': not an integer in the i64 range\n"
    );
    let m = run.module(1);
    assert_live_server_record(m);
    assert_contains(
        &console,
        "params: count=2 verbose=false greeting=\"ok\" offset=-1\nparams: greeted 2 times",
        "repeated parameter, defaults",
    );
    run.done(2);
    let e = run.module_error(3);
    assert_eq!(e.errno, libc::EINVAL, "{e:?}");
    assert_eq!(
        e.message,
        "params: invalid value for parameter 'server.restart': not a number of restarts (0..=8)"
    );
    assert!(run.modules(4).is_empty());
}

// ---- 2. the same errors as the monolithic kernel -------------------------------------------

/// Error cases, each answered by both kernels; `ModuleError`s must be identical.
fn error_cases() -> Vec<Command> {
    let mut cmds = vec![
        // Unknown symbol: kvstore without ramblk and crc32.
        init_module("kvstore", ""),
        Command::InitModuleImage {
            image: b"#!/bin/sh\necho not a module\n".to_vec(),
            params: String::new(),
        },
        init_module("hello", ""),
        init_module("hello", ""),
        delete_module("hello"),
        delete_module("nosuch"),
        init_module("nosuch", ""),
        init_module("params", "bogus=1"),
        init_module("params", "count=x"),
        init_module("params", "verbose=maybe"),
        init_module("params", "count=11"),
        init_module("params", "greeting=\"\""),
        // autoload asking for a module that does not exist fails its init with the errno.
        init_module("autoload", "want=nosuch"),
        // autoload asks for itself while COMING and GOING: EBUSY inside, loads and unloads.
        init_module("autoload", "want=hello"),
        delete_module("autoload"),
        delete_module("hello"),
        shell("capdrop; insmod hello.ko; rmmod params; rmmod nosuch; rmmod hello.ko"),
    ];
    for m in corpus() {
        cmds.push(Command::InitModuleImage {
            image: m.bytes,
            params: String::new(),
        });
    }
    cmds.push(Command::ListModules);
    cmds
}

#[test]
fn every_error_is_the_monolithic_kernels_errno_and_message() {
    if !kvm_usable() {
        return;
    }
    // The microkernel's run keeps the kernel log on the console, for the checks below.
    let runs: Vec<Run> = [Boot::monolithic().quiet(), Boot::microkernel()]
        .iter()
        .map(|b| b.run(error_cases()))
        .collect();
    let n = error_cases().len();
    for r in &runs {
        r.assert_clean(n);
    }
    let files: Vec<String> = corpus().into_iter().map(|m| m.file).collect();
    let mut compared = 0;
    for i in 0..n {
        let (mono, micro) = (&runs[0].replies()[i], &runs[1].replies()[i]);
        let what = files
            .get(i.wrapping_sub(n - 1 - files.len()))
            .map_or_else(|| format!("command {i}"), |f| format!("corpus file {f}"));
        match (mono, micro) {
            (Reply::ModuleError(a), Reply::ModuleError(b)) => {
                assert_eq!(a, b, "{what}: monolithic vs microkernel");
                compared += 1;
            }
            (Reply::Module(a), Reply::Module(b)) => {
                assert_eq!(a.name, b.name, "{what}");
                assert_live_server_record(b);
            }
            (Reply::Shell(a), Reply::Shell(b)) => {
                assert_eq!(a, b, "{what}: the shell's output differs")
            }
            (Reply::Done, Reply::Done) => {}
            (Reply::Modules(a), Reply::Modules(b)) => {
                assert!(a.is_empty() && b.is_empty(), "{a:#?} {b:#?}")
            }
            (a, b) => panic!("{what}: monolithic {a:?}, microkernel {b:?}"),
        }
    }
    assert!(compared >= 50, "only {compared} errors compared");
    // The microkernel's console tells the same story for the busy autoload.
    let console = runs[1].console();
    for line in [
        "request_module nosuch: module nosuch is not in the module archive",
        "request_module autoload: module autoload is busy (Loading)",
        "request_module autoload: module autoload is busy (Unloading)",
    ] {
        assert_contains(&console, line, "autoload");
    }
}

/// `name` from the archive without its signature trailer and with its export signature
/// section renamed (`.kmod_exportsig` → `.kmod_exportsiX`), so that nothing declares its
/// exports' signatures: a module built before signatures existed, or by a toolchain that
/// drops the section.
fn without_export_signatures(name: &str) -> Vec<u8> {
    let mut file = kmod_sig::strip(&archive_module(name)).to_vec();
    let at = file
        .windows(16)
        .position(|w| w == b".kmod_exportsig\0")
        .unwrap_or_else(|| panic!("{name}.ko has no .kmod_exportsig section name"));
    file[at + 14] = b'X';
    file
}

#[test]
fn a_module_whose_exports_have_no_declared_signature_is_refused_and_loads_monolithic() {
    if !kvm_usable() {
        return;
    }
    let image = |bytes: Vec<u8>| Command::InitModuleImage {
        image: bytes,
        params: String::new(),
    };
    let commands = || {
        vec![
            image(without_export_signatures("ramblk")),
            Command::ListModules,
            // The real one loads, and its signatures make kvstore's calls possible.
            init_module("crc32", ""),
            init_module("ramblk", ""),
            init_module("kvstore", ""),
            Command::ListModules,
        ]
    };
    let mono = Boot::monolithic().quiet().run(commands());
    mono.assert_clean(6);
    // The monolithic kernel never asks: a call there is a direct jump.
    assert_eq!(mono.module(0).name, "ramblk");
    let run = Boot::microkernel().quiet().run(commands());
    run.assert_clean(6);
    let e = run.module_error(0);
    assert_eq!(e.errno, libc::ENOEXEC, "{e:?}");
    assert!(
        e.message.starts_with("module `ramblk`: export `ramblk_"),
        "{e:?}"
    );
    assert!(
        e.message.ends_with(
            "` has no call signature, so no other module's server can call it; declare it \
             with kmod_api::export! (Rust) or EXPORT_SYMBOL_SIG (C), see modules/ABI.md \
             \"Export signatures\""
        ),
        "{e:?}"
    );
    assert!(run.modules(1).is_empty(), "{:#?}", run.modules(1));
    let records = run.modules(5);
    assert_eq!(names(records), ["crc32", "ramblk", "kvstore"]);
    for r in records {
        assert_live_server_record(r);
    }
    assert_eq!(
        set(&record(records, "kvstore").uses),
        ["crc32", "ramblk"].into()
    );
}

#[test]
fn modprobe_loads_the_chain_and_calls_cross_servers_nested() {
    if !kvm_usable() {
        return;
    }
    let run = Boot::microkernel().run(vec![
        shell("modprobe kvclient; lsmod"),
        Command::ListModules,
        shell("rmmod kvstore; rmmod crc32"),
        delete_module("ramblk"),
        // kvstore's service is a call into its server, which calls ramblk's and crc32's.
        service_call("kvstore", 0, b"\x05alphaone"),
        service_call("kvstore", 1, b"alpha"),
        service_call("kvstore", 3, b""),
        shell("modprobe -r kvclient; lsmod"),
        Command::ListModules,
        shell("modprobe kvclient; modprobe cstats; modprobe -r kvclient; lsmod"),
        Command::ListModules,
        init_module("kvstore", ""),
    ]);
    run.assert_clean(12);
    let console = run.console();
    let out = run.shell(0);
    assert_eq!((out.lines, out.failed), (2, 0), "{}", out.output);
    let records = run.modules(1);
    assert_eq!(names(records), CHAIN, "load order");
    for r in records {
        assert_live_server_record(r);
    }
    assert_eq!(
        section(&sections(&out.output), "lsmod"),
        expected_lsmod(records)
    );
    // kvclient's self-check went kvclient → kvstore → ramblk (and crc32), server to server.
    let (init, _) = init_and_exit_lines("kvclient");
    assert_contains(&console, init, "kvclient's self-check");
    assert_contains(&console, "service get ok, service count 12", "kvclient");
    let loads: Vec<(String, String)> =
        state_lines(&console[..position(&console, "kmodlab# rmmod kvstore")])
            .into_iter()
            .filter(|(_, s)| s != "GOING")
            .collect();
    let expected: Vec<(String, String)> = CHAIN
        .iter()
        .flat_map(|m| {
            [
                (m.to_string(), "COMING".into()),
                (m.to_string(), "LIVE".into()),
            ]
        })
        .collect();
    assert_eq!(loads, expected, "COMING/LIVE sequence");

    let out = run.shell(2);
    assert_eq!((out.lines, out.failed), (2, 2), "{}", out.output);
    let s = sections(&out.output);
    assert_eq!(
        section(&s, "rmmod kvstore"),
        "rmmod: ERROR: Module kvstore is in use by: kvclient\n"
    );
    assert_eq!(
        section(&s, "rmmod crc32"),
        "rmmod: ERROR: Module crc32 is in use by: kvstore\n"
    );
    let e = run.module_error(3);
    assert_eq!(e.errno, libc::EBUSY, "{e:?}");
    assert_eq!(e.message, "Module ramblk is in use by: kvstore");
    assert!(run.service_reply(4).is_empty());
    assert_eq!(run.service_reply(5), b"one");
    assert_eq!(run.service_reply(6), 13u64.to_le_bytes());

    let out = run.shell(7);
    assert_eq!((out.lines, out.failed), (2, 0), "{}", out.output);
    assert_eq!(
        section(&sections(&out.output), "lsmod"),
        format!("{LSMOD_HEADER}\n")
    );
    assert!(run.modules(8).is_empty());
    let out = run.shell(9);
    assert_eq!((out.lines, out.failed), (4, 0), "{}", out.output);
    let records = run.modules(10);
    assert_eq!(names(records), ["crc32", "cstats"]);
    assert_eq!(set(&record(records, "crc32").used_by), ["cstats"].into());
    // The exports of the removed modules are gone with their servers.
    let e = run.module_error(11);
    assert_eq!(e.errno, libc::ENOENT, "{e:?}");
    assert_contains(
        &e.message,
        "module `kvstore`: unknown symbol `ramblk_",
        "kvstore",
    );
}

#[test]
fn autoload_loads_the_whole_chain_on_demand_from_its_server() {
    if !kvm_usable() {
        return;
    }
    let run = Boot::microkernel().run(vec![
        shell("insmod autoload.ko; lsmod"),
        Command::ListModules,
    ]);
    run.assert_clean(2);
    let console = run.console();
    let records = run.modules(1);
    assert_eq!(
        names(records),
        ["autoload", "crc32", "ramblk", "kvstore", "kvclient"],
        "autoload is registered (COMING) before what it asks for"
    );
    for r in records {
        assert_live_server_record(r);
    }
    let requested: Vec<&str> = console
        .lines()
        .filter_map(|l| l.strip_prefix("request_module: loading "))
        .collect();
    assert_eq!(requested, CHAIN, "loaded on demand, providers first");
    let ok = position(&console, "autoload: request_module(kvclient): ok");
    assert!(ok > position(&console, "kvclient: put 16, read back 16 ok"));
}

#[test]
fn kmodlab_run_with_the_microkernel_prints_what_the_monolithic_kernel_prints() {
    if !kvm_usable() {
        return;
    }
    let script = "modprobe kvclient; lsmod; rmmod kvstore; modprobe -r kvclient; lsmod";
    let run = |config: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kmodlab"))
            .args(["run", "--quiet", "--config", config, "-c", script])
            .output()
            .expect("cannot run the kmodlab binary");
        let text = |b: &[u8]| String::from_utf8_lossy(b).replace("\r\n", "\n");
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (mono, micro) = (run("monolithic"), run("microkernel"));
    assert_eq!(micro.0, Some(1), "{micro:?}");
    assert_contains(&micro.2, "1 of 5 shell commands failed", "stderr");
    assert_eq!(micro, mono, "monolithic vs microkernel");
    assert_contains(
        &micro.1,
        "rmmod: ERROR: Module kvstore is in use by: kvclient\n",
        "the refusal",
    );
    assert!(
        micro
            .1
            .ends_with(&format!("kmodlab# lsmod\n{LSMOD_HEADER}\n")),
        "{}",
        micro.1
    );
}

// ---- 3. memory as before, after failed loads and after unloads ----------------------------

#[test]
fn failed_loads_and_unloads_leave_kernel_memory_as_it_was() {
    if !kvm_usable() {
        return;
    }
    let load_all = |commands: &mut Vec<Command>| {
        for m in LOADABLE {
            commands.push(init_module(m, params_of(m)));
        }
    };
    let unload_all = |commands: &mut Vec<Command>| {
        for m in LOADABLE.iter().rev() {
            commands.push(delete_module(m));
        }
    };
    // Warm-up: the kernel's task table and queues grow to the most tasks alive at once, and
    // keep that size; the manager's own tables live in its static heap.
    let mut commands = Vec::new();
    load_all(&mut commands);
    commands.push(shell("lsmod"));
    unload_all(&mut commands);
    commands.push(Command::Echo(Vec::new()));
    commands.push(Command::MemoryStats);
    let before = commands.len() - 1;
    let failing = [
        init_module("params", "count=11 greeting=\"a longer greeting\""),
        init_module("params", "bogus=1"),
        init_module("kvstore", ""),
        init_module("autoload", "want=nosuch"),
        Command::InitModuleImage {
            image: b"not a module".to_vec(),
            params: String::new(),
        },
    ];
    commands.extend(failing.iter().cloned());
    for m in corpus() {
        commands.push(Command::InitModuleImage {
            image: m.bytes,
            params: String::new(),
        });
    }
    commands.push(Command::Echo(Vec::new()));
    commands.push(Command::MemoryStats);
    let after_failures = commands.len() - 1;
    load_all(&mut commands);
    commands.push(Command::Echo(Vec::new()));
    let while_loaded = commands.len();
    commands.push(Command::MemoryStats);
    unload_all(&mut commands);
    commands.push(Command::Echo(Vec::new()));
    commands.push(Command::MemoryStats);
    let after_unloads = commands.len() - 1;
    commands.push(Command::ListModules);
    let n = commands.len();
    let run = Boot::microkernel().quiet().run(commands);
    run.assert_clean(n);
    let base = run.memory(before);
    assert_eq!(
        run.memory(after_failures),
        base,
        "failed loads leaked kernel memory (frames of servers, task objects)"
    );
    let loaded = run.memory(while_loaded);
    assert!(
        loaded.heap_used > base.heap_used && loaded.frames_free < base.frames_free,
        "loaded servers do not show in the statistics: {base:?} vs {loaded:?}"
    );
    assert_eq!(
        run.memory(after_unloads),
        base,
        "loading and unloading every module leaked kernel memory"
    );
    assert!(run.modules(n - 1).is_empty());
}

// ---- 4. request_module, dependencies, no unload ---------------------------------------------

#[test]
fn request_module_from_a_server_loads_on_demand() {
    if !kvm_usable() {
        return;
    }
    let run = Boot::microkernel().run(vec![
        shell("insmod autoload.ko want=ramblk; lsmod"),
        Command::ListModules,
        shell("rmmod autoload; rmmod ramblk; echo ---- MARK ----"),
        init_module("ramblk", ""),
        init_module("autoload", "want=ramblk"),
        Command::ListModules,
    ]);
    run.assert_clean(6);
    let console = run.console();
    let (first, second) = console.split_once("---- MARK ----").expect("the marker");
    let out = run.shell(0);
    assert_eq!((out.lines, out.failed), (2, 0), "{}", out.output);
    let records = run.modules(1);
    assert_eq!(names(records), ["autoload", "ramblk"]);
    for r in records {
        assert_live_server_record(r);
    }
    assert_eq!(
        section(&sections(&out.output), "lsmod"),
        expected_lsmod(records)
    );
    assert_contains(first, "request_module: loading ramblk", "on demand");
    let states = state_lines(first);
    let pos = |name: &str, state: &str| {
        states
            .iter()
            .position(|(n, s)| n == name && s == state)
            .unwrap_or_else(|| panic!("no {state} for {name}: {states:?}"))
    };
    // autoload waits in its call to the manager while ramblk's server runs its init.
    assert!(pos("autoload", "COMING") < pos("ramblk", "COMING"));
    assert!(pos("ramblk", "LIVE") < pos("autoload", "LIVE"));
    // Already LIVE: nothing is loaded.
    assert!(!second.contains("request_module: loading"), "{second}");
    assert_eq!(run.module(4).name, "autoload");
    assert_eq!(names(run.modules(5)), ["ramblk", "autoload"]);
}

#[test]
fn manager_without_module_unload_refuses_rmmod() {
    if !kvm_usable() {
        return;
    }
    let run = Boot::microkernel().arg("module.unload=0").run(vec![
        init_module("hello", ""),
        delete_module("hello"),
        shell("rmmod hello; lsmod; capdrop; rmmod hello"),
        Command::ListModules,
    ]);
    run.assert_clean(4);
    let e = run.module_error(1);
    assert_eq!(e.errno, libc::ENOSYS, "{e:?}");
    let not_supported =
        "module unloading is not supported (module manager started without module.unload)";
    assert_eq!(e.message, not_supported);
    let out = run.shell(2);
    assert_eq!((out.lines, out.failed), (4, 2), "{}", out.output);
    let s = sections(&out.output);
    assert_eq!(s[0].1, format!("rmmod: ERROR: {not_supported}\n"));
    assert_eq!(
        s.last().unwrap().1,
        "rmmod: ERROR: module management needs CAP_SYS_MODULE\n"
    );
    assert!(!run.console().contains("hello: Goodbye"));
    assert_eq!(names(run.modules(3)), ["hello"]);
}

// ---- 5. one script, both configurations ------------------------------------------------------

/// A script of everyday module work, without faults (which crash the monolithic kernel).
const SCRIPT: &str = "lsmod; insmod hello.ko; insmod params.ko count=2 greeting=\"two words\"; \
    lsmod; modinfo params; insmod hello.ko; rmmod nosuch; insmod nosuch.ko; \
    insmod params.ko bogus=1; modprobe crc32; modprobe ramblk; lsmod; rmmod hello; \
    modprobe -r crc32; insmod autoload.ko want=hello; lsmod; rmmod autoload; rmmod hello; \
    rmmod params; modprobe kvclient; lsmod; rmmod kvstore; modprobe -r kvclient; \
    modprobe cstats; lsmod; modprobe -r cstats; insmod ramblk.ko; modprobe -r nosuch; ls lib/modules/hello; capdrop; \
    insmod hello.ko; lsmod; lsmod -v; dmesg";

/// The commands whose output may differ between the configurations, and why:
/// - `lsmod -v`: cycle counts, core addresses (every server's module is at 0x40000000) and
///   the servers' steps and memory;
/// - `dmesg`: the kernel log has the boot lines of each kernel and (microkernel) the
///   manager's start.
const MAY_DIFFER: [&str; 2] = ["lsmod -v", "dmesg"];

#[test]
fn one_script_prints_the_same_in_both_configurations() {
    if !kvm_usable() {
        return;
    }
    let outputs: Vec<ShellOutput> = Boot::both()
        .iter()
        .map(|b| {
            let run = b.clone().quiet().run(vec![shell(SCRIPT)]);
            run.assert_clean(1);
            run.shell(0).clone()
        })
        .collect();
    let (mono, micro) = (&outputs[0], &outputs[1]);
    assert_eq!((mono.lines, mono.failed), (micro.lines, micro.failed));
    assert_eq!(mono.failed, 7, "{}", mono.output);
    let (a, b) = (sections(&mono.output), sections(&micro.output));
    assert_eq!(a.len(), b.len());
    let mut same = 0;
    for ((cmd_a, out_a), (cmd_b, out_b)) in a.iter().zip(&b) {
        assert_eq!(cmd_a, cmd_b);
        if MAY_DIFFER.contains(&cmd_a.as_str()) {
            continue;
        }
        assert_eq!(out_a, out_b, "`{cmd_a}` prints differently");
        same += 1;
    }
    assert_eq!(same, a.len() - MAY_DIFFER.len());
    // The documented differences are real differences, and only there.
    let dmesg_b = section(&b, "dmesg");
    assert_contains(dmesg_b, "module manager started", "the microkernel's log");
    assert!(!section(&a, "dmesg").contains("module manager started"));
    assert_contains(section(&b, "lsmod -v"), "server steps:", "lsmod -v");
    // The kernel log's module lines are the same in both.
    // Lines with cycle counts differ by nature; each has its counterpart, though.
    let count = |text: &str, what: &str| text.lines().filter(|l| l.contains(what)).count();
    let dmesg_a = section(&a, "dmesg");
    assert_eq!(
        count(dmesg_a, "again over touched pages"),
        count(dmesg_b, "again over touched pages")
    );
    let module_lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.contains(" cycles"))
            .filter(|l| {
                (l.starts_with("module ") && !l.starts_with("module manager"))
                    || l.starts_with("hello:")
                    || l.starts_with("params:")
                    || l.starts_with("kv")
                    || l.starts_with("cstats:")
                    || l.starts_with("request_module")
            })
            .map(String::from)
            .collect()
    };
    assert_eq!(
        module_lines(dmesg_a),
        module_lines(dmesg_b),
        "the module messages in the kernel log"
    );
}

// ---- 6. faults are contained -----------------------------------------------------------------

/// Where the manager says a fault RIP is: `(module, offset)` from its "rip is in module"
/// line after the MODULE SERVER FAULT banner at `from`.
fn fault_location(console: &str) -> Option<(String, u64)> {
    let line = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("rip is in module "))?;
    let (module, offset) = line.split_once(" at offset 0x")?;
    Some((
        module.to_string(),
        u64::from_str_radix(offset.trim(), 16).ok()?,
    ))
}

/// `faulty`'s modes with the vector a module server takes (user mode: no double fault; the
/// default `wild` target is not canonical, hence #GP).
const FAULTS: [(&str, u8); 10] = [
    ("mode=null", 14),
    // Its own state scribbled with seed 1's bytes: a load through a non-canonical pointer.
    ("mode=scribble", 13),
    // Never blocks: the kernel's watchdog stops the server.
    ("mode=loop", WATCHDOG_VECTOR),
    ("mode=ud", 6),
    ("mode=div0", 0),
    ("mode=panic", 6),
    ("mode=wild", 13),
    ("mode=wild addr=0x7fff00000000", 14),
    // The kernel's text (0xffff_ffff_8020_0000), as an i64: never writable from user mode.
    ("mode=wild addr=-0x7fe00000", 14),
    ("mode=stack", 14),
];

/// What the insmod or rmmod waiting for a server's init or exit gets when the server dies:
/// `ETIMEDOUT` if the watchdog stopped it, `EPIPE` for an exception.
fn errno_of(vector: u8) -> i32 {
    if vector == WATCHDOG_VECTOR {
        libc::ETIMEDOUT
    } else {
        libc::EPIPE
    }
}

#[test]
fn every_faulty_mode_at_init_exit_and_call_is_contained() {
    if !kvm_usable() {
        return;
    }
    for at in ["init", "exit", "call"] {
        // One boot per phase: its console holds one report per mode.
        let mut commands = vec![
            // The modules that must keep answering, and a warm-up with as many tasks alive
            // at once as later (the kernel's task table keeps its size).
            init_module("crc32", ""),
            init_module("ramblk", ""),
            init_module("kvstore", ""),
            init_module("faulty", ""),
            init_module("hello", ""),
            shell("lsmod"),
            delete_module("hello"),
            delete_module("faulty"),
            service_call("kvstore", 0, b"\x03keyvalue"),
            service_call("kvstore", 1, b"key"),
            Command::Echo(Vec::new()),
            Command::MemoryStats,
        ];
        let before = commands.len() - 1;
        let mut at_index = Vec::new();
        for (params, _) in FAULTS {
            let first = commands.len();
            commands.push(init_module("faulty", &format!("{params} at={at}")));
            match at {
                "exit" => commands.push(delete_module("faulty")),
                "call" => commands.push(service_call("faulty", 0, b"boom")),
                _ => {}
            }
            commands.push(Command::ListModules);
            commands.push(shell("lsmod"));
            // Other servers still answer (a kvstore put and get: kvstore → ramblk, crc32),
            // new ones still load.
            commands.push(service_call("kvstore", 0, b"\x05after-fault"));
            commands.push(service_call("kvstore", 1, b"after"));
            commands.push(init_module("hello", ""));
            commands.push(delete_module("hello"));
            // The faulted record goes with rmmod; then memory is as before.
            commands.push(delete_module("faulty"));
            commands.push(Command::Echo(Vec::new()));
            commands.push(Command::MemoryStats);
            at_index.push(first);
        }
        let n = commands.len();
        let run = Boot::microkernel().run(commands);
        run.assert_clean(n);
        let console = run.console();
        assert_eq!(run.service_reply(9), b"value");
        let base = run.memory(before);
        let reports: Vec<&str> = console.split("MODULE SERVER FAULT: ").skip(1).collect();
        assert_eq!(reports.len(), FAULTS.len(), "at={at}: {console}");
        for (k, (params, vector)) in FAULTS.iter().enumerate() {
            let what = format!("faulty {params} at={at}");
            let mut i = at_index[k];
            // The step that ran the fault failed with EPIPE (the server died in it).
            let expected_phase = match at {
                "init" => {
                    let e = run.module_error(i);
                    assert_eq!(e.errno, errno_of(*vector), "{what}: {e:?}");
                    assert!(
                        e.message.starts_with("faulty: init_module faulted: "),
                        "{what}: {e:?}"
                    );
                    FaultPhase::Init
                }
                "exit" => {
                    assert_eq!(run.module(i).name, "faulty");
                    i += 1;
                    let e = run.module_error(i);
                    assert_eq!(e.errno, errno_of(*vector), "{what}: {e:?}");
                    assert!(
                        e.message.starts_with("faulty: cleanup_module faulted: "),
                        "{what}: {e:?}"
                    );
                    FaultPhase::Exit
                }
                _ => {
                    assert_eq!(run.module(i).name, "faulty");
                    i += 1;
                    let e = run.module_error(i);
                    assert_eq!(e.errno, libc::EPIPE, "{what}: the caller in flight: {e:?}");
                    FaultPhase::Call
                }
            };
            i += 1;
            let records = run.modules(i);
            let r = record(records, "faulty");
            let f = r
                .fault
                .unwrap_or_else(|| panic!("{what}: not marked faulted: {r:#?}"));
            assert_eq!(f.during, expected_phase, "{what}");
            let state = match expected_phase {
                FaultPhase::Init => ModuleState::Coming,
                FaultPhase::Call => ModuleState::Live,
                FaultPhase::Exit => ModuleState::Going,
            };
            assert_eq!(r.state, state, "{what}: the Linux-style state");
            assert_eq!(f.vector, *vector, "{what}: {f:x?}");
            assert_eq!(r.pages, 0, "{what}: the server's pages are released");
            assert_eq!(r.footprint.page_table_pages, 0, "{what}");
            let offset = f
                .offset
                .unwrap_or_else(|| panic!("{what}: not in the module: {f:x?}"));
            assert!(MODULE_AREA.contains(&f.rip), "{what}: {f:x?}");
            // The report names the module, the vector and the offset.
            let report = reports[k];
            let banner = if *vector == WATCHDOG_VECTOR {
                String::from("stopped by the watchdog: it ran too long without blocking")
            } else {
                format!("{} (vector {vector})", vector_name(*vector))
            };
            assert!(report.starts_with(&banner), "{what}: {report}");
            assert_eq!(
                fault_location(report),
                Some(("faulty".to_string(), offset)),
                "{what}: {report}"
            );
            match *params {
                "mode=null" => assert_eq!(f.cr2, 0, "{what}"),
                "mode=wild addr=0x7fff00000000" => {
                    assert_eq!(f.cr2, 0x7fff_0000_0000, "{what}");
                    assert_eq!(f.error_code & 0b110, 0b110, "{what}: a user-mode write");
                }
                "mode=wild addr=-0x7fe00000" => {
                    assert_eq!(
                        f.cr2, 0xffff_ffff_8020_0000,
                        "{what}: kernel text is not writable"
                    );
                }
                _ => {}
            }
            i += 1;
            let lsmod = &run.shell(i).output;
            assert_eq!(
                lsmod,
                &format!("kmodlab# lsmod\n{}", expected_lsmod(records)),
                "{what}"
            );
            assert!(lsmod.contains("[faulted]"), "{what}: {lsmod}");
            i += 1;
            assert!(run.service_reply(i).is_empty(), "{what}: kvstore put");
            i += 1;
            assert_eq!(run.service_reply(i), b"-fault", "{what}: kvstore get");
            i += 1;
            assert_eq!(run.module(i).name, "hello", "{what}");
            run.done(i + 1);
            run.done(i + 2);
            assert_eq!(
                run.memory(i + 4),
                base,
                "{what}: memory is not as before faulty was loaded"
            );
        }
        assert_contains(&console, "faulty: about to fault: mode=panic", at);
        assert_contains(&console, "faulty: panic:", at);
    }
}

#[test]
fn a_faulted_module_can_be_restarted_by_policy() {
    if !kvm_usable() {
        return;
    }
    // The caller in flight gets its EPIPE at once; the manager restarts the module from its
    // file and holds the kernel's next request until the restart is over (the kernel runs
    // tasks only while it waits for a call), so that request sees the outcome.
    let run = Boot::microkernel().run(vec![
        init_module("faulty", "mode=null at=call server.restart=1"),
        service_call("faulty", 0, b""),
        Command::ListModules,
        service_call("faulty", 0, b""),
        Command::ListModules,
        delete_module("faulty"),
        Command::ListModules,
    ]);
    run.assert_clean(7);
    let console = run.console();
    assert_eq!(run.module(0).name, "faulty");
    assert_eq!(run.module_error(1).errno, libc::EPIPE);
    // Restarted: a new server, LIVE, the fault forgotten.
    assert_live_server_record(record(run.modules(2), "faulty"));
    let second = 3;
    assert_contains(
        &console,
        "module faulty: restarting it from its file (restart 1 of 1) after #PF page fault",
        "restart",
    );
    let recovered = console
        .lines()
        .find(|l| l.starts_with("module faulty: restarted and LIVE again; recovery took "))
        .unwrap_or_else(|| panic!("no recovery line:\n{console}"));
    assert!(recovered.ends_with("0 restart(s) left"), "{recovered}");
    // The restart re-ran its init with the same parameters.
    assert_eq!(
        console
            .matches("faulty: armed: mode=null on a call to service \"faulty\"")
            .count(),
        2
    );
    // The budget is spent: the second fault leaves it faulted.
    assert_eq!(run.module_error(second).errno, libc::EPIPE);
    let r = record(run.modules(second + 1), "faulty");
    assert_eq!(r.state, ModuleState::Live);
    assert!(r.fault.is_some(), "{r:#?}");
    assert_contains(
        &console,
        "module faulty: not restarted: its 1 restart(s) are used up",
        "budget",
    );
    run.done(second + 2);
    assert!(run.modules(second + 3).is_empty());
}

#[test]
fn a_looping_module_is_stopped_by_the_watchdog() {
    if !kvm_usable() {
        return;
    }
    let run = Boot::microkernel()
        .deadline(Duration::from_secs(20))
        .run(vec![
            init_module("faulty", "mode=loop"),
            Command::ListModules,
            init_module("hello", ""),
        ]);
    run.assert_clean(3);
    let e = run.module_error(0);
    assert_eq!(e.errno, libc::ETIMEDOUT, "{e:?}");
    let r = record(run.modules(1), "faulty");
    let f = r.fault.expect("faulted");
    assert_eq!(f.vector, WATCHDOG_VECTOR);
    assert_eq!(f.during, FaultPhase::Init);
    assert!(f.offset.is_some(), "the loop is in the module: {f:x?}");
    assert_eq!(run.module(2).name, "hello");
    assert_contains(&run.console(), "stopped by the watchdog", "report");
}

// ---- 7. module signatures, as the monolithic kernel checks them ------------------------------

fn archive_module(name: &str) -> Vec<u8> {
    kmodlab_abi::initramfs::Archive::new(kmodlab::artifacts::INITRAMFS)
        .expect("the embedded module archive parses")
        .find(&format!("lib/modules/{name}.ko"))
        .unwrap_or_else(|| panic!("{name}.ko is not in the module archive"))
        .data
        .to_vec()
}

#[test]
fn the_manager_checks_signatures_as_the_monolithic_kernel_does() {
    if !kvm_usable() {
        return;
    }
    let signed = archive_module("hello");
    let unsigned = kmod_sig::strip(&signed).to_vec();
    let mut tampered = signed.clone();
    tampered[0x100] ^= 0x01;
    let foreign = kmod_sig::SigningKey::generate().sign(&unsigned).unwrap();
    let image = |bytes: &[u8]| Command::InitModuleImage {
        image: bytes.to_vec(),
        params: String::new(),
    };
    let commands = || {
        vec![
            image(&unsigned),
            image(&tampered),
            image(&foreign),
            init_module("hello", ""),
            Command::ListModules,
        ]
    };
    for enforce in [true, false] {
        let boot = |b: Boot| {
            if enforce {
                b.arg("module.sig_enforce=1")
            } else {
                b
            }
        };
        let mono = boot(Boot::monolithic()).run(commands());
        let micro = boot(Boot::microkernel()).run(commands());
        mono.assert_clean(5);
        micro.assert_clean(5);
        for i in 0..4 {
            match (&mono.replies()[i], &micro.replies()[i]) {
                (Reply::ModuleError(a), Reply::ModuleError(b)) => {
                    assert_eq!(a, b, "enforce={enforce}, command {i}")
                }
                (Reply::Module(a), Reply::Module(b)) => {
                    assert_eq!(a.name, b.name);
                    assert!(b.load_cycles.verify > 0, "{b:#?}");
                }
                (a, b) => panic!("enforce={enforce}, command {i}: {a:?} vs {b:?}"),
            }
        }
        let console = micro.console();
        if enforce {
            // Unsigned and foreign are refused (EKEYREJECTED), tampered whatever the setting.
            for i in [0, 2] {
                assert_eq!(micro.module_error(i).errno, 129, "{:?}", micro.replies()[i]);
            }
            assert_contains(
                &console,
                "module: signatures enforced (module.sig_enforce=1)",
                "the manager's start",
            );
            assert_contains(&console, "Loading of unsigned module is rejected", "log");
        } else {
            assert_eq!(micro.module(0).name, "hello");
            assert_eq!(
                console
                    .matches(
                        "hello: module verification failed: signature and/or required key \
                              missing - tainting kernel"
                    )
                    .count(),
                1,
                "the notice, once per boot:\n{console}"
            );
        }
        assert!(
            micro
                .module_error(1)
                .message
                .starts_with("module signature verification failed: ")
        );
    }
}
