//! The `kmodlab faults` command.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kmodlab_abi::KernelConfig;

use super::report::{Document, Environment};
use super::{FaultsError, Options, Progress};

/// The configuration a campaign injects into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CampaignConfig {
    /// Modules in the kernel: every exception ends it.
    Monolithic,
    /// Modules in servers of their own.
    Microkernel,
}

/// Injections when `--count` is not given, microkernel.
pub const DEFAULT_COUNT_MICROKERNEL: u64 = 10_000;
/// Injections when `--count` is not given, monolithic: each exception costs a boot there.
pub const DEFAULT_COUNT_MONOLITHIC: u64 = 50;
/// Injections per boot when `--batch` is not given, microkernel.
pub const DEFAULT_BATCH_MICROKERNEL: u64 = 250;
/// Injections per boot when `--batch` is not given, monolithic (a crash ends a boot anyway).
pub const DEFAULT_BATCH_MONOLITHIC: u64 = 10;

/// `kmodlab faults`.
#[derive(Debug, clap::Args)]
pub struct FaultsArgs {
    /// Kernel configuration.
    #[arg(long, value_enum, default_value = "microkernel")]
    pub config: CampaignConfig,
    /// Injections (default: 10000 in the microkernel, 50 in the monolithic configuration,
    /// where each fault ends the kernel and costs a boot).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub count: Option<u64>,
    /// Seed of the plan (which fault, when, next to which modules); the same seed gives the
    /// same plan on any host.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Injections per boot (default: 250 in the microkernel; 10 in the monolithic
    /// configuration, where a hang costs the batch's whole deadline, which grows with it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: Option<u64>,
    /// The microkernel's watchdog budget in ms (kernel `watchdog_ms=`): how long a `loop`
    /// fault computes before the kernel stops its server.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub watchdog_ms: u64,
    /// Seconds the guest may take to answer one command before the injection counts as a
    /// hang.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub hang_secs: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the Markdown report to FILE and the JSON next to it (FILE with the
    /// extension `.json`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl FaultsArgs {
    /// The campaign these arguments ask for.
    pub fn options(&self) -> Options {
        let config = match self.config {
            CampaignConfig::Monolithic => KernelConfig::Monolithic,
            CampaignConfig::Microkernel => KernelConfig::Microkernel,
        };
        let count = self.count.unwrap_or(match config {
            KernelConfig::Monolithic => DEFAULT_COUNT_MONOLITHIC,
            KernelConfig::Microkernel => DEFAULT_COUNT_MICROKERNEL,
        });
        Options {
            config,
            count,
            seed: self.seed,
            batch: self.batch.unwrap_or(match config {
                KernelConfig::Monolithic => DEFAULT_BATCH_MONOLITHIC,
                KernelConfig::Microkernel => DEFAULT_BATCH_MICROKERNEL,
            }),
            watchdog_ms: self.watchdog_ms,
            command_timeout: Duration::from_secs(self.hang_secs),
            ram_bytes: 256 << 20,
        }
    }
}

struct Stderr;

impl Progress for Stderr {
    fn batch_done(&mut self, done: u64, total: u64, took: Duration, crashes: u64, hangs: u64) {
        let _ = writeln!(
            std::io::stderr(),
            "kmodlab faults: {done}/{total} injected ({crashes} kernel crashes, {hangs} hangs \
             so far; last boot {:.1} s)",
            took.as_secs_f64()
        );
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs `kmodlab faults`: 0 if the campaign ran and (microkernel) met the goal, 1 if the
/// microkernel missed it or the campaign could not run, 3 if KVM is unusable.
pub fn faults(args: &FaultsArgs) -> ExitCode {
    let opts = args.options();
    let load_start = loadavg();
    // The tree as it is when the campaign starts (it may change during a long one).
    let git = crate::compare::environment::git(crate::compare::environment::source_tree());
    let (_, started_utc) = crate::compare::environment::now_utc();
    if opts.config == KernelConfig::Monolithic && args.count.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "kmodlab faults: monolithic: {DEFAULT_COUNT_MONOLITHIC} injections by default \
             (each exception ends the kernel and costs a boot; --count sets more)"
        );
    }
    let result = if args.quiet {
        super::run(&opts, &mut super::Silent)
    } else {
        super::run(&opts, &mut Stderr)
    };
    let campaign = match result {
        Ok(c) => c,
        Err(FaultsError::Kvm(e)) => {
            let _ = writeln!(std::io::stderr(), "kmodlab: KVM is not usable: {e}");
            return ExitCode::from(3);
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kmodlab faults: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host = crate::host::HostInfo::detect();
    let env = Environment {
        // The binary's path says nothing about what ran (a copy, cargo run, …): the commit
        // does.
        command: std::iter::once("kmodlab".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        cpu_model: host.cpu_model,
        commit: git.commit,
        dirty: git.dirty,
        kvm_module: host.kvm_module,
        load_start,
        load_end: loadavg(),
        started_utc,
    };
    let doc = Document::new(&campaign, env);
    let json = match serde_json::to_string_pretty(&doc) {
        Ok(j) => j + "\n",
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "kmodlab faults: cannot encode the result: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.out {
        let json_path = path.with_extension("json");
        for (p, text) in [(path, doc.markdown()), (&json_path, json.clone())] {
            if let Err(e) = std::fs::write(p, text) {
                let _ = writeln!(
                    std::io::stderr(),
                    "kmodlab faults: cannot write {}: {e}",
                    p.display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let text = if args.json { json } else { doc.human() };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        let _ = writeln!(
            std::io::stderr(),
            "kmodlab: cannot write to standard output: {e}"
        );
        return ExitCode::FAILURE;
    }
    if opts.config == KernelConfig::Microkernel && !doc.goal_met {
        let _ = writeln!(
            std::io::stderr(),
            "kmodlab faults: the microkernel did not contain every fault (see the list)"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
