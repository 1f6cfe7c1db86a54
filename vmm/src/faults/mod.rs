//! `kmodlab faults`: a fault-injection campaign. One boot serves a batch of injections; each
//! injection loads `faulty` next to live modules, makes it fault (at init, at exit, or in the
//! middle of a call to its service), then checks what the issue asks of a system that
//! contains faults: the kernel survives, the fault is reported with the module and the
//! offset in it, the other modules' services answer correctly, the faulted module unloads,
//! and the kernel's free frames are back to what they were before the injection.
//!
//! A guest that ends (a kernel crash) or stops answering (a hang: the session's command
//! timeout, then the batch's VM deadline) ends its batch; the campaign counts it and boots
//! again for the next injection. In the monolithic configuration every exception ends the
//! kernel, so each one costs a boot (hence the smaller default count there).
//!
//! Recovery time is measured on the host: wall-clock time from sending the command that runs
//! the fault (the insmod, the rmmod, or the service call) to the arrival of a correct reply
//! from another module's service (`crc32`), so it includes the fault's handling in the guest
//! and three control-channel round trips (~0.1 ms each on kvm_pvm).

pub mod cli;
pub mod plan;
pub mod report;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kmodlab_abi::KernelConfig;
use kmodlab_abi::channel::{Command, FaultPhase, MemoryStats, ModuleRecord, Reply};
use serde::Serialize;

use crate::compare::session::{GuestSession, SessionError};
use crate::devices::serial::Echo;
use crate::vm::{RunEnd, VmConfig, VmError};
use plan::{Fault, Injection, Phase};

/// The modules every boot of a campaign keeps loaded: the store chain whose services must
/// keep answering.
pub const RESIDENTS: [&str; 3] = ["crc32", "ramblk", "kvstore"];

/// The request that checks the `crc32` service, and its correct reply (CRC-32 of
/// "123456789", little-endian).
const CRC_REQUEST: &[u8] = b"123456789";
const CRC_REPLY: [u8; 4] = 0xCBF4_3926u32.to_le_bytes();

/// `kvstore`'s service ops.
const KV_PUT: u32 = 0;
const KV_GET: u32 = 1;
const KV_DELETE: u32 = 2;

/// Largest reply the campaign accepts from a service.
const REPLY_CAP: u32 = 64;

/// Errnos the campaign expects (Linux's numbers).
const EPIPE: i32 = 32;
const ETIMEDOUT: i32 = 110;
const EMSGSIZE: i32 = 90;
const ENOENT: i32 = 2;

/// How a campaign runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which kernel.
    pub config: KernelConfig,
    /// Injections.
    pub count: u64,
    /// The plan's seed.
    pub seed: u64,
    /// Injections per boot.
    pub batch: u64,
    /// The microkernel's watchdog budget (`watchdog_ms=`), which bounds each `loop` fault.
    pub watchdog_ms: u64,
    /// How long the guest may take to answer one command before the injection counts as a
    /// hang.
    pub command_timeout: Duration,
    /// Guest RAM.
    pub ram_bytes: u64,
}

impl Options {
    /// The VM deadline of a batch of `len` injections: room for the boot and `len`
    /// injections at well over their usual cost, so that only a hang reaches it.
    pub fn batch_deadline(&self, len: u64) -> Duration {
        // ~30 ms is usual per injection on a loaded kvm_pvm host, plus the watchdog's
        // budget for a `loop`.
        let per = Duration::from_millis(200 + self.watchdog_ms);
        Duration::from_secs(10)
            + self.command_timeout
            + per.saturating_mul(u32::try_from(len).unwrap_or(u32::MAX))
    }
}

/// Why a campaign could not run at all (a fault it finds is a result, not one of these).
#[derive(Debug, thiserror::Error)]
pub enum FaultsError {
    /// KVM is missing or unusable.
    #[error("KVM is not usable: {0}")]
    Kvm(String),
    /// A fresh boot failed before any injection: the campaign cannot go on.
    #[error("batch {batch}: the guest did not come up: {error}")]
    Boot {
        /// The batch.
        batch: u64,
        /// What happened.
        error: String,
    },
    /// The preparation of a fresh boot (loading the resident modules, the warm-up) failed.
    #[error(
        "batch {batch}: preparing the guest failed at {step}: {error} (the campaign needs \
         crc32, ramblk and kvstore to load and answer before it injects anything)"
    )]
    Setup {
        /// The batch.
        batch: u64,
        /// The step.
        step: String,
        /// What happened.
        error: String,
    },
}

/// How one injection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// The kernel survived, the fault was reported (or the lie refused), the services
    /// answered, the module unloaded, no frame leaked.
    Contained,
    /// The kernel survived but a check failed (see the problem's text).
    Degraded,
    /// The kernel crashed (the VM ended).
    KernelCrash,
    /// The guest stopped answering.
    Hang,
}

/// What one injection did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The injection.
    pub injection: Injection,
    /// Its verdict.
    pub verdict: Verdict,
    /// Whether the fault fired at all (`scribble` can land on readable memory).
    pub fired: bool,
    /// The fault was reported with the module's name and the offset in it (record, or the
    /// kernel's crash report).
    pub reported: bool,
    /// A `garbage` lie was refused with a typed error.
    pub lie_refused: bool,
    /// The other modules' services answered correctly afterwards.
    pub services_answered: bool,
    /// Free frames missing after the unload, against before the injection.
    pub leaked_frames: u64,
    /// Kernel heap bytes still allocated after the unload, against before.
    pub heap_growth: u64,
    /// Host wall-clock time from the faulting command to a correct service reply.
    pub recovery_us: Option<u64>,
    /// The exception vector reported, if any.
    pub vector: Option<u8>,
    /// What went wrong, if anything.
    pub problems: Vec<String>,
}

/// How a campaign ran: what its JSON document and its outcomes list both begin with.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignRun {
    /// The kernel configuration.
    pub config: String,
    /// Injections asked for.
    pub count: u64,
    /// The plan's seed.
    pub seed: u64,
    /// Injections per boot.
    pub batch: u64,
    /// The watchdog budget in the microkernel.
    pub watchdog_ms: u64,
    /// Boots.
    pub boots: u64,
    /// Host wall-clock time of the campaign.
    pub wall_secs: f64,
    /// The KVM flavour the guest saw (`pvm`, `hardware`).
    pub kvm_flavour: String,
}

/// A whole campaign.
#[derive(Debug, Clone, Serialize)]
pub struct Campaign {
    /// How it ran.
    #[serde(flatten)]
    pub run: CampaignRun,
    /// Every injection's outcome.
    pub outcomes: Vec<Outcome>,
}

/// Reports progress (one call per batch).
pub trait Progress {
    /// A batch ended: injections done so far, of `total`, and the batch's duration.
    fn batch_done(&mut self, done: u64, total: u64, took: Duration, crashes: u64, hangs: u64);
}

/// No progress reporting.
pub struct Silent;

impl Progress for Silent {
    fn batch_done(&mut self, _: u64, _: u64, _: Duration, _: u64, _: u64) {}
}

/// Runs the campaign.
pub fn run(opts: &Options, progress: &mut dyn Progress) -> Result<Campaign, FaultsError> {
    let started = Instant::now();
    let injections = plan::plan(opts.count, opts.seed);
    let mut outcomes = Vec::with_capacity(injections.len());
    let mut boots = 0u64;
    let mut flavour = None;
    let (mut crashes, mut hangs) = (0u64, 0u64);
    let mut next = 0usize;
    while next < injections.len() {
        let batch_started = Instant::now();
        let end = (next + opts.batch as usize).min(injections.len());
        let batch_no = boots;
        boots += 1;
        let mut g = boot(opts, (end - next) as u64, batch_no)?;
        flavour = Some(g.flavour);
        let base = prepare(&mut g).map_err(|(step, error)| FaultsError::Setup {
            batch: batch_no,
            step,
            error,
        })?;
        let mut frames_before = base;
        let mut ended = false;
        for inj in &injections[next..end] {
            let out = inject(&mut g, opts.config, inj, &mut frames_before);
            next += 1;
            match out.verdict {
                Verdict::KernelCrash => crashes += 1,
                Verdict::Hang => hangs += 1,
                _ => {}
            }
            let stop = matches!(out.verdict, Verdict::KernelCrash | Verdict::Hang);
            outcomes.push(out);
            if stop {
                ended = true;
                break;
            }
        }
        if ended {
            // The session's drop waits for the VM thread, which the batch deadline bounds.
            drop(g);
        } else {
            g.shutdown();
        }
        progress.batch_done(
            next as u64,
            injections.len() as u64,
            batch_started.elapsed(),
            crashes,
            hangs,
        );
    }
    Ok(Campaign {
        run: CampaignRun {
            config: opts.config.name().into(),
            count: opts.count,
            seed: opts.seed,
            batch: opts.batch,
            watchdog_ms: opts.watchdog_ms,
            boots,
            wall_secs: started.elapsed().as_secs_f64(),
            kvm_flavour: flavour.map_or("unknown", |f| f.name()).into(),
        },
        outcomes,
    })
}

fn boot(opts: &Options, len: u64, batch: u64) -> Result<GuestSession, FaultsError> {
    let mut cmdline = String::from("quiet");
    if opts.config == KernelConfig::Microkernel {
        cmdline.push_str(&format!(
            " {}={}",
            kmodlab_abi::status::WATCHDOG_WORD,
            opts.watchdog_ms
        ));
    }
    let cfg = VmConfig {
        ram_bytes: opts.ram_bytes,
        deadline: opts.batch_deadline(len),
        cmdline,
        ..VmConfig::new(opts.config)
    };
    GuestSession::boot(
        &cfg,
        crate::artifacts::images(opts.config),
        Echo::Quiet,
        opts.command_timeout,
    )
    .map_err(|e| match e {
        SessionError::Vm(VmError::Preflight(p)) => FaultsError::Kvm(p.to_string()),
        other => FaultsError::Boot {
            batch,
            error: other.to_string(),
        },
    })
}

/// Loads the residents, warms the kernel's tables up to the most tasks an injection has
/// alive at once (they keep their size, which is not a leak), and returns the memory
/// accounting to compare with.
fn prepare(g: &mut GuestSession) -> Result<MemoryStats, (String, String)> {
    let step =
        |g: &mut GuestSession, what: String, cmd: Command| -> Result<Reply, (String, String)> {
            match g.command(cmd) {
                Ok((Reply::ModuleError(e), _)) => {
                    Err((what, format!("errno {}: {}", e.errno, e.message)))
                }
                Ok((r, _)) => Ok(r),
                Err(e) => Err((what, e.to_string())),
            }
        };
    for m in RESIDENTS {
        step(g, format!("insmod {m}"), init_module(m, ""))?;
    }
    let mut warm: Vec<(&str, &str)> = plan::Neighbour::ALL
        .iter()
        .filter_map(|n| n.module())
        .collect();
    warm.push(("faulty", "mode=none at=call"));
    for (m, p) in &warm {
        step(g, format!("insmod {m}"), init_module(m, p))?;
    }
    step(g, "call faulty".into(), service_call("faulty", 0, b""))?;
    for (m, _) in warm.iter().rev() {
        step(g, format!("rmmod {m}"), delete_module(m))?;
    }
    if let Err(e) = check_services(g, u64::MAX) {
        return Err(("the first service check".into(), e));
    }
    match memory(g) {
        Ok(m) => Ok(m),
        Err(e) => Err(("memory stats".into(), e.to_string())),
    }
}

fn init_module(name: &str, params: &str) -> Command {
    Command::InitModule {
        name: name.into(),
        params: params.into(),
    }
}

fn delete_module(name: &str) -> Command {
    Command::DeleteModule { name: name.into() }
}

fn service_call(service: &str, op: u32, request: &[u8]) -> Command {
    Command::ServiceCall {
        service: service.into(),
        op,
        request: request.to_vec(),
        reply_cap: REPLY_CAP,
    }
}

/// The memory accounting once the kernel has run what it had queued (an echo first: a
/// server's teardown finishes while the kernel waits for a call).
fn memory(g: &mut GuestSession) -> Result<MemoryStats, SessionError> {
    g.command(Command::Echo(Vec::new()))?;
    match g.command(Command::MemoryStats)? {
        (Reply::Memory(m), _) => Ok(m),
        (other, _) => Err(SessionError::Unexpected {
            what: "MemoryStats".into(),
            reply: format!("{other:?}"),
        }),
    }
}

/// Checks that `crc32` and `kvstore` answer correctly: a checksum, and a put, get and
/// delete of a key unique to injection `index`. `Err` says which answer was wrong.
fn check_services(g: &mut GuestSession, index: u64) -> Result<(), String> {
    let mut call = |service: &str, op: u32, req: &[u8]| -> Result<Vec<u8>, String> {
        match g.command(service_call(service, op, req)) {
            Ok((Reply::ServiceReply(r), _)) => Ok(r),
            Ok((other, _)) => Err(format!("{service} op {op} answered {other:?}")),
            Err(e) => Err(format!("{service} op {op}: {e}")),
        }
    };
    let crc = call("crc32", 0, CRC_REQUEST)?;
    if crc != CRC_REPLY {
        return Err(format!("crc32 answered {crc:02x?}, not {CRC_REPLY:02x?}"));
    }
    let key = format!("fault-{index}");
    let value = format!("v{index:x}");
    let mut put = vec![key.len() as u8];
    put.extend_from_slice(key.as_bytes());
    put.extend_from_slice(value.as_bytes());
    call("kvstore", KV_PUT, &put)?;
    let got = call("kvstore", KV_GET, key.as_bytes())?;
    if got != value.as_bytes() {
        return Err(format!(
            "kvstore get {key} answered {:?}, not {value:?}",
            String::from_utf8_lossy(&got)
        ));
    }
    call("kvstore", KV_DELETE, key.as_bytes())?;
    Ok(())
}

/// What a failed session means for the injection.
fn ended(out: &mut Outcome, e: &SessionError) {
    match e {
        SessionError::Ended { end, console } => {
            out.verdict = match end {
                RunEnd::Hung { .. } => Verdict::Hang,
                _ => Verdict::KernelCrash,
            };
            out.fired = true;
            if let Some((module, offset)) = console_location(console) {
                out.reported = module == "faulty";
                out.problems.push(format!(
                    "{} (reported in module {module} at offset {offset:#x})",
                    end.describe()
                ));
            } else {
                out.problems.push(end.describe());
            }
            if let RunEnd::KernelFault(f) = end {
                out.vector = Some(f.vector);
            }
        }
        SessionError::Timeout(t) => {
            out.verdict = Verdict::Hang;
            out.fired = true;
            out.problems
                .push(format!("the guest did not answer within {t:?}"));
        }
        other => {
            out.verdict = Verdict::KernelCrash;
            out.problems.push(other.to_string());
        }
    }
}

/// `(module, offset)` from the kernel's "rip is in module M at offset 0x…" line.
pub fn console_location(console: &str) -> Option<(String, u64)> {
    let line = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("rip is in module "))?;
    let (module, offset) = line.split_once(" at offset 0x")?;
    let hex: String = offset.chars().take_while(char::is_ascii_hexdigit).collect();
    Some((module.to_string(), u64::from_str_radix(&hex, 16).ok()?))
}

/// Runs one injection on a prepared guest. `frames_before` is the accounting the injection
/// must return to; a leak found is reported once and becomes the next baseline.
fn inject(
    g: &mut GuestSession,
    config: KernelConfig,
    inj: &Injection,
    baseline: &mut MemoryStats,
) -> Outcome {
    let mut out = Outcome {
        injection: *inj,
        verdict: Verdict::Contained,
        fired: false,
        reported: false,
        lie_refused: false,
        services_answered: false,
        leaked_frames: 0,
        heap_growth: 0,
        recovery_us: None,
        vector: None,
        problems: Vec::new(),
    };
    match inject_steps(g, config, inj, baseline, &mut out) {
        Ok(()) => {}
        Err(e) => ended(&mut out, &e),
    }
    if out.verdict == Verdict::Contained && !out.problems.is_empty() {
        out.verdict = Verdict::Degraded;
    }
    out
}

fn inject_steps(
    g: &mut GuestSession,
    config: KernelConfig,
    inj: &Injection,
    baseline: &mut MemoryStats,
    out: &mut Outcome,
) -> Result<(), SessionError> {
    let params = inj.params();
    if let Some((m, p)) = inj.neighbour.module() {
        let (r, _) = g.command(init_module(m, p))?;
        if !matches!(r, Reply::Module(_)) {
            out.problems.push(format!("insmod {m} {p}: {r:?}"));
        }
    }
    // The command that runs the fault, its reply, and when it was sent.
    let load_sent = Instant::now();
    let (load, _) = g.command(init_module("faulty", &params))?;
    let (reply, sent) = match inj.phase {
        Phase::Init => (load, load_sent),
        Phase::Exit | Phase::Call => {
            if !matches!(load, Reply::Module(_)) {
                out.problems
                    .push(format!("insmod faulty {params}: {load:?}"));
            }
            let cmd = match inj.phase {
                Phase::Exit => delete_module("faulty"),
                _ => service_call("faulty", 0, b"boom"),
            };
            let sent = Instant::now();
            let (r, _) = g.command(cmd)?;
            (r, sent)
        }
    };
    check_trigger_reply(inj, &reply, out);
    let ok = check_services(g, inj.index);
    finish_recovery(out, ok, sent);
    after_trigger(g, config, inj, baseline, out)
}

fn finish_recovery(out: &mut Outcome, ok: Result<(), String>, since: Instant) {
    match ok {
        Ok(()) => {
            out.services_answered = true;
            out.recovery_us = Some(since.elapsed().as_micros() as u64);
        }
        Err(e) => out.problems.push(format!("services after the fault: {e}")),
    }
}

/// Whether the reply of the faulting command is what a contained fault (or a refused lie)
/// gives the caller.
fn check_trigger_reply(inj: &Injection, reply: &Reply, out: &mut Outcome) {
    let params = inj.params();
    match (inj.fault, inj.phase, reply) {
        (Fault::Garbage, Phase::Init, Reply::ModuleError(e)) => {
            out.lie_refused = e.errno > 0;
            out.fired = true;
        }
        (Fault::Garbage, Phase::Call, Reply::ModuleError(e)) => {
            out.fired = true;
            out.lie_refused = e.errno == EMSGSIZE;
            if !out.lie_refused {
                out.problems.push(format!(
                    "{params}: the caller got errno {}, not EMSGSIZE",
                    e.errno
                ));
            }
        }
        (Fault::Garbage, Phase::Exit, Reply::Done) => out.fired = true,
        (Fault::Garbage, _, other) => out
            .problems
            .push(format!("{params}: the lie was not refused: {other:?}")),
        (_, _, Reply::ModuleError(e)) => {
            out.fired = true;
            // A server the watchdog stops fails the insmod or rmmod waiting for it with
            // ETIMEDOUT; a call in flight fails with EPIPE whatever killed the server.
            let expected = if inj.fault == Fault::Loop && inj.phase != Phase::Call {
                ETIMEDOUT
            } else {
                EPIPE
            };
            if e.errno != expected {
                out.problems.push(format!(
                    "{params}: the caller got errno {} ({}), expected {expected}",
                    e.errno, e.message
                ));
            }
        }
        (Fault::Scribble, _, Reply::Module(_) | Reply::Done | Reply::ServiceReply(_)) => {
            // The scribbled bytes formed readable addresses: no fault to contain.
        }
        (_, _, other) => out
            .problems
            .push(format!("{params}: the fault did not show: {other:?}")),
    }
}

/// After the faulting command: the fault's record, the unload, the leak check.
fn after_trigger(
    g: &mut GuestSession,
    config: KernelConfig,
    inj: &Injection,
    baseline: &mut MemoryStats,
    out: &mut Outcome,
) -> Result<(), SessionError> {
    let params = inj.params();
    let records = match g.command(Command::ListModules)? {
        (Reply::Modules(r), _) => r,
        (other, _) => {
            out.problems.push(format!("lsmod answered {other:?}"));
            Vec::new()
        }
    };
    let faulty: Option<&ModuleRecord> = records.iter().find(|r| r.name == "faulty");
    if inj.fault.is_exception() && out.fired {
        match faulty.and_then(|r| r.fault) {
            Some(f) => {
                out.vector = Some(f.vector);
                let phase = match inj.phase {
                    Phase::Init => FaultPhase::Init,
                    Phase::Exit => FaultPhase::Exit,
                    Phase::Call => FaultPhase::Call,
                };
                if f.during != phase {
                    out.problems
                        .push(format!("{params}: recorded during {:?}", f.during));
                }
                match f.offset {
                    Some(_) => out.reported = true,
                    None => out.problems.push(format!(
                        "{params}: fault at rip {:#x} reported without a module offset",
                        f.rip
                    )),
                }
            }
            None => out.problems.push(format!(
                "{params}: no fault in faulty's record ({})",
                match faulty {
                    Some(r) => format!("{r:?}"),
                    None => "no record".into(),
                }
            )),
        }
    }
    if faulty.is_some_and(|r| r.fault.is_some()) && config == KernelConfig::Monolithic {
        out.problems
            .push("the monolithic kernel kept a faulted record".into());
    }
    if faulty.is_some() {
        match g.command(delete_module("faulty"))? {
            (Reply::Done, _) => {}
            (other, _) => out
                .problems
                .push(format!("rmmod faulty after {params}: {other:?}")),
        }
    }
    if inj.fault == Fault::Garbage {
        // Its service must be gone with it, whatever its exit claimed.
        match g.command(service_call("faulty", 0, b""))? {
            (Reply::ModuleError(e), _) if e.errno == ENOENT => {
                out.lie_refused = out.lie_refused || inj.phase == Phase::Exit;
            }
            (other, _) => out.problems.push(format!(
                "{params}: the faulty service outlived its module: {other:?}"
            )),
        }
    }
    if let Some((m, _)) = inj.neighbour.module() {
        match g.command(delete_module(m))? {
            (Reply::Done, _) => {}
            (other, _) => out.problems.push(format!("rmmod {m}: {other:?}")),
        }
    }
    let after = memory(g)?;
    out.leaked_frames = baseline.frames_free.saturating_sub(after.frames_free);
    out.heap_growth = after.heap_used.saturating_sub(baseline.heap_used);
    if out.leaked_frames > 0 {
        out.problems.push(format!(
            "{} frame(s) not returned after {params} (free {} before, {} after)",
            out.leaked_frames, baseline.frames_free, after.frames_free
        ));
    }
    // A leak is reported once, not again by every later injection.
    *baseline = MemoryStats {
        frames_free: after.frames_free.min(baseline.frames_free),
        heap_used: after.heap_used.max(baseline.heap_used),
        ..after
    };
    Ok(())
}

/// Counts over a campaign.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Injections run.
    pub injected: u64,
    /// Fully contained.
    pub contained: u64,
    /// Survived with a failed check.
    pub degraded: u64,
    /// Kernel crashes.
    pub kernel_crashes: u64,
    /// Hangs.
    pub hangs: u64,
    /// Faults that fired (all but a `scribble` that found readable memory).
    pub fired: u64,
    /// Exceptions and watchdog stops among them.
    pub exceptions: u64,
    /// Exceptions reported with module name and offset.
    pub reported_with_offset: u64,
    /// `garbage` injections.
    pub lies: u64,
    /// `garbage` lies refused with a typed error.
    pub lies_refused: u64,
    /// Injections after which the other services answered correctly.
    pub services_answered: u64,
    /// Frames leaked, summed.
    pub leaked_frames: u64,
    /// Injections that leaked.
    pub injections_leaking: u64,
    /// Heap growth, summed (bytes).
    pub heap_growth: u64,
}

impl Totals {
    /// Counts `outcomes`.
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Totals {
        let mut t = Totals::default();
        for o in outcomes {
            t.injected += 1;
            match o.verdict {
                Verdict::Contained => t.contained += 1,
                Verdict::Degraded => t.degraded += 1,
                Verdict::KernelCrash => t.kernel_crashes += 1,
                Verdict::Hang => t.hangs += 1,
            }
            t.fired += u64::from(o.fired);
            if o.injection.fault.is_exception() && o.fired {
                t.exceptions += 1;
                t.reported_with_offset += u64::from(o.reported);
            }
            if o.injection.fault == Fault::Garbage {
                t.lies += 1;
                t.lies_refused += u64::from(o.lie_refused);
            }
            t.services_answered += u64::from(o.services_answered);
            t.leaked_frames += o.leaked_frames;
            t.injections_leaking += u64::from(o.leaked_frames > 0);
            t.heap_growth += o.heap_growth;
        }
        t
    }
}

/// Nearest-rank percentiles of recovery times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Distribution {
    /// Samples.
    pub samples: usize,
    /// Minimum (µs).
    pub min_us: u64,
    /// Median (µs).
    pub median_us: u64,
    /// 99th percentile (µs).
    pub p99_us: u64,
    /// Maximum (µs).
    pub max_us: u64,
}

impl Distribution {
    /// Of `samples` (µs); `None` if there are none.
    pub fn of(mut samples: Vec<u64>) -> Option<Distribution> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let r = (p * samples.len() as f64).ceil() as usize;
            samples[r.clamp(1, samples.len()) - 1]
        };
        Some(Distribution {
            samples: samples.len(),
            min_us: samples[0],
            median_us: rank(0.5),
            p99_us: rank(0.99),
            max_us: samples[samples.len() - 1],
        })
    }
}

impl Campaign {
    /// The counts.
    pub fn totals(&self) -> Totals {
        Totals::of(&self.outcomes)
    }

    /// Recovery times of the injections that recovered, all faults together.
    pub fn recovery(&self) -> Option<Distribution> {
        Distribution::of(self.outcomes.iter().filter_map(|o| o.recovery_us).collect())
    }

    /// Recovery times by fault.
    pub fn recovery_by_fault(&self) -> BTreeMap<Fault, Distribution> {
        Fault::ALL
            .iter()
            .filter_map(|f| {
                let v = self
                    .outcomes
                    .iter()
                    .filter(|o| o.injection.fault == *f)
                    .filter_map(|o| o.recovery_us)
                    .collect();
                Some((*f, Distribution::of(v)?))
            })
            .collect()
    }

    /// Whether it meets the goal: no crash, no hang, no leak, every exception
    /// reported with module and offset, every lie refused, services answering after each.
    pub fn goal_met(&self) -> bool {
        let t = self.totals();
        t.injected == self.run.count
            && t.kernel_crashes == 0
            && t.hangs == 0
            && t.leaked_frames == 0
            && t.degraded == 0
            && t.reported_with_offset == t.exceptions
            && t.lies_refused == t.lies
            && t.services_answered == t.injected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_locations_are_parsed() {
        let console = "KERNEL FAULT: #PF page fault (vector 14)\n  rip is in module faulty at offset 0x1a2 (.text)\n";
        assert_eq!(console_location(console), Some(("faulty".into(), 0x1a2)));
        assert_eq!(console_location("no such line"), None);
        assert_eq!(console_location("rip is in module x at offset 0x"), None);
    }

    fn contained(index: u64, fault: Fault, phase: Phase) -> Outcome {
        Outcome {
            injection: Injection {
                index,
                fault,
                phase,
                neighbour: plan::Neighbour::None,
                seed: 0,
            },
            verdict: Verdict::Contained,
            fired: true,
            reported: fault.is_exception(),
            lie_refused: !fault.is_exception(),
            services_answered: true,
            leaked_frames: 0,
            heap_growth: 0,
            recovery_us: Some(1000),
            vector: fault.is_exception().then_some(14),
            problems: Vec::new(),
        }
    }

    fn campaign(outcomes: Vec<Outcome>) -> Campaign {
        Campaign {
            run: CampaignRun {
                config: "microkernel".into(),
                count: outcomes.len() as u64,
                seed: 0,
                batch: 10,
                watchdog_ms: 100,
                boots: 1,
                wall_secs: 1.0,
                kvm_flavour: "pvm".into(),
            },
            outcomes,
        }
    }

    #[test]
    fn the_goal_fails_on_any_crash_hang_leak_or_unreported_fault() {
        let good = || {
            vec![
                contained(0, Fault::Null, Phase::Init),
                contained(1, Fault::Garbage, Phase::Call),
            ]
        };
        let c = campaign(good());
        assert!(c.goal_met());
        let t = c.totals();
        assert_eq!(
            (t.exceptions, t.reported_with_offset, t.lies, t.lies_refused),
            (1, 1, 1, 1)
        );
        let spoil: [fn(&mut Outcome); 6] = [
            |o| o.verdict = Verdict::KernelCrash,
            |o| o.verdict = Verdict::Hang,
            |o| o.leaked_frames = 1,
            |o| o.reported = false,
            |o| o.services_answered = false,
            |o| o.verdict = Verdict::Degraded,
        ];
        for (i, f) in spoil.iter().enumerate() {
            let mut v = good();
            f(&mut v[0]);
            assert!(!campaign(v).goal_met(), "spoiler {i}");
        }
        let mut v = good();
        v[1].lie_refused = false;
        assert!(!campaign(v).goal_met());
        // Fewer injections than asked for (a campaign cut short) is not the goal either.
        let mut short = campaign(good());
        short.run.count = 3;
        assert!(!short.goal_met());
    }

    #[test]
    fn distributions_use_nearest_rank() {
        assert_eq!(Distribution::of(Vec::new()), None);
        let d = Distribution::of((1..=100).rev().collect()).unwrap();
        assert_eq!(
            (d.samples, d.min_us, d.median_us, d.p99_us, d.max_us),
            (100, 1, 50, 99, 100)
        );
        let one = Distribution::of(vec![7]).unwrap();
        assert_eq!(
            (one.min_us, one.median_us, one.p99_us, one.max_us),
            (7, 7, 7, 7)
        );
    }
}
