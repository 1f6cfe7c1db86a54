//! KVM integration tests of the monolithic module subsystem (issue 4, "Tests that must
//! exist"): the whole lifecycle inside the guest kernel, driven through the guest shell
//! (`insmod`, `rmmod`, `lsmod`, `modinfo`, `modprobe`, a user program reaching the kernel by
//! system calls) and through the control channel (`InitModule`, `DeleteModule`,
//! `ListModules`, `MemoryStats`), plus the `kmodlab run` command line.
//!
//! Every test boots its own guest and runs many commands in it (a boot costs ~40 ms; console
//! output costs more, one VM exit per byte, so only tests that check module messages print
//! the kernel log).

mod common;

use common::script_run::{Run, delete_module, init_module, shell};
use common::{echo, kvm_usable};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use kmodlab::KernelConfig;
use kmodlab::control::Script;
use kmodlab::vm::{self, GuestImages, RunEnd, VmConfig};
use kmodlab_abi::channel::{Command, ModuleRecord, ModuleState, Reply, vector_name};
use kmodlab_abi::initramfs::Archive;
use kmodlab_abi::modules_dep::{ModulesDep, module_name};
// The one errno table (kmod_api::errno), as the kernel and the modules use it.
use kmod_api::Errno;

// ---- harness ------------------------------------------------------------------------------

/// Deadline of runs expected to finish: long for a loaded 2-core host, short enough that a
/// hanging guest fails the test instead of stalling the suite.
const DEADLINE: Duration = common::DEADLINE;

/// The guest's module area (`guest-kernel/src/mm/paging.rs`, `MODULE_AREA_START..END`):
/// where a module's code runs, so where a fault in a module must be reported.
const MODULE_AREA: std::ops::Range<u64> = 0xffff_ffff_c000_0000..0xffff_ffff_e000_0000;

/// Every module of the archive that is meant to load (all of them; `faulty` with its default
/// `mode=none`), in an order that loads providers first, so plain `insmod` works.
const LOADABLE: [&str; 11] = [
    "hello", "params", "crc32", "ramblk", "kvstore", "kvclient", "cstats", "big", "faulty",
    "autoload", "rival",
];

/// The kvclient chain in dependency order (providers first).
const CHAIN: [&str; 4] = ["crc32", "ramblk", "kvstore", "kvclient"];

/// How to boot for one test.
struct Boot {
    images: GuestImages<'static>,
    deadline: Duration,
    /// Kernel command line `quiet`: the kernel log stays in the ring (dmesg), off the console.
    quiet: bool,
    /// More kernel command-line words.
    cmdline: &'static str,
}

impl Boot {
    fn monolithic() -> Boot {
        Boot {
            images: kmodlab::artifacts::images(KernelConfig::Monolithic),
            deadline: DEADLINE,
            quiet: false,
            cmdline: "",
        }
    }

    fn without_unload() -> Boot {
        Boot {
            images: kmodlab::artifacts::images_without_unload(),
            ..Boot::monolithic()
        }
    }

    fn quiet(self) -> Boot {
        Boot {
            quiet: true,
            ..self
        }
    }

    fn deadline(self, deadline: Duration) -> Boot {
        Boot { deadline, ..self }
    }

    fn cmdline(self, cmdline: &'static str) -> Boot {
        Boot { cmdline, ..self }
    }

    fn run(&self, commands: Vec<Command>) -> Run {
        let vm_config = VmConfig {
            deadline: self.deadline,
            cmdline: [if self.quiet { "quiet" } else { "" }, self.cmdline]
                .join(" ")
                .trim()
                .to_string(),
            ..VmConfig::new(KernelConfig::Monolithic)
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

/// The script shell's output, split per command: `(command line, what it printed)`. In a
/// script the shell echoes each command after its prompt.
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

/// The output of the only command `cmd` in a script's output.
fn section<'a>(sections: &'a [(String, String)], cmd: &str) -> &'a str {
    let found: Vec<_> = sections.iter().filter(|(c, _)| c == cmd).collect();
    assert_eq!(found.len(), 1, "command {cmd:?} in {sections:#?}");
    &found[0].1
}

/// The header `lsmod` prints, as Linux's kmod does.
const LSMOD_HEADER: &str = "Module                  Size  Used by";

/// Asserts `text` is exactly an `lsmod` table of `rows` (`(name, "refcount users")`, newest
/// first), in kmod's `%-19s %8lu  %d users` columns, whatever the sizes.
fn assert_lsmod_rows(text: &str, rows: &[(&str, &str)]) {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(LSMOD_HEADER), "{text}");
    for &(name, users) in rows {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("lsmod lacks {name}:\n{text}"));
        let size: u64 = line
            .get(20..28)
            .and_then(|f| f.trim().parse().ok())
            .unwrap_or_else(|| panic!("no size column in {line:?}"));
        assert!(size > 0 && size.is_multiple_of(4096), "{line:?}");
        assert_eq!(line, format!("{name:<19} {size:>8}  {users}"), "{text}");
    }
    assert_eq!(lines.next(), None, "{text}");
}

/// What `lsmod` must print for `records` (the kernel's list, in load order): kmod's
/// `%-19s %8lu  %d users`, newest module first, size = core (+ init while not freed).
fn expected_lsmod(records: &[ModuleRecord]) -> String {
    let mut out = format!("{LSMOD_HEADER}\n");
    for r in records.iter().rev() {
        let size = r.core_bytes + if r.init_freed { 0 } else { r.init_bytes };
        out.push_str(&format!("{:<19} {:>8}  {}", r.name, size, r.refcount));
        if !r.used_by.is_empty() {
            out.push(' ');
            out.push_str(&r.used_by.join(","));
        }
        out.push('\n');
    }
    out
}

/// What `lsmod -v` must print for `records`, after `transitions` (COMING, LIVE, GOING)
/// since boot: each module's accounting and the cycles of each step of its load.
fn expected_lsmod_verbose(records: &[ModuleRecord], transitions: (u64, u64, u64)) -> String {
    let (coming, live, going) = transitions;
    let mut out = format!("transitions since boot: {coming} COMING, {live} LIVE, {going} GOING\n");
    for r in records {
        let c = r.load_cycles;
        out.push_str(&format!(
            "{}: state Live, core {} B at {:#x}, init {} B (freed), metadata {} B, {} pages, \
             {} relocations\n  load cycles: copy {} verify {} validate {} params {} layout {} \
             allocate {} resolve {} relocate {} protect {} init {} total {}\n",
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
            c.total
        ));
    }
    out
}

fn names(records: &[ModuleRecord]) -> Vec<&str> {
    records.iter().map(|r| r.name.as_str()).collect()
}

fn set(items: &[String]) -> BTreeSet<&str> {
    items.iter().map(String::as_str).collect()
}

/// Where `needle` first occurs in `haystack` (a console), or a failure naming it.
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

/// Where the notifier's first `module NAME (#N): STATE` line is in `console`.
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

/// Checks the accounting of a LIVE module record.
fn assert_live_record(r: &ModuleRecord) {
    let what = format!("record of {}: {r:#?}", r.name);
    assert_eq!(r.state, ModuleState::Live, "{what}");
    assert!(MODULE_AREA.contains(&r.core_base), "{what}: core base");
    assert!(r.core_bytes > 0, "{what}: core bytes");
    assert!(r.init_bytes > 0, "{what}: init bytes");
    assert!(r.init_freed, "{what}: init region not freed");
    // Only the core region is mapped once init is freed.
    assert_eq!(r.pages, r.core_bytes.div_ceil(4096), "{what}: pages");
    assert!(r.metadata_bytes > 0, "{what}: metadata bytes");
    assert!(r.relocations > 0, "{what}: relocations");
    let c = r.load_cycles;
    for (step, cycles) in [
        ("copy", c.copy),
        ("validate", c.validate),
        ("layout", c.layout),
        ("allocate", c.allocate),
        ("resolve", c.resolve),
        ("relocate", c.relocate),
        ("protect", c.protect),
        ("init", c.init),
        ("total", c.total),
    ] {
        assert!(cycles > 0, "{what}: no cycles for the {step} step");
    }
    let steps = c.copy
        + c.validate
        + c.params
        + c.layout
        + c.allocate
        + c.resolve
        + c.relocate
        + c.protect
        + c.init;
    assert!(
        c.total >= steps,
        "{what}: total {} below the sum of the steps {steps}",
        c.total
    );
    assert_eq!(r.refcount as usize, r.used_by.len(), "{what}: refcount");
}

/// The module archive embedded in the VMM (what the guest's `lib/modules/` holds).
fn archive() -> Archive<'static> {
    Archive::new(kmodlab::artifacts::INITRAMFS).expect("the embedded module archive parses")
}

/// A file of the module archive, e.g. `lib/modules/hello.ko`.
fn archive_file(path: &str) -> &'static [u8] {
    archive()
        .find(path)
        .unwrap_or_else(|| panic!("{path} is not in the module archive"))
        .data
}

/// A scratch directory of this test process, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "kmodlab-test-{tag}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The stdout (the guest console, whose line ends are `\r\n` on a terminal) and stderr of a
/// `kmodlab` run, with `\n` line ends.
fn outputs(out: &Output) -> (String, String) {
    let text = |b: &[u8]| String::from_utf8_lossy(b).replace("\r\n", "\n");
    (text(&out.stdout), text(&out.stderr))
}

fn kmodlab_cli(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args(args)
        .output()
        .expect("cannot run the kmodlab binary")
}

/// The loader's own verdict on a module file, on the host: the error of the steps that need
/// no kernel (validation and layout), if they refuse it. Like the kernel's loader, it sees
/// the file without its signature trailer (the Linux modules of the corpus are signed).
fn host_loader_error(bytes: &[u8]) -> Option<kmod_loader::Error> {
    let bytes = kmod_sig::check(bytes, None).module;
    let module = match kmod_loader::validate::validate(bytes) {
        Ok(m) => m,
        Err(e) => return Some(e),
    };
    kmod_loader::layout(&module).err()
}

/// The loader's error for `bytes` loaded whole on the host with every undefined name at one
/// address: for the faults relocation finds whatever the addresses are (the entries of
/// relocation sections whose target is not code, which the loader checks as it applies
/// them).
fn host_relocate_error(bytes: &[u8]) -> Option<kmod_loader::Error> {
    let bytes = kmod_sig::check(bytes, None).module;
    let kernel = kmod_loader::FnProvider(|_: &str| {
        Some(kmod_loader::ProvidedSymbol {
            address: 0xffff_ffff_8100_0000,
            provider: kmod_loader::ProviderId(0),
        })
    });
    let prepared = kmod_loader::prepare(bytes, &kernel).ok()?;
    let mut core = vec![0; usize::try_from(prepared.layout.core.size).ok()?];
    let mut init = vec![0; usize::try_from(prepared.layout.init.size).ok()?];
    prepared
        .finish(kmod_loader::Regions {
            core: kmod_loader::RegionMemory {
                base: 0xffff_ffff_c000_0000,
                bytes: &mut core,
            },
            init: kmod_loader::RegionMemory {
                base: 0xffff_ffff_c800_0000,
                bytes: &mut init,
            },
        })
        .err()
}

/// The error kinds of a relocation entry that the loader reports from `relocate` for a
/// section whose target is not code (from `validate` for code).
const RELOCATION_ENTRY_KINDS: [&str; 4] = [
    "UnsupportedRelocation",
    "RelocationSymbolOutOfRange",
    "RelocationOutsideSection",
    "RelocationAgainstUnloadedSection",
];

/// One file of the loader's corpus of malformed modules.
struct Malformed {
    file: String,
    /// The error kind the loader gives it (on the host, against a stand-in kernel).
    kind: String,
    /// The module it was made from: `c/cfix.ko` (built against kmodlab's kernel API) or
    /// `linux/libcrc32c.ko` (a Linux module, needing symbols kmodlab's kernel lacks).
    base: String,
    bytes: Vec<u8>,
}

/// The corpus of malformed modules of `crates/kmod-loader` (`tests/corpus/MANIFEST`: `FILE
/// KIND  # BASE`).
fn corpus() -> Vec<Malformed> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/kmod-loader/tests/corpus");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (entry, base) = l.split_once('#').unwrap_or((l, ""));
            let (file, kind) = entry.trim().split_once(' ').expect("FILE KIND");
            let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            Malformed {
                file: file.into(),
                kind: kind.trim().into(),
                base: base.trim().into(),
                bytes,
            }
        })
        .collect()
}

// ---- 1. insmod / lsmod / rmmod, parameters, modinfo -----------------------------------------

/// What each module prints on init and on exit (modules/*/src, modules/c, modules/big).
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
        "rival" => ("rival: loaded, exporting rival_token", "rival: exit ran"),
        other => panic!("no expectations for module {other}"),
    }
}

#[test]
fn every_module_loads_shows_in_lsmod_and_unloads() {
    if !kvm_usable() {
        return;
    }
    let load: Vec<String> = LOADABLE.iter().map(|m| format!("insmod {m}.ko")).collect();
    let unload: Vec<String> = LOADABLE
        .iter()
        .rev()
        .map(|m| format!("rmmod {m}"))
        .collect();
    let run = Boot::monolithic().run(vec![
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
        assert_live_record(r);
    }
    // lsmod shows exactly what the kernel has, with Linux's columns.
    let out = sections(&loaded.output);
    assert_eq!(section(&out, "lsmod"), expected_lsmod(records));
    // lsmod -v is the accounting the control channel reports.
    let n = LOADABLE.len() as u64;
    assert_eq!(
        section(&out, "lsmod -v"),
        expected_lsmod_verbose(records, (n, n, 0))
    );
    let big = record(records, "big");
    assert!(big.relocations > 100_000, "{big:#?}");
    assert!(big.pages > 256, "{big:#?}");
    for (cmd, text) in &out[..LOADABLE.len()] {
        assert!(cmd.starts_with("insmod "), "{cmd}");
        assert_eq!(text, "", "insmod printed something: {cmd}");
    }
    // Dependencies as the symbols make them.
    let get = |name: &str| record(records, name);
    assert_eq!(set(&get("crc32").used_by), ["cstats", "kvstore"].into());
    assert_eq!(set(&get("ramblk").used_by), ["kvstore"].into());
    assert_eq!(set(&get("kvstore").uses), ["crc32", "ramblk"].into());
    assert_eq!(set(&get("kvstore").used_by), ["kvclient"].into());
    assert_eq!(set(&get("kvclient").uses), ["kvstore"].into());
    assert_eq!(set(&get("cstats").uses), ["crc32"].into());
    for independent in ["hello", "params", "big", "faulty", "autoload", "rival"] {
        let r = get(independent);
        assert!(r.uses.is_empty() && r.used_by.is_empty(), "{r:#?}");
    }
    // autoload asked for kvclient, which was LIVE: nothing was loaded on its behalf.
    assert!(!console.contains("request_module: loading"), "{console}");

    // Each module ran its init and its exit, between the notifier's COMING/LIVE/GOING lines.
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
    assert_eq!(
        (unloaded.lines, unloaded.failed),
        (LOADABLE.len() as u32 + 1, 0),
        "{}",
        unloaded.output
    );
    let out = sections(&unloaded.output);
    assert_eq!(section(&out, "lsmod"), format!("{LSMOD_HEADER}\n"));
    assert!(run.modules(3).is_empty(), "{:#?}", run.modules(3));
}

#[test]
fn module_parameters_take_effect_and_bad_ones_are_refused() {
    if !kvm_usable() {
        return;
    }
    let run = Boot::monolithic().run(vec![
        // 0: through the shell, values as a user types them.
        shell(
            "insmod params.ko count=5 verbose greeting=\"hi there\"; lsmod; rmmod params; \
             insmod params.ko count=11; insmod params.ko bogus=1; insmod params.ko count=x; \
             insmod params.ko verbose=maybe; lsmod",
        ),
        // 1..: through the control channel, for the errno values.
        init_module("params", "count=11"),
        init_module("params", "bogus=1"),
        init_module("params", "count=x"),
        init_module("params", "greeting=\"\""),
        Command::ListModules,
        // 6: the defaults, and a later value of the same parameter wins.
        init_module("params", "count=9 count=0x2 greeting=ok"),
        delete_module("params"),
        Command::ListModules,
    ]);
    run.assert_clean(9);
    let console = run.console();

    // Good values reach the module: it prints them and acts on them.
    assert_contains(
        &console,
        "params: count=5 verbose=true greeting=\"hi there\" offset=-1\n",
        "parameters given to insmod",
    );
    for i in 1..=5 {
        assert_contains(&console, &format!("params: hi there #{i}\n"), "verbose");
    }
    assert_contains(&console, "params: greeted 5 times", "count");
    assert!(!console.contains("params: hi there #6"), "{console}");
    assert_contains(&console, "params: unloaded (count was 5)", "exit");

    let out = run.shell(0);
    assert_eq!((out.lines, out.failed), (8, 4), "{}", out.output);
    let s = sections(&out.output);
    assert_lsmod_rows(&s[1].1, &[("params", "0")]);
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
    assert_contains(
        section(&s, "insmod params.ko verbose=maybe"),
        "kernel: params: invalid value for parameter 'verbose'",
        "bool parameter",
    );
    assert_eq!(s.last().unwrap().1, format!("{LSMOD_HEADER}\n"));
    // The module's init saw count=11 and refused it.
    assert_contains(
        &console,
        "params: count=11 is out of range 0..=10: refusing to load",
        "init",
    );
    // Bad parameters are refused before the module exists (no COMING); a refused init is
    // announced GOING without ever being LIVE.
    let params_states: Vec<String> = state_lines(&console)
        .into_iter()
        .map(|(n, s)| {
            assert_eq!(n, "params");
            s
        })
        .collect();
    assert_eq!(
        params_states,
        [
            // shell: count=5, count=11
            "COMING", "LIVE", "GOING", "COMING", "GOING",
            // channel: count=11, greeting="", then count=2 loaded and unloaded
            "COMING", "GOING", "COMING", "GOING", "COMING", "LIVE", "GOING",
        ]
    );

    let e = run.module_error(1);
    assert_eq!(e.errno, Errno::EINVAL.get(), "{e:?}");
    assert_eq!(e.message, "params: init_module failed with -22");
    let e = run.module_error(2);
    assert_eq!(e.errno, Errno::ENOENT.get(), "{e:?}");
    assert_eq!(e.message, "params: unknown parameter 'bogus'");
    let e = run.module_error(3);
    assert_eq!(e.errno, Errno::EINVAL.get(), "{e:?}");
    assert_eq!(
        e.message,
        "params: invalid value for parameter 'count': not an integer in the i64 range"
    );
    let e = run.module_error(4);
    assert_eq!(e.errno, Errno::EINVAL.get(), "{e:?}");
    assert_contains(&console, "params: greeting is 0 bytes", "empty greeting");
    assert!(run.modules(5).is_empty(), "{:#?}", run.modules(5));

    let m = run.module(6);
    assert_live_record(m);
    assert_contains(
        &console,
        "params: count=2 verbose=false greeting=\"ok\" offset=-1\nparams: greeted 2 times",
        "repeated parameter, defaults",
    );
    run.done(7);
    assert!(run.modules(8).is_empty(), "{:#?}", run.modules(8));
}

#[test]
fn guest_modinfo_matches_the_host_tool() {
    if !kvm_usable() {
        return;
    }
    let script: Vec<String> = LOADABLE
        .iter()
        .map(|m| format!("modinfo {m}"))
        .chain([
            "modinfo /lib/modules/params.ko".into(),
            "modinfo nosuch".into(),
        ])
        .collect();
    let run = Boot::monolithic()
        .quiet()
        .run(vec![shell(&script.join("; "))]);
    run.assert_clean(1);
    let out = run.shell(0);
    assert_eq!(
        (out.lines, out.failed),
        (LOADABLE.len() as u32 + 2, 1),
        "{}",
        out.output
    );
    let s = sections(&out.output);

    let dir = TempDir::new("modinfo");
    let without_filename = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("filename:"))
            .map(String::from)
            .collect()
    };
    for name in LOADABLE {
        let path = dir.path().join(format!("{name}.ko"));
        std::fs::write(&path, archive_file(&format!("lib/modules/{name}.ko"))).unwrap();
        let host = kmodlab_cli(&["modinfo", path.to_str().unwrap()]);
        assert!(
            host.status.success(),
            "kmodlab modinfo {name}.ko: {}",
            String::from_utf8_lossy(&host.stderr)
        );
        let host = String::from_utf8(host.stdout).expect("modinfo prints UTF-8");
        let guest = section(&s, &format!("modinfo {name}"));
        assert_eq!(
            guest.lines().next(),
            Some(format!("{:<16}/lib/modules/{name}.ko", "filename:").as_str()),
            "{guest}"
        );
        assert_eq!(
            without_filename(guest),
            without_filename(&host),
            "modinfo {name}: guest vs host"
        );
        for field in ["license:        GPL", &format!("name:           {name}")] {
            assert_contains(guest, field, name);
        }
        if name == "params" {
            assert_eq!(section(&s, "modinfo /lib/modules/params.ko"), guest);
            assert_contains(guest, "parm:           count:", "parameters listed");
        }
    }
    assert_eq!(
        section(&s, "modinfo nosuch"),
        "modinfo: ERROR: Module nosuch not found.\n"
    );
}

// ---- 2. dependencies: modprobe, users, modprobe -r ---------------------------------------

#[test]
fn modprobe_loads_the_chain_in_order_and_modprobe_r_removes_it() {
    if !kvm_usable() {
        return;
    }
    let run = Boot::monolithic().run(vec![
        shell("modprobe kvclient; lsmod"),
        Command::ListModules,
        shell("rmmod kvstore; rmmod crc32"),
        delete_module("ramblk"),
        Command::ListModules,
        shell("modprobe -r kvclient; lsmod"),
        Command::ListModules,
        // 7: a dependency still used by another module stays.
        shell("modprobe kvclient; modprobe cstats; modprobe -r kvclient; lsmod"),
        Command::ListModules,
        // 9: the exports of the removed modules are gone with them.
        init_module("kvstore", ""),
        Command::ListModules,
    ]);
    run.assert_clean(11);
    let console = run.console();

    let out = run.shell(0);
    assert_eq!((out.lines, out.failed), (2, 0), "{}", out.output);
    // The order modules.dep gives, and every provider LIVE before its user starts loading.
    let dep_text = std::str::from_utf8(archive_file("lib/modules/modules.dep")).unwrap();
    let order: Vec<String> = ModulesDep::parse(dep_text)
        .load_order("kvclient")
        .expect("kvclient is in modules.dep")
        .iter()
        .map(|p| module_name(p))
        .collect();
    assert_eq!(order, CHAIN, "modules.dep's load order for kvclient");
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

    let records = run.modules(1);
    assert_eq!(names(records), CHAIN, "load order");
    // lsmod is the kernel's list, and reads as Linux's would.
    let s = sections(&out.output);
    let lsmod = section(&s, "lsmod");
    assert_eq!(lsmod, expected_lsmod(records));
    assert_lsmod_rows(
        lsmod,
        &[
            ("kvclient", "0"),
            ("kvstore", "1 kvclient"),
            ("ramblk", "1 kvstore"),
            ("crc32", "1 kvstore"),
        ],
    );
    for r in records {
        assert_live_record(r);
    }
    let expect = |name: &str, uses: &[&str], used_by: &[&str]| {
        let r = record(records, name);
        assert_eq!(set(&r.uses), uses.iter().copied().collect(), "{name} uses");
        assert_eq!(
            set(&r.used_by),
            used_by.iter().copied().collect(),
            "{name} used by"
        );
        assert_eq!(r.refcount as usize, used_by.len(), "{name} refcount");
    };
    expect("crc32", &[], &["kvstore"]);
    expect("ramblk", &[], &["kvstore"]);
    expect("kvstore", &["crc32", "ramblk"], &["kvclient"]);
    expect("kvclient", &["kvstore"], &[]);

    // A provider in use cannot go, and the refusal names its users.
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
    assert_eq!(e.errno, Errno::EBUSY.get(), "{e:?}");
    assert_eq!(e.message, "Module ramblk is in use by: kvstore");
    assert_eq!(run.modules(4), records, "a refused rmmod changed something");

    // modprobe -r removes the module, then every dependency nobody uses any more.
    let out = run.shell(5);
    assert_eq!((out.lines, out.failed), (2, 0), "{}", out.output);
    assert_eq!(
        section(&sections(&out.output), "lsmod"),
        format!("{LSMOD_HEADER}\n")
    );
    let going: Vec<String> =
        state_lines(&console[..position(&console, "kmodlab# modprobe cstats")])
            .into_iter()
            .filter(|(_, s)| s == "GOING")
            .map(|(n, _)| n)
            .collect();
    let reversed: Vec<String> = CHAIN.iter().rev().map(|s| s.to_string()).collect();
    assert_eq!(going, reversed, "GOING order");
    for name in CHAIN {
        let (_, exit) = init_and_exit_lines(name);
        assert_contains(&console, exit, name);
    }
    assert!(run.modules(6).is_empty(), "{:#?}", run.modules(6));

    let out = run.shell(7);
    assert_eq!((out.lines, out.failed), (4, 0), "{}", out.output);
    let s = sections(&out.output);
    assert_lsmod_rows(
        section(&s, "lsmod"),
        &[("cstats", "0"), ("crc32", "1 cstats")],
    );
    let records = run.modules(8);
    assert_eq!(names(records), ["crc32", "cstats"]);
    assert_eq!(set(&record(records, "crc32").used_by), ["cstats"].into());

    let e = run.module_error(9);
    assert_eq!(e.errno, Errno::ENOENT.get(), "{e:?}");
    assert_contains(
        &e.message,
        "module `kvstore`: unknown symbol `ramblk_",
        "ramblk's exports outlived it",
    );
    assert_eq!(run.modules(10), records);
}

fn record<'a>(records: &'a [ModuleRecord], name: &str) -> &'a ModuleRecord {
    records
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} is not loaded: {:?}", names(records)))
}

// ---- 3. errors, each its own, and the kernel keeps working -------------------------------

/// A list of commands being built, with the index of each one's reply.
#[derive(Default)]
struct Plan {
    commands: Vec<Command>,
    /// Where [`Plan::hello_works`] put its `InitModule hello`.
    hello_checks: Vec<usize>,
}

impl Plan {
    fn push(&mut self, command: Command) -> usize {
        self.commands.push(command);
        self.commands.len() - 1
    }

    /// Loads and unloads `hello`: proof the kernel still works after an error.
    fn hello_works(&mut self) {
        let at = self.push(init_module("hello", ""));
        self.push(delete_module("hello"));
        self.hello_checks.push(at);
    }

    fn run(self, boot: &Boot) -> (Run, Vec<usize>) {
        let n = self.commands.len();
        let run = boot.run(self.commands);
        run.assert_clean(n);
        for &at in &self.hello_checks {
            let m = run.module(at);
            assert_eq!(m.name, "hello", "reply {at}");
            assert_live_record(m);
            run.done(at + 1);
        }
        (run, self.hello_checks)
    }
}

#[test]
fn each_error_is_its_own_and_the_kernel_keeps_working() {
    if !kvm_usable() {
        return;
    }
    let Malformed {
        file: malformed_file,
        bytes: malformed,
        ..
    } = corpus()
        .into_iter()
        .find(|m| m.file == "text_writable.ko")
        .expect("the corpus has text_writable.ko");
    let loader_says = host_loader_error(&malformed)
        .expect("the host loader refuses text_writable.ko")
        .to_string();

    let mut p = Plan::default();
    // Unknown symbol: kvstore without ramblk and crc32.
    let unknown_symbol = p.push(init_module("kvstore", ""));
    p.hello_works();
    // A malformed module from the corpus, and a file that is not a module at all.
    let malformed_at = p.push(Command::InitModuleImage {
        image: malformed,
        params: String::new(),
    });
    p.hello_works();
    let not_elf = p.push(Command::InitModuleImage {
        image: b"#!/bin/sh\necho not a module\n".to_vec(),
        params: String::new(),
    });
    p.hello_works();
    // Duplicate load; the loaded module must be untouched.
    let first = p.push(init_module("hello", ""));
    let duplicate = p.push(init_module("hello", ""));
    let after_duplicate = p.push(Command::ListModules);
    let unload_first = p.push(delete_module("hello"));
    p.hello_works();
    // Missing capability, for loading and for unloading (params loaded by the kernel).
    let params = p.push(init_module("params", ""));
    let no_cap = p.push(shell("capdrop; insmod hello.ko; rmmod params; lsmod"));
    let after_no_cap = p.push(Command::ListModules);
    p.push(delete_module("params"));
    p.hello_works();
    // A module that is not LIVE is busy: autoload asks for itself while it is COMING (in
    // its init) and while it is GOING (in its exit, during rmmod), and must be told EBUSY.
    let autoload = p.push(init_module("autoload", "want=hello"));
    let autoload_list = p.push(Command::ListModules);
    p.push(delete_module("hello"));
    let autoload_gone = p.push(delete_module("autoload"));
    p.hello_works();
    // Unload of a module that is not loaded.
    let not_loaded = p.push(delete_module("nosuch"));
    let not_loaded_sh = p.push(shell("rmmod nosuch; rmmod hello.ko"));
    p.hello_works();
    // A module that is not in the archive.
    let not_in_archive = p.push(init_module("nosuch", ""));
    p.hello_works();
    let last = p.push(Command::ListModules);

    let (run, hellos) = p.run(&Boot::monolithic());
    assert_eq!(hellos.len(), 8);
    let console = run.console();

    // Unknown symbol: ENOENT, naming a symbol of one of the missing providers.
    let e = run.module_error(unknown_symbol);
    assert_eq!(e.errno, Errno::ENOENT.get(), "{e:?}");
    let symbol = e
        .message
        .strip_prefix("module `kvstore`: unknown symbol `")
        .and_then(|s| s.strip_suffix('`'))
        .unwrap_or_else(|| panic!("unknown-symbol message: {e:?}"));
    assert!(
        symbol.starts_with("ramblk_") || symbol.starts_with("crc32"),
        "{symbol} is not an export of ramblk or crc32"
    );
    assert_contains(&console, &format!("module: {}", e.message), "kernel log");

    // Malformed: ENOEXEC, with the loader's own explanation.
    let e = run.module_error(malformed_at);
    assert_eq!(e.errno, Errno::ENOEXEC.get(), "{malformed_file}: {e:?}");
    assert_eq!(e.message, loader_says, "{malformed_file}");
    let e = run.module_error(not_elf);
    assert_eq!(e.errno, Errno::ENOEXEC.get(), "{e:?}");
    assert_contains(&e.message, "bad ELF magic", "a shell script as a module");

    // Duplicate: EEXIST.
    let loaded = run.module(first);
    let e = run.module_error(duplicate);
    assert_eq!(e.errno, Errno::EEXIST.get(), "{e:?}");
    assert_eq!(e.message, "module hello is already loaded");
    assert_eq!(run.modules(after_duplicate), std::slice::from_ref(loaded));
    run.done(unload_first);

    // Missing capability: EPERM from init_module and from delete_module; nothing changes.
    assert_eq!(run.module(params).name, "params");
    let out = run.shell(no_cap);
    assert_eq!((out.lines, out.failed), (4, 2), "{}", out.output);
    let s = sections(&out.output);
    assert_eq!(
        section(&s, "insmod hello.ko"),
        "insmod: ERROR: could not insert module hello.ko: Operation not permitted\n  \
         kernel: module management needs CAP_SYS_MODULE\n"
    );
    assert_eq!(
        section(&s, "rmmod params"),
        "rmmod: ERROR: module management needs CAP_SYS_MODULE\n"
    );
    assert_lsmod_rows(section(&s, "lsmod"), &[("params", "0")]);
    assert_eq!(names(run.modules(after_no_cap)), ["params"]);

    // Not LIVE: EBUSY while COMING and while GOING.
    let m = run.module(autoload);
    assert_eq!(m.name, "autoload");
    assert_live_record(m);
    // autoload is registered (COMING) before the module it asks for.
    assert_eq!(names(run.modules(autoload_list)), ["autoload", "hello"]);
    run.done(autoload_gone);
    for line in [
        "request_module: loading hello",
        "autoload: request_module(hello): ok",
        "request_module autoload: module autoload is busy (Loading)",
        "autoload: request_module(self) while COMING: EBUSY, as expected",
        "request_module autoload: module autoload is busy (Unloading)",
        "autoload: request_module(self) while GOING: EBUSY, as expected",
    ] {
        assert_contains(&console, line, "autoload");
    }
    assert!(!console.contains("expected EBUSY"), "{console}");

    // Not loaded: ENOENT.
    let e = run.module_error(not_loaded);
    assert_eq!(e.errno, Errno::ENOENT.get(), "{e:?}");
    assert_eq!(e.message, "Module nosuch is not currently loaded");
    let out = run.shell(not_loaded_sh);
    assert_eq!((out.lines, out.failed), (2, 2), "{}", out.output);
    let s = sections(&out.output);
    assert_eq!(
        section(&s, "rmmod nosuch"),
        "rmmod: ERROR: Module nosuch is not currently loaded\n"
    );
    assert_eq!(
        section(&s, "rmmod hello.ko"),
        "rmmod: ERROR: Module hello is not currently loaded\n"
    );
    let e = run.module_error(not_in_archive);
    assert_eq!(e.errno, Errno::ENOENT.get(), "{e:?}");
    assert_eq!(e.message, "module nosuch is not in the module archive");

    assert!(run.modules(last).is_empty(), "{:#?}", run.modules(last));
}

/// The errno the guest kernel gives a loader error (`ModError::errno` in
/// guest-kernel/src/module/mod.rs follows Linux: unknown symbol ENOENT, no memory ENOMEM,
/// anything wrong with the file ENOEXEC).
fn loader_errno(kind: kmod_loader::ErrorKind) -> i32 {
    match kind {
        kmod_loader::ErrorKind::UnknownSymbol => Errno::ENOENT.get(),
        kmod_loader::ErrorKind::OutOfMemory => Errno::ENOMEM.get(),
        _ => Errno::ENOEXEC.get(),
    }
}

#[test]
fn every_malformed_module_of_the_corpus_is_refused_with_the_loaders_error() {
    if !kvm_usable() {
        return;
    }
    let corpus = corpus();
    assert!(corpus.len() >= 40, "corpus too small: {}", corpus.len());
    let mut p = Plan::default();
    // Warm up (first use of the module area, registry and export table), then measure.
    p.hello_works();
    p.push(Command::Echo(Vec::new()));
    let before = p.push(Command::MemoryStats);
    let first = p.commands.len();
    for m in &corpus {
        p.push(Command::InitModuleImage {
            image: m.bytes.clone(),
            params: String::new(),
        });
    }
    p.push(Command::Echo(Vec::new()));
    let after = p.push(Command::MemoryStats);
    let list = p.push(Command::ListModules);
    p.hello_works();
    let (run, _) = p.run(&Boot::monolithic().quiet());

    let mut past_layout = 0;
    for (i, m) in corpus.iter().enumerate() {
        let (file, e) = (&m.file, run.module_error(first + i));
        match host_loader_error(&m.bytes) {
            // Refused before the kernel has anything of it: exactly the loader's error.
            Some(host) => {
                assert_eq!(e.errno, loader_errno(host.kind()), "{file}: {e:?}");
                assert_eq!(e.message, host.to_string(), "{file}");
            }
            // A relocation entry of a data section, checked as relocate applies it: the
            // same error as on the host, whatever the addresses.
            None if RELOCATION_ENTRY_KINDS.contains(&m.kind.as_str())
                && !m.base.starts_with("linux/") =>
            {
                past_layout += 1;
                let host = host_relocate_error(&m.bytes)
                    .unwrap_or_else(|| panic!("{file}: loads on the host"));
                assert_eq!(e.errno, loader_errno(host.kind()), "{file}: {e:?}");
                assert_eq!(e.message, host.to_string(), "{file}");
            }
            // Refused once COMING, in resolve or relocate, against the real kernel's exports.
            None => {
                past_layout += 1;
                if m.kind == "UnknownSymbol" || m.base.starts_with("linux/") {
                    // Linux modules need symbols kmodlab's kernel does not export.
                    assert_eq!(e.errno, Errno::ENOENT.get(), "{file}: {e:?}");
                    assert_contains(&e.message, "unknown symbol `", file);
                } else {
                    assert_eq!(e.errno, Errno::ENOEXEC.get(), "{file} ({}): {e:?}", m.kind);
                    let says = match m.kind.as_str() {
                        "RelocationOverflow" => "does not fit",
                        "UnresolvedSymbolReferenced" => "which has no address",
                        other => panic!("{file}: no expectation for {other} after layout: {e:?}"),
                    };
                    assert_contains(&e.message, says, file);
                }
            }
        }
    }
    assert!(
        past_layout >= 3,
        "only {past_layout} corpus files get past layout: the undo after COMING is untested"
    );
    assert!(run.modules(list).is_empty(), "{:#?}", run.modules(list));
    assert_eq!(
        run.memory(after),
        run.memory(before),
        "refusing the corpus leaked kernel memory"
    );
}

// ---- 4. a failing load undoes everything ---------------------------------------------------

#[test]
fn failing_init_undoes_everything() {
    if !kvm_usable() {
        return;
    }
    let mut p = Plan::default();
    // Warm up: first use of the module area, registry, export table, parameter strings.
    p.hello_works();
    p.push(init_module("params", "greeting=warm"));
    p.push(delete_module("params"));
    // The reply before MemoryStats is still allocated while it runs: make it an empty Echo.
    p.push(Command::Echo(Vec::new()));
    let before = p.push(Command::MemoryStats);
    let count_11 = p.push(init_module(
        "params",
        "count=11 greeting=\"a longer greeting\"",
    ));
    p.push(Command::Echo(Vec::new()));
    let after_init = p.push(Command::MemoryStats);
    // Other failures, at other steps: parameters (before COMING), resolve (after the
    // regions are allocated), and an init that loaded other modules before failing.
    let bogus = p.push(init_module("params", "bogus=1"));
    let unknown_symbol = p.push(init_module("kvstore", ""));
    p.push(Command::Echo(Vec::new()));
    let after_others = p.push(Command::MemoryStats);
    let list = p.push(Command::ListModules);
    // The statistics do see a module: a loaded one shows in both.
    p.push(init_module("params", "greeting=\"a longer greeting\""));
    p.push(Command::Echo(Vec::new()));
    let while_loaded = p.push(Command::MemoryStats);
    p.push(delete_module("params"));
    p.hello_works();
    let (run, _) = p.run(&Boot::monolithic());
    let console = run.console();

    let e = run.module_error(count_11);
    assert_eq!(e.errno, Errno::EINVAL.get(), "{e:?}");
    assert_eq!(e.message, "params: init_module failed with -22");
    // It got as far as init, and was announced going.
    assert_contains(
        &console,
        "params: count=11 verbose=false greeting=\"a longer greeting\" offset=-1\n\
         params: count=11 is out of range 0..=10: refusing to load\n",
        "init ran with the parameters",
    );
    let states = state_lines(&console);
    let params_states: Vec<&str> = states
        .iter()
        .filter(|(n, _)| n == "params")
        .map(|(_, s)| s.as_str())
        .collect();
    assert_eq!(
        params_states,
        [
            "COMING", "LIVE", "GOING", // warm-up
            "COMING", "GOING", // count=11
            "COMING", "LIVE", "GOING", // loaded, measured, unloaded
        ],
        "notifier events of params"
    );
    assert_eq!(
        run.memory(after_init),
        run.memory(before),
        "a failed init leaked kernel memory"
    );

    assert_eq!(run.module_error(bogus).errno, Errno::ENOENT.get());
    assert_eq!(run.module_error(unknown_symbol).errno, Errno::ENOENT.get());
    assert_eq!(
        run.memory(after_others),
        run.memory(before),
        "a failed load leaked kernel memory"
    );
    assert!(run.modules(list).is_empty(), "{:#?}", run.modules(list));
    let (base, loaded) = (run.memory(before), run.memory(while_loaded));
    assert!(
        loaded.heap_used > base.heap_used && loaded.frames_free < base.frames_free,
        "a loaded module does not show in the statistics: {base:?} vs {loaded:?}"
    );
}

#[test]
fn unloading_frees_everything_loading_took() {
    if !kvm_usable() {
        return;
    }
    unloading_frees_everything(Boot::monolithic().quiet());
}

/// With the frames of every module region taken one at a time (as a fragmented memory makes
/// them) and written through a window of the module area, every module still loads, runs its
/// init and exit, and unloading frees all the load took: the windows too.
#[test]
fn modules_load_and_unload_from_scattered_frames() {
    if !kvm_usable() {
        return;
    }
    let run = unloading_frees_everything(Boot::monolithic().cmdline(SCATTERED_KNOB));
    // The knob took: every region went the fragmented-memory way.
    assert_contains(
        &run.console(),
        &format!("{SCATTERED_KNOB}: module regions map frames one at a time"),
        "the scattered run's console",
    );
}

/// The kernel's command-line word for [`modules_load_and_unload_from_scattered_frames`].
const SCATTERED_KNOB: &str = "debug.scattered_module_frames=1";

fn unloading_frees_everything(boot: Boot) -> Run {
    let load_all = |p: &mut Plan| {
        for m in LOADABLE {
            let params = if m == "params" {
                "greeting=\"a copy\""
            } else {
                ""
            };
            p.push(init_module(m, params));
        }
        for m in LOADABLE.iter().rev() {
            p.push(delete_module(m));
        }
    };
    let mut p = Plan::default();
    load_all(&mut p);
    p.push(Command::Echo(Vec::new()));
    let before = p.push(Command::MemoryStats);
    load_all(&mut p);
    p.push(Command::Echo(Vec::new()));
    let after = p.push(Command::MemoryStats);
    // Modules loaded on demand (autoload's request_module) are freed like any other.
    p.push(init_module("autoload", ""));
    for m in std::iter::once("autoload").chain(CHAIN.into_iter().rev()) {
        p.push(delete_module(m));
    }
    p.push(Command::Echo(Vec::new()));
    let after_on_demand = p.push(Command::MemoryStats);
    let list = p.push(Command::ListModules);
    let (run, _) = p.run(&boot);
    for (i, reply) in run.replies().iter().enumerate() {
        assert!(
            !matches!(reply, Reply::ModuleError(_)),
            "reply {i}: {reply:?}"
        );
    }
    assert!(run.modules(list).is_empty(), "{:#?}", run.modules(list));
    assert_eq!(
        run.memory(after),
        run.memory(before),
        "loading and unloading every module leaked kernel memory"
    );
    assert_eq!(
        run.memory(after_on_demand),
        run.memory(before),
        "modules loaded on demand leaked kernel memory"
    );
    run
}

// ---- 5. request_module ----------------------------------------------------------------------

#[test]
fn request_module_loads_missing_providers_on_demand() {
    if !kvm_usable() {
        return;
    }
    let run = Boot::monolithic().run(vec![
        // 0, 1: nothing loaded: autoload's request for kvclient loads the whole chain.
        shell("insmod autoload.ko; lsmod"),
        Command::ListModules,
        // 2: remove everything; keep crc32 loaded, so only the rest is loaded on demand.
        shell("rmmod autoload; modprobe -r kvclient; insmod crc32.ko; echo ---- MARK ----"),
        init_module("autoload", ""),
        Command::ListModules,
        // 5: a request for a module that does not exist fails autoload's init, cleanly.
        shell("rmmod autoload; modprobe -r kvclient; echo ---- MARK 2 ----"),
        init_module("autoload", "want=nosuch"),
        Command::ListModules,
    ]);
    run.assert_clean(8);
    let console = run.console();
    let (first, rest) = console
        .split_once("---- MARK ----")
        .expect("the first marker");
    let (second, third) = rest
        .split_once("---- MARK 2 ----")
        .expect("the second marker");

    let out = run.shell(0);
    assert_eq!((out.lines, out.failed), (2, 0), "{}", out.output);
    let records = run.modules(1);
    assert_eq!(
        names(records),
        ["autoload", "crc32", "ramblk", "kvstore", "kvclient"],
        "autoload is registered (COMING) before what it asks for"
    );
    for r in records {
        assert_live_record(r);
    }
    assert!(record(records, "autoload").uses.is_empty());
    assert_eq!(set(&record(records, "kvclient").uses), ["kvstore"].into());
    assert_eq!(
        section(&sections(&out.output), "lsmod"),
        expected_lsmod(records)
    );
    let requested = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("request_module: loading "))
            .map(String::from)
            .collect()
    };
    assert_eq!(requested(first), CHAIN, "loaded on demand, providers first");
    // Each provider was LIVE before the module needing it started loading, and autoload
    // went LIVE only after its request returned.
    let states = state_lines(first);
    let pos = |name: &str, state: &str| {
        states
            .iter()
            .position(|(n, s)| n == name && s == state)
            .unwrap_or_else(|| panic!("no {state} for {name}: {states:?}"))
    };
    for pair in CHAIN.windows(2) {
        assert!(pos(pair[0], "LIVE") < pos(pair[1], "COMING"), "{states:?}");
    }
    assert!(pos("autoload", "COMING") < pos("crc32", "COMING"));
    assert!(pos("kvclient", "LIVE") < pos("autoload", "LIVE"));
    let ok = position(first, "autoload: request_module(kvclient): ok");
    assert!(ok > position(first, "kvclient: put 16, read back 16 ok"));

    // With crc32 there already, only the rest is loaded.
    let out = run.shell(2);
    assert_eq!((out.lines, out.failed), (4, 0), "{}", out.output);
    assert_eq!(run.module(3).name, "autoload");
    assert_eq!(requested(second), ["ramblk", "kvstore", "kvclient"]);
    let records = run.modules(4);
    assert_eq!(
        names(records),
        ["crc32", "autoload", "ramblk", "kvstore", "kvclient"]
    );
    assert_eq!(set(&record(records, "crc32").used_by), ["kvstore"].into());

    // A provider that does not exist: autoload's init fails with the request's errno.
    let out = run.shell(5);
    assert_eq!((out.lines, out.failed), (3, 0), "{}", out.output);
    let e = run.module_error(6);
    assert_eq!(e.errno, Errno::ENOENT.get(), "{e:?}");
    assert_eq!(e.message, "autoload: init_module failed with -2");
    assert_contains(
        third,
        "request_module nosuch: module nosuch is not in the module archive",
        "the failed request",
    );
    assert!(run.modules(7).is_empty(), "{:#?}", run.modules(7));
}

// ---- 6. no CONFIG_MODULE_UNLOAD -------------------------------------------------------------

#[test]
fn kernel_without_module_unload_refuses_rmmod() {
    if !kvm_usable() {
        return;
    }
    let run = Boot::without_unload().run(vec![
        init_module("hello", ""),
        delete_module("hello"),
        shell("rmmod hello; modprobe kvclient; modprobe -r kvclient; lsmod; capdrop; rmmod hello"),
        Command::ListModules,
    ]);
    run.assert_clean(4);
    let console = run.console();
    assert_eq!(run.module(0).name, "hello");
    let e = run.module_error(1);
    assert_eq!(
        e.errno,
        Errno::ENOSYS.get(),
        "{e:?}: not 'Function not implemented'"
    );
    let not_supported = "module unloading is not supported (kernel built without module-unload)";
    assert_eq!(e.message, not_supported);
    assert!(!console.contains("module hello (#1): GOING"), "{console}");
    assert!(!console.contains("hello: Goodbye"), "{console}");

    let out = run.shell(2);
    assert_eq!((out.lines, out.failed), (6, 3), "{}", out.output);
    let s = sections(&out.output);
    assert_eq!(
        s[0],
        (
            "rmmod hello".to_string(),
            format!("rmmod: ERROR: {not_supported}\n")
        )
    );
    assert_eq!(
        section(&s, "modprobe -r kvclient"),
        format!("modprobe: FATAL: {not_supported}\n")
    );
    // The permission check comes first, as in Linux.
    assert_eq!(
        s.last().unwrap(),
        &(
            "rmmod hello".to_string(),
            "rmmod: ERROR: module management needs CAP_SYS_MODULE\n".to_string()
        )
    );
    let records = run.modules(3);
    assert_eq!(
        names(records),
        ["hello", "crc32", "ramblk", "kvstore", "kvclient"]
    );
    for r in records {
        assert_live_record(r);
    }
    assert_eq!(section(&s, "lsmod"), expected_lsmod(records));
    assert!(
        !console.contains("GOING"),
        "something was unloaded:\n{console}"
    );

    // Without the unload code the kernel is smaller.
    let with_unload = Boot::monolithic().quiet().run(Vec::new());
    with_unload.assert_clean(0);
    let text = |run: &Run| {
        run.report
            .controller
            .ready
            .as_ref()
            .expect("the guest said it was ready")
            .image
            .text
    };
    assert!(
        text(&run) < text(&with_unload),
        ".text without unload {} B, with {} B",
        text(&run),
        text(&with_unload)
    );
}

// ---- 7. a faulting module takes the monolithic kernel down -------------------------------

/// Where the kernel says a fault RIP is: `(module, offset)` from its "rip is in module"
/// line.
fn fault_location(console: &str) -> (String, u64) {
    let line = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("rip is in module "))
        .unwrap_or_else(|| panic!("the fault report does not name a module:\n{console}"));
    let (module, offset) = line
        .split_once(" at offset 0x")
        .unwrap_or_else(|| panic!("{line}"));
    let offset = u64::from_str_radix(offset.trim(), 16).unwrap_or_else(|e| panic!("{line}: {e}"));
    (module.to_string(), offset)
}

#[test]
fn faulty_module_crashes_the_monolithic_kernel_with_the_fault_reported() {
    if !kvm_usable() {
        return;
    }
    // (params, expected vector, whether the fault is in exit)
    let cases: [(&str, u8, bool); 9] = [
        ("mode=null", 14, false),
        // Its own state scribbled with seed 1's bytes: a load through a non-canonical
        // pointer.
        ("mode=scribble", 13, false),
        ("mode=ud", 6, false),
        ("mode=div0", 0, false),
        ("mode=panic", 6, false),
        // The default target, 0x0000_dead_0000_0000, is not canonical (bit 47 set): #GP.
        ("mode=wild", 13, false),
        ("mode=wild addr=0x7fff00000000", 14, false),
        ("mode=null at=exit", 14, true),
        // The stack overflows into its guard page; pushing the #PF frame on the same stack
        // faults again: #DF (unless the kernel switched stacks for #PF).
        ("mode=stack", 8, false),
    ];
    for (params, vector, at_exit) in cases {
        let mut commands = vec![Command::ListModules, init_module("faulty", params)];
        if at_exit {
            commands.push(delete_module("faulty"));
        }
        // Must never run: the fault ends the guest.
        commands.push(Command::Echo(b"still alive".to_vec()));
        let start = Instant::now();
        let run = Boot::monolithic().run(commands);
        let took = start.elapsed();
        let what = format!("faulty {params}");
        let RunEnd::KernelFault(f) = run.report.end else {
            panic!("{what}: expected a kernel fault, got {}", run.context());
        };
        let what = format!("{what}: {f:x?}");
        // A crash, promptly, not a hang.
        assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
        let described = run.report.end.describe();
        assert!(
            described.starts_with("guest kernel crashed"),
            "{what}: {described}"
        );
        if params == "mode=stack" {
            assert!([8, 14].contains(&f.vector), "{what}: vector");
        } else {
            assert_eq!(f.vector, vector, "{what}: vector");
        }
        assert_eq!(f.cpl, 0, "{what}: a module runs in the kernel");
        let console = run.console();
        // The replies stop at the fault.
        let expected_replies = if at_exit { 2 } else { 1 };
        assert_eq!(
            run.replies().len(),
            expected_replies,
            "{what}: {:?}",
            run.replies()
        );
        assert_eq!(run.replies()[0], Reply::Modules(Vec::new()));
        let banner = format!(
            "KERNEL FAULT: {} (vector {}) in supervisor mode",
            vector_name(f.vector),
            f.vector
        );
        assert_contains(&console, &banner, &what);
        assert_contains(&console, &format!("rip {:#018x}", f.rip), &what);
        assert_contains(
            &console,
            &format!(
                "faulty: about to fault: {}",
                &params[..params.find(' ').unwrap_or(params.len())]
            ),
            &what,
        );
        // The CPU leaves the RIP saved by a #DF undefined; every other fault is at the
        // faulting instruction, in the module's code, and the kernel says so.
        if f.vector == 8 {
            continue;
        }
        assert!(MODULE_AREA.contains(&f.rip), "{what}: RIP not in a module");
        let (module, offset) = fault_location(&console);
        assert_eq!(module, "faulty", "{what}");
        let base = f.rip - offset;
        assert!(base.is_multiple_of(4096), "{what}: region base {base:#x}");
        assert!(MODULE_AREA.contains(&base), "{what}: region base {base:#x}");
        if at_exit {
            let m = run.module(1);
            assert_live_record(m);
            assert_eq!(
                base, m.core_base,
                "{what}: the exit runs in the core region"
            );
            assert_contains(&console, "faulty: armed: mode=null at exit", &what);
        }
        match params {
            "mode=null" | "mode=null at=exit" => {
                assert_eq!(f.cr2, 0, "{what}");
                // Not present, read, supervisor, data.
                assert_eq!(f.error_code & 0b1_0111, 0, "{what}: #PF error code");
            }
            "mode=wild" => assert_eq!(f.error_code, 0, "{what}"),
            "mode=wild addr=0x7fff00000000" => {
                assert_eq!(f.cr2, 0x7fff_0000_0000, "{what}");
                assert_eq!(f.error_code & 0b110, 0b010, "{what}: a supervisor write");
            }
            "mode=panic" => assert_contains(&console, "faulty: panic:", &what),
            _ => {}
        }
    }
}

#[test]
fn faulty_module_looping_in_init_hangs_the_monolithic_kernel() {
    if !kvm_usable() {
        return;
    }
    let deadline = Duration::from_secs(3);
    let start = Instant::now();
    let run = Boot::monolithic().deadline(deadline).run(vec![
        init_module("faulty", "mode=loop"),
        Command::Echo(vec![1]),
    ]);
    let took = start.elapsed();
    let RunEnd::Hung { after, rip } = run.report.end else {
        panic!("expected a hang, got {}", run.context());
    };
    assert_eq!(after, deadline);
    assert!(took >= deadline, "stopped early, after {took:?}");
    assert!(took < deadline + Duration::from_secs(3), "took {took:?}");
    let rip = rip.expect("no RIP read from the stopped vCPU");
    assert!(
        MODULE_AREA.contains(&rip),
        "RIP {rip:#x}: not spinning in the module"
    );
    assert!(run.replies().is_empty(), "{:?}", run.replies());
    assert_contains(&run.console(), "faulty: about to fault: mode=loop", "hang");
}

// ---- the command line -----------------------------------------------------------------------

#[test]
fn kmodlab_run_loads_and_removes_the_chain_and_fails_on_a_failed_line() {
    if !kvm_usable() {
        return;
    }
    let out = kmodlab_cli(&[
        "run",
        "--config",
        "monolithic",
        "-c",
        "modprobe kvclient; lsmod; modprobe -r kvclient; lsmod",
    ]);
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let (loaded, removed) = stdout
        .split_once("kmodlab# modprobe -r kvclient\n")
        .unwrap_or_else(|| panic!("{stdout}"));
    let lsmod = &loaded[position(loaded, "kmodlab# lsmod\n") + "kmodlab# lsmod\n".len()..];
    assert_lsmod_rows(
        lsmod,
        &[
            ("kvclient", "0"),
            ("kvstore", "1 kvclient"),
            ("ramblk", "1 kvstore"),
            ("crc32", "1 kvstore"),
        ],
    );
    assert!(
        removed.ends_with(&format!("kmodlab# lsmod\n{LSMOD_HEADER}\n")),
        "{removed}"
    );
    for m in CHAIN {
        assert!(removed.contains(&format!("module {m} (#")), "{removed}");
    }

    let out = kmodlab_cli(&["run", "-c", "insmod hello.ko; insmod hello.ko; lsmod"]);
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_contains(&stderr, "1 of 3 shell commands failed", "stderr");
    assert_contains(
        &stdout,
        "insmod: ERROR: could not insert module hello.ko: File exists",
        "stdout",
    );

    let out = kmodlab_cli(&[
        "run",
        "--no-module-unload",
        "-c",
        "insmod hello.ko; rmmod hello; lsmod",
    ]);
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_contains(&stderr, "1 of 3 shell commands failed", "stderr");
    assert_contains(&stdout, "not supported", "stdout");
    let (_, lsmod) = stdout
        .rsplit_once("kmodlab# lsmod\n")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_lsmod_rows(lsmod, &[("hello", "0")]);
}

/// A command the control channel cannot carry (a module image larger than its host half)
/// ends the run with a typed host-side error, not a KVM failure or a panic; what ran before
/// it completed.
#[test]
fn a_command_too_large_for_the_channel_is_a_host_error() {
    if !kvm_usable() {
        return;
    }
    let too_big = vec![0u8; kmodlab_abi::channel::MAX_PAYLOAD + 1];
    let run = Boot::monolithic().run(vec![
        init_module("hello", ""),
        Command::InitModuleImage {
            image: too_big,
            params: String::new(),
        },
    ]);
    assert!(
        matches!(run.report.end, kmodlab::vm::RunEnd::AnswerTooLarge(_)),
        "{:?}",
        run.report.end
    );
    assert_eq!(run.report.controller.replies.len(), 1);
    assert!(matches!(run.report.controller.replies[0], Reply::Module(_)));
}
