//! Running the comparison matrix: per configuration, timed boots, one measurement session
//! (loads, unloads, calls, footprints), and a fault-isolation boot.

use std::time::Duration;

use kmodlab_abi::KernelConfig;
use kmodlab_abi::channel::{
    BenchReply, BenchRequest, Command, KernelCounters, LoadBench, LoadCycles, ModuleError, Reply,
    ServiceBench,
};
use kmodlab_abi::initramfs::Archive;
use kmodlab_abi::kpti::Kpti;
use kmodlab_abi::modules_dep::{ModulesDep, module_name};

use super::report::{
    BootResult, CallMeasurement, CallResult, ConfigResult, FaultIsolation, KernelFacts,
    LoadMeasurement, LoadResult, Outcome, Parameters, PerOp,
};
use super::session::{ExitCounts, GuestSession, SessionError, boot_once, work_exits};
use super::stats::Summary;
use super::usermods::UserModule;
use crate::devices::serial::Echo;
use crate::vm::{GuestImages, VmConfig};

/// ENOSYS: what a configuration answers for an operation it does not have.
const ENOSYS: i32 = 38;

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The parameters recorded in the report.
    pub parameters: Parameters,
    /// Built-in rows to run (names of [`BUILT_IN_ROWS`]).
    pub rows: Vec<&'static Row>,
    /// User modules, one row each.
    pub user: Vec<UserModule>,
    /// The module archive to boot with (the built-in one, or one with the user modules).
    pub archive: std::borrow::Cow<'static, [u8]>,
    /// Guest RAM.
    pub ram_bytes: u64,
    /// The kernel/user page-table split to ask the guest for.
    pub kpti: Kpti,
}

/// A built-in module row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Row name.
    pub name: &'static str,
    /// The modules one operation loads, in order.
    pub modules: &'static [&'static str],
    /// Which iteration count applies.
    pub size: RowSize,
}

/// Which iteration count a row uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSize {
    /// Small and medium modules.
    Normal,
    /// `big`.
    Big,
    /// A dependency chain.
    Chain,
}

/// The built-in rows: small (`hello`), medium (`crc32` in Rust, `cstats` in C), the
/// 112 k-relocation `big`, and the kvclient chain as modprobe loads it.
pub const BUILT_IN_ROWS: &[Row] = &[
    Row {
        name: "hello",
        modules: &["hello"],
        size: RowSize::Normal,
    },
    Row {
        name: "crc32",
        modules: &["crc32"],
        size: RowSize::Normal,
    },
    Row {
        name: "cstats",
        modules: &["cstats"],
        size: RowSize::Normal,
    },
    Row {
        name: "big",
        modules: &["big"],
        size: RowSize::Big,
    },
    Row {
        name: "kvclient-chain",
        modules: &["crc32", "ramblk", "kvstore", "kvclient"],
        size: RowSize::Chain,
    },
];

/// The call series: (name, callbench kind, largest size it takes).
pub const CALL_SERIES: &[(&str, u32, u32)] = &[
    ("crc32_compute", 0, 4096),
    ("crc32-service", 1, 4096),
    ("kvstore-chain", 2, 440),
];

/// Most samples callbench returns per request (keeps each reply small enough for a
/// page-sized IPC buffer in the microkernel).
const SAMPLES_PER_REQUEST: u32 = 256;

impl Parameters {
    /// The default run (< 3 min on 2 cores) or `--quick` (< 30 s).
    pub fn new(quick: bool) -> Parameters {
        if quick {
            Parameters {
                quick,
                boots: 5,
                warmup: 2,
                load_iterations: 41,
                big_iterations: 7,
                chain_iterations: 21,
                call_samples: 256,
                call_batch: 16,
                call_sizes: vec![0, 64, 4096],
                modules: Vec::new(),
                user_modules: Vec::new(),
                kpti: None,
            }
        } else {
            Parameters {
                quick,
                boots: 21,
                warmup: 3,
                load_iterations: 301,
                big_iterations: 41,
                chain_iterations: 101,
                call_samples: 1024,
                call_batch: 64,
                call_sizes: vec![0, 64, 4096],
                modules: Vec::new(),
                user_modules: Vec::new(),
                kpti: None,
            }
        }
    }

    fn iterations(&self, size: RowSize) -> u32 {
        match size {
            RowSize::Normal => self.load_iterations,
            RowSize::Big => self.big_iterations,
            RowSize::Chain => self.chain_iterations,
        }
    }
}

/// Reports progress: one call per step.
pub trait Progress {
    /// Step `what` of configuration `config` begins.
    fn step(&mut self, config: KernelConfig, what: &str);
}

/// How many [`Progress::step`] calls `plan` makes per configuration.
pub fn steps_per_config(plan: &Plan) -> u64 {
    // boot, session, rows, calls, fault isolation
    (3 + plan.rows.len() + plan.user.len() + 1) as u64
}

fn vm_config(config: KernelConfig, plan: &Plan, deadline: Duration) -> VmConfig {
    let mut cmdline = String::from("quiet");
    if let Some(word) = plan.kpti.cmdline_word() {
        cmdline.push(' ');
        cmdline.push_str(word);
    }
    VmConfig {
        ram_bytes: plan.ram_bytes,
        deadline,
        cmdline,
        ..VmConfig::new(config)
    }
}

/// A guest module error as an outcome: ENOSYS is "unsupported", anything else a failure.
fn module_outcome<T>(e: &ModuleError) -> Outcome<T> {
    if e.errno == ENOSYS {
        Outcome::Unsupported {
            errno: e.errno,
            message: e.message.clone(),
        }
    } else {
        Outcome::Failed {
            message: format!("{} (errno {})", e.message, e.errno),
        }
    }
}

fn session_outcome<T>(e: &SessionError) -> Outcome<T> {
    Outcome::Failed {
        message: e.to_string(),
    }
}

/// The dependencies of `name` in load order (not itself), from the archive's modules.dep.
pub fn dependencies(archive: &[u8], name: &str) -> Vec<String> {
    let Ok(a) = Archive::new(archive) else {
        return Vec::new();
    };
    let Some(text) = a
        .find("lib/modules/modules.dep")
        .and_then(|f| std::str::from_utf8(f.data).ok())
    else {
        return Vec::new();
    };
    let dep = ModulesDep::parse(text);
    let mut order: Vec<String> = dep
        .load_order(name)
        .unwrap_or_default()
        .into_iter()
        .map(module_name)
        .collect();
    order.pop();
    order
}

/// Runs the whole matrix for `config`.
pub fn run_config(config: KernelConfig, plan: &Plan, progress: &mut dyn Progress) -> ConfigResult {
    let kernel = crate::artifacts::kernel(config);
    let images = GuestImages {
        kernel,
        initramfs: &plan.archive,
    };
    progress.step(config, "boot");
    let boot = measure_boots(config, plan, images);

    progress.step(config, "session boot");
    let mut session = Session::new(config, plan);
    let kernel_facts = session.facts();
    // A configuration whose module subsystem cannot even list modules has none that works
    // in this build: its module cells are "unsupported", with its own error, not failures.
    if let Ok((Reply::ModuleError(e), _)) = session.command(Command::ListModules) {
        let why: Outcome<()> = Outcome::Unsupported {
            errno: e.errno,
            message: format!(
                "{} (this configuration cannot list modules: no working module subsystem in this build)",
                e.message
            ),
        };
        for _ in 0..plan.rows.len() + plan.user.len() + 1 {
            progress.step(config, "skipped: no module subsystem");
        }
        session.close();
        progress.step(config, "fault isolation");
        return ConfigResult {
            config: config.name().into(),
            boot,
            kernel: kernel_facts,
            loads: plan
                .rows
                .iter()
                .map(|r| LoadResult {
                    name: r.name.into(),
                    modules: r.modules.iter().map(|s| s.to_string()).collect(),
                    source: "built-in".into(),
                    outcome: retag(why.clone(), ""),
                })
                .chain(plan.user.iter().map(|m| LoadResult {
                    name: m.name.clone(),
                    modules: vec![m.name.clone()],
                    source: "user".into(),
                    outcome: retag(why.clone(), ""),
                }))
                .collect(),
            calls: CALL_SERIES
                .iter()
                .flat_map(|&(name, _, max)| {
                    plan.parameters
                        .call_sizes
                        .iter()
                        .filter(move |&&b| b <= max)
                        .map(move |&bytes| (name, bytes))
                })
                .map(|(name, bytes)| CallResult {
                    name: name.into(),
                    bytes,
                    outcome: retag(why.clone(), ""),
                })
                .collect(),
            fault_isolation: retag(why, ""),
            session_vm_exits: session.total_exits.clone(),
        };
    }

    let mut loads = Vec::new();
    for row in &plan.rows {
        progress.step(config, &format!("load/unload {}", row.name));
        let modules: Vec<String> = row.modules.iter().map(|s| s.to_string()).collect();
        let deps: Vec<String> = dependencies(&plan.archive, row.modules[0])
            .into_iter()
            .filter(|d| !modules.contains(d))
            .collect();
        let outcome = session.load_row(
            &deps,
            &modules,
            plan.parameters.iterations(row.size),
            plan.parameters.warmup,
            true,
        );
        loads.push(LoadResult {
            name: row.name.into(),
            modules,
            source: "built-in".into(),
            outcome,
        });
    }
    // User modules that cannot be unloaded stay loaded: run them last.
    let mut user: Vec<&UserModule> = plan.user.iter().collect();
    user.sort_by_key(|m| !m.has_exit);
    for m in user {
        progress.step(config, &format!("load/unload {} (user module)", m.name));
        let (iterations, warmup) = if m.has_exit {
            (plan.parameters.load_iterations, plan.parameters.warmup)
        } else {
            (1, 0)
        };
        let outcome = session.load_row(
            &m.depends,
            std::slice::from_ref(&m.name),
            iterations,
            warmup,
            m.has_exit,
        );
        loads.push(LoadResult {
            name: m.name.clone(),
            modules: vec![m.name.clone()],
            source: "user".into(),
            outcome,
        });
    }

    progress.step(config, "calls between modules");
    let calls = session.calls(&plan.parameters);
    let session_vm_exits = session.total_exits.clone();
    session.close();

    progress.step(config, "fault isolation");
    let fault_isolation = fault_isolation(config, plan);

    ConfigResult {
        config: config.name().into(),
        boot,
        kernel: kernel_facts,
        loads,
        calls,
        fault_isolation,
        session_vm_exits,
    }
}

fn measure_boots(
    config: KernelConfig,
    plan: &Plan,
    images: GuestImages<'_>,
) -> Outcome<BootResult> {
    let cfg = vm_config(config, plan, Duration::from_secs(30));
    let mut wall = Vec::new();
    let mut guest = Vec::new();
    for _ in 0..plan.parameters.boots.max(1) {
        match boot_once(&cfg, images) {
            Ok((timings, ready)) => {
                // From KVM_CREATE_VM (process start is the caller's business) to ready.
                let ready_ms = timings.ready_ms.unwrap_or(f64::NAN);
                wall.push(ready_ms - timings.vm_created_ms.min(ready_ms));
                guest.push(ready.tsc_ready.saturating_sub(ready.tsc_entry) as f64);
            }
            Err(e) => return session_outcome(&e),
        }
    }
    Outcome::Measured(BootResult {
        wall_ms: Summary::new("ms", wall),
        guest_cycles: Summary::new("cycles", guest),
    })
}

/// The measurement session of one configuration; reboots after a guest that died.
struct Session<'p> {
    config: KernelConfig,
    plan: &'p Plan,
    guest: Option<GuestSession>,
    /// Why the last boot failed, if it did.
    boot_error: Option<String>,
    total_exits: ExitCounts,
}

impl<'p> Session<'p> {
    fn new(config: KernelConfig, plan: &'p Plan) -> Session<'p> {
        let mut s = Session {
            config,
            plan,
            guest: None,
            boot_error: None,
            total_exits: ExitCounts::new(),
        };
        s.ensure();
        s
    }

    fn ensure(&mut self) -> Option<&mut GuestSession> {
        if self.guest.is_none() {
            let cfg = vm_config(self.config, self.plan, Duration::from_secs(900));
            match GuestSession::boot_owned(
                &cfg,
                crate::artifacts::kernel(self.config),
                self.plan.archive.clone(),
                Echo::Quiet,
                Duration::from_secs(300),
            ) {
                Ok(g) => {
                    self.guest = Some(g);
                    self.boot_error = None;
                }
                Err(e) => self.boot_error = Some(e.to_string()),
            }
        }
        self.guest.as_mut()
    }

    fn facts(&mut self) -> Option<KernelFacts> {
        let g = self.ensure()?;
        Some(KernelFacts {
            image: g.ready.image,
            frames_total: g.ready.frames_total,
            heap_bytes: g.ready.heap_bytes,
        })
    }

    /// Runs one command; a guest that ended is dropped (the next command reboots).
    fn command(&mut self, cmd: Command) -> Result<(Reply, ExitCounts), SessionError> {
        let Some(g) = self.ensure() else {
            return Err(SessionError::Ended {
                end: crate::vm::RunEnd::KvmFailure(
                    self.boot_error
                        .clone()
                        .unwrap_or_else(|| "boot failed".into()),
                ),
                console: String::new(),
            });
        };
        match g.command(cmd) {
            Ok((reply, exits)) => {
                for (k, v) in &exits {
                    *self.total_exits.entry(k.clone()).or_insert(0) += v;
                }
                Ok((reply, exits))
            }
            Err(e) => {
                self.guest = None;
                Err(e)
            }
        }
    }

    fn load(&mut self, name: &str) -> Result<(), Outcome<()>> {
        match self.command(Command::InitModule {
            name: name.into(),
            params: String::new(),
        }) {
            Ok((Reply::Module(_), _)) => Ok(()),
            Ok((Reply::ModuleError(e), _)) => Err(module_outcome(&e)),
            Ok((other, _)) => Err(Outcome::Failed {
                message: format!("loading {name}: unexpected reply {other:?}"),
            }),
            Err(e) => Err(session_outcome(&e)),
        }
    }

    fn unload(&mut self, names: &[String]) {
        for n in names.iter().rev() {
            let _ = self.command(Command::DeleteModule { name: n.clone() });
        }
    }

    fn load_row(
        &mut self,
        deps: &[String],
        modules: &[String],
        iterations: u32,
        warmup: u32,
        unload: bool,
    ) -> Outcome<LoadMeasurement> {
        for (i, d) in deps.iter().enumerate() {
            if let Err(o) = self.load(d) {
                self.unload(&deps[..i]);
                return retag(o, &format!("loading dependency {d}"));
            }
        }
        let request = BenchRequest::LoadUnload(LoadBench {
            modules: modules.to_vec(),
            params: String::new(),
            warmup,
            iterations,
            unload,
        });
        let outcome = match self.command(Command::Bench(request)) {
            Ok((Reply::Bench(BenchReply::Load(r)), exits)) => {
                let rounds = f64::from(if unload { warmup + iterations } else { 1 });
                let timed = r.samples.len().max(1) as f64;
                let steps = step_summaries(r.samples.iter().map(|s| &s.steps));
                Outcome::Measured(LoadMeasurement {
                    load: Summary::new("cycles", r.samples.iter().map(|s| s.load as f64).collect()),
                    unload: unload.then(|| {
                        Summary::new(
                            "cycles",
                            r.samples.iter().map(|s| s.unload as f64).collect(),
                        )
                    }),
                    steps,
                    relocations: r.records.iter().map(|m| m.relocations).sum(),
                    pages: r.records.iter().map(|m| m.footprint.section_pages).sum(),
                    footprint: r
                        .records
                        .iter()
                        .map(|m| (m.name.clone(), m.footprint))
                        .collect(),
                    per_round: PerOp {
                        syscalls: r.counters.syscalls as f64 / timed,
                        ipc_messages: r.counters.ipc_messages as f64 / timed,
                        ipc_bytes: r.counters.ipc_bytes as f64 / timed,
                        // Warm-up rounds are in the command too; no exit happens outside
                        // the rounds.
                        vm_exits: work_exits(&exits) as f64 / rounds,
                    },
                })
            }
            Ok((Reply::ModuleError(e), _)) => module_outcome(&e),
            Ok((other, _)) => Outcome::Failed {
                message: format!("unexpected reply {other:?}"),
            },
            Err(e) => session_outcome(&e),
        };
        if unload {
            self.unload(deps);
        }
        outcome
    }

    fn calls(&mut self, p: &Parameters) -> Vec<CallResult> {
        let mut results = Vec::new();
        // callbench and what it needs, and the chain it calls (kvstore and its providers).
        let order: Vec<String> = {
            let mut o = dependencies(&self.plan.archive, "kvstore");
            o.push("kvstore".into());
            for m in dependencies(&self.plan.archive, "callbench") {
                if !o.contains(&m) {
                    o.push(m);
                }
            }
            o.push("callbench".into());
            o
        };
        let mut loaded = Vec::new();
        let mut setup: Option<Outcome<CallMeasurement>> = None;
        for m in &order {
            match self.load(m) {
                Ok(()) => loaded.push(m.clone()),
                Err(o) => {
                    setup = Some(retag(o, &format!("loading {m}")));
                    break;
                }
            }
        }
        for &(name, kind, max) in CALL_SERIES {
            for &bytes in p.call_sizes.iter().filter(|&&b| b <= max) {
                let outcome = match &setup {
                    Some(o) => o.clone(),
                    None => self.call_series(kind, bytes, p),
                };
                results.push(CallResult {
                    name: name.into(),
                    bytes,
                    outcome,
                });
            }
        }
        self.unload(&loaded);
        results
    }

    /// One callbench request; returns the samples, counters and VM exits.
    fn callbench(
        &mut self,
        kind: u32,
        bytes: u32,
        samples: u32,
        batch: u32,
    ) -> Result<(Vec<u64>, KernelCounters, u64), Box<Outcome<CallMeasurement>>> {
        let mut request = Vec::with_capacity(16);
        for v in [kind, bytes, samples, batch] {
            request.extend_from_slice(&v.to_le_bytes());
        }
        let cmd = Command::Bench(BenchRequest::ServiceCall(ServiceBench {
            service: "callbench".into(),
            op: 0,
            request,
            reply_capacity: samples * 8,
        }));
        match self.command(cmd) {
            Ok((Reply::Bench(BenchReply::Service(r)), exits)) => {
                if r.reply.len() != samples as usize * 8 {
                    return Err(Box::new(Outcome::Failed {
                        message: format!(
                            "callbench replied {} bytes for {samples} samples",
                            r.reply.len()
                        ),
                    }));
                }
                let values = r
                    .reply
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
                    .collect();
                Ok((values, r.counters, work_exits(&exits)))
            }
            Ok((Reply::ModuleError(e), _)) => Err(Box::new(module_outcome(&e))),
            Ok((other, _)) => Err(Box::new(Outcome::Failed {
                message: format!("unexpected reply {other:?}"),
            })),
            Err(e) => Err(Box::new(session_outcome(&e))),
        }
    }

    fn call_series(&mut self, kind: u32, bytes: u32, p: &Parameters) -> Outcome<CallMeasurement> {
        let batch = p.call_batch.max(1);
        // One sample of one call: the fixed cost of a request, subtracted from the counts.
        let (_, base_counters, base_exits) = match self.callbench(kind, bytes, 1, 1) {
            Ok(x) => x,
            Err(o) => return *o,
        };
        let mut per_call = Vec::new();
        let mut counters = KernelCounters::default();
        let mut exits = 0u64;
        let mut extra_calls = 0u64;
        let mut left = p.call_samples.max(1);
        while left > 0 {
            let n = left.min(SAMPLES_PER_REQUEST);
            left -= n;
            let (values, c, e) = match self.callbench(kind, bytes, n, batch) {
                Ok(x) => x,
                Err(o) => return *o,
            };
            per_call.extend(values.iter().map(|v| *v as f64 / f64::from(batch)));
            let extra = c.since(&base_counters);
            counters.syscalls += extra.syscalls;
            counters.ipc_messages += extra.ipc_messages;
            counters.ipc_bytes += extra.ipc_bytes;
            exits += e.saturating_sub(base_exits);
            extra_calls += u64::from(n) * u64::from(batch) - 1;
        }
        let per = |x: u64| x as f64 / extra_calls.max(1) as f64;
        Outcome::Measured(CallMeasurement {
            batch,
            per_call: Summary::new("cycles", per_call),
            per_call_counts: PerOp {
                syscalls: per(counters.syscalls),
                ipc_messages: per(counters.ipc_messages),
                ipc_bytes: per(counters.ipc_bytes),
                vm_exits: per(exits),
            },
        })
    }

    fn close(&mut self) {
        if let Some(g) = self.guest.take() {
            g.shutdown();
        }
    }
}

/// `o` with `context` prefixed to a failure's message.
fn retag<T, U>(o: Outcome<T>, context: &str) -> Outcome<U> {
    match o {
        Outcome::Measured(_) => Outcome::Failed {
            message: format!("{context}: no measurement"),
        },
        Outcome::Unsupported { errno, message } => Outcome::Unsupported { errno, message },
        Outcome::Failed { message } => Outcome::Failed {
            message: format!("{context}: {message}"),
        },
    }
}

/// The step names of [`LoadCycles`], in the order the kernel runs them.
pub const STEPS: [&str; 10] = [
    "copy", "verify", "validate", "params", "layout", "allocate", "resolve", "relocate", "protect",
    "init",
];

fn step_value(c: &LoadCycles, step: &str) -> u64 {
    match step {
        "copy" => c.copy,
        "verify" => c.verify,
        "validate" => c.validate,
        "params" => c.params,
        "layout" => c.layout,
        "allocate" => c.allocate,
        "resolve" => c.resolve,
        "relocate" => c.relocate,
        "protect" => c.protect,
        "init" => c.init,
        _ => c.total,
    }
}

fn step_summaries<'a>(
    samples: impl Iterator<Item = &'a LoadCycles> + Clone,
) -> Vec<(String, Summary)> {
    STEPS
        .iter()
        .map(|step| {
            let v = samples
                .clone()
                .map(|c| step_value(c, step) as f64)
                .collect();
            ((*step).to_owned(), Summary::new("cycles", v))
        })
        .collect()
}

/// Recovery after a contained fault, as an administrator does it: unload the faulted module,
/// load it again (not armed this time) and call its service. Returns the host's wall-clock
/// milliseconds from the start of the unload to the service's answer (the control channel's
/// round trips included), or `None` if any step failed.
fn recover(g: &mut GuestSession) -> Option<f64> {
    let start = std::time::Instant::now();
    let steps = [
        Command::DeleteModule {
            name: "faulty".into(),
        },
        Command::InitModule {
            name: "faulty".into(),
            params: "mode=none at=call".into(),
        },
        Command::Bench(BenchRequest::ServiceCall(ServiceBench {
            service: "faulty".into(),
            op: 0,
            request: Vec::new(),
            reply_capacity: 64,
        })),
    ];
    for step in steps {
        match g.command(step) {
            Ok((Reply::Done | Reply::Module(_) | Reply::Bench(_), _)) => {}
            _ => return None,
        }
    }
    Some(start.elapsed().as_secs_f64() * 1e3)
}

/// Loads `faulty` to fault when its service is called, calls it, and records what the
/// system did; where the kernel survives, how long recovery takes.
fn fault_isolation(config: KernelConfig, plan: &Plan) -> Outcome<FaultIsolation> {
    const PARAMS: &str = "mode=null at=call";
    let trigger = format!("faulty {PARAMS}, then a call of its service");
    let cfg = vm_config(config, plan, Duration::from_secs(60));
    let mut g = match GuestSession::boot_owned(
        &cfg,
        crate::artifacts::kernel(config),
        plan.archive.clone(),
        Echo::Quiet,
        Duration::from_secs(30),
    ) {
        Ok(g) => g,
        Err(e) => return session_outcome(&e),
    };
    match g.command(Command::InitModule {
        name: "faulty".into(),
        params: PARAMS.into(),
    }) {
        Ok((Reply::Module(_), _)) => {}
        Ok((Reply::ModuleError(e), _)) => return module_outcome(&e),
        Ok((other, _)) => {
            return Outcome::Failed {
                message: format!("loading faulty: unexpected reply {other:?}"),
            };
        }
        Err(e) => return session_outcome(&e),
    }
    let call = Command::Bench(BenchRequest::ServiceCall(ServiceBench {
        service: "faulty".into(),
        op: 0,
        request: Vec::new(),
        reply_capacity: 64,
    }));
    match g.command(call) {
        Err(SessionError::Ended { end, .. }) => Outcome::Measured(FaultIsolation {
            trigger,
            kernel_survived: false,
            outcome: end.describe(),
            recovery_ms: None,
        }),
        Err(e) => session_outcome(&e),
        Ok((reply, _)) => {
            let outcome = match &reply {
                Reply::ModuleError(e) => format!("the caller got errno {}: {}", e.errno, e.message),
                other => format!("the call returned {other:?}"),
            };
            // Contained only if the kernel still serves commands.
            let alive = matches!(g.command(Command::ListModules), Ok((Reply::Modules(_), _)));
            let recovery_ms = if alive { recover(&mut g) } else { None };
            g.shutdown();
            Outcome::Measured(FaultIsolation {
                trigger,
                kernel_survived: alive,
                outcome,
                recovery_ms,
            })
        }
    }
}
