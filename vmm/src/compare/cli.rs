//! The `compare`, `report` and `check` subcommands and the `--module`/`--modules` options,
//! kept here so that `main.rs` only dispatches.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kmodlab_abi::KernelConfig;

use super::report::Report;
use super::usermods::{self, Prepared, UserModuleError};
use super::{CompareError, Options};

/// Exit status of a usage error.
const EXIT_USAGE: u8 = 2;
/// Exit status when KVM is unusable.
const EXIT_NO_KVM: u8 = 3;

/// A configuration on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigArg {
    /// Modules load into the kernel.
    Monolithic,
    /// Modules run as user-space servers.
    Microkernel,
}

impl From<ConfigArg> for KernelConfig {
    fn from(c: ConfigArg) -> KernelConfig {
        match c {
            ConfigArg::Monolithic => KernelConfig::Monolithic,
            ConfigArg::Microkernel => KernelConfig::Microkernel,
        }
    }
}

/// `--kpti`: the kernel/user page-table split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KptiArg {
    /// Always split.
    On,
    /// Never split.
    Off,
    /// Split on kvm_pvm, where nothing else keeps user mode out of kernel memory.
    Auto,
}

impl From<KptiArg> for kmodlab_abi::kpti::Kpti {
    fn from(k: KptiArg) -> Self {
        match k {
            KptiArg::On => Self::On,
            KptiArg::Off => Self::Off,
            KptiArg::Auto => Self::Auto,
        }
    }
}

/// `--module` and `--modules`: the user's own modules.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UserModuleArgs {
    /// A module file of your own to add to the guest's module archive, then load by name
    /// (repeatable). It is checked on the host first (ELF, .modinfo name, symbols).
    #[arg(long = "module", value_name = "PATH.ko")]
    pub module: Vec<PathBuf>,
    /// Every `.ko` file in this directory, as with `--module` (repeatable).
    #[arg(long = "modules", value_name = "DIR")]
    pub modules: Vec<PathBuf>,
}

impl UserModuleArgs {
    /// Checks the modules and builds the archive holding them, before anything boots.
    pub fn prepare(&self) -> Result<Prepared, UserModuleError> {
        let paths = usermods::collect(&self.module, &self.modules)?;
        usermods::prepare(crate::artifacts::INITRAMFS, &paths)
    }
}

/// Options of `kmodlab compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Measure only this configuration (repeatable; default: both).
    #[arg(long, value_enum)]
    pub config: Vec<ConfigArg>,
    /// The short matrix (< 30 s), as CI runs it.
    #[arg(long)]
    pub quick: bool,
    /// A built-in module row to measure (hello, crc32, cstats, big, kvclient-chain;
    /// repeatable; default: all), or a module file of yours (PATH.ko), measured as a row of
    /// its own.
    #[arg(long = "module", value_name = "ROW|PATH.ko")]
    pub module: Vec<String>,
    /// Every `.ko` file of this directory as a row of its own (repeatable).
    #[arg(long = "modules", value_name = "DIR")]
    pub modules: Vec<PathBuf>,
    /// Write the results here instead of `results/<date>-<flavour>-<cpu>/`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print report.json on stdout instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(64..=3072))]
    pub ram_mib: u64,
    /// Give guest user mode page tables of its own (kernel `kpti=`; auto: on kvm_pvm only).
    /// Recorded in report.json; compare runs of one setting with each other.
    #[arg(long, value_enum, default_value = "auto")]
    pub kpti: KptiArg,
}

/// Options of `kmodlab report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Result directories or report.json files; several: one cross-host report.
    #[arg(required = true, value_name = "DIR|report.json")]
    pub inputs: Vec<PathBuf>,
    /// Where to write REPORT.md and the figures (default: the single input's directory;
    /// required for several inputs).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Options of `kmodlab check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The baseline report (e.g. results/baseline-pvm.json).
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// Rewrite the baseline from this run instead of checking against it.
    #[arg(long)]
    pub update: bool,
    /// Which timings to judge: absolute timings (permutation test p < 0.01 and a median
    /// move beyond --max-slowdown), the same-run micro ÷ mono ratios (robust on a busy
    /// shared machine; what CI uses), or none (counts only).
    #[arg(long, value_enum, default_value = "absolute")]
    pub timings: super::check::TimingRule,
    /// Relative change that fails: of a median (when also significant) or of a ratio.
    #[arg(long, default_value_t = 0.20)]
    pub max_slowdown: f64,
    /// Relative growth of the kernel's .text that fails.
    #[arg(long, default_value_t = 0.05)]
    pub text_tolerance: f64,
    /// Also write this run's results directory here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Prints a user-module error and returns the exit status of a bad module file.
fn user_error(e: &UserModuleError) -> ExitCode {
    eprintln!("kmodlab: {e}");
    ExitCode::FAILURE
}

fn compare_error(e: &CompareError) -> ExitCode {
    eprintln!("kmodlab: {e}");
    match e {
        CompareError::Kvm(_) => ExitCode::from(EXIT_NO_KVM),
        CompareError::UnknownRow(_) => ExitCode::from(EXIT_USAGE),
        _ => ExitCode::FAILURE,
    }
}

/// Splits `--module` values into built-in row names and files.
fn split_modules(values: &[String]) -> (Vec<String>, Vec<PathBuf>) {
    let mut rows = Vec::new();
    let mut files = Vec::new();
    for v in values {
        let p = Path::new(v);
        if v.ends_with(".ko") || v.contains('/') || p.exists() {
            files.push(p.to_owned());
        } else {
            rows.push(v.clone());
        }
    }
    (rows, files)
}

fn configs(args: &[ConfigArg]) -> Vec<KernelConfig> {
    if args.is_empty() {
        vec![KernelConfig::Monolithic, KernelConfig::Microkernel]
    } else {
        let mut v: Vec<KernelConfig> = args.iter().map(|&c| c.into()).collect();
        v.dedup();
        v
    }
}

/// The summary printed after a comparison: the main table and where the files are.
fn summary(report: &Report, dir: &Path) -> String {
    let md = super::markdown::report(report, &Default::default());
    let table: String = md
        .split("## Main table\n\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or("")
        .to_owned();
    format!(
        "kmodlab compare — {} KVM, {}\n\n{table}\nresults: {}\n",
        report.host.kvm_flavour,
        report.host.cpu_model,
        dir.display()
    )
}

/// `kmodlab compare`.
pub fn compare(args: &CompareArgs) -> ExitCode {
    let (rows, files) = split_modules(&args.module);
    let user = match usermods::collect(&files, &args.modules)
        .and_then(|paths| usermods::prepare(crate::artifacts::INITRAMFS, &paths))
    {
        Ok(u) => u,
        Err(e) => return user_error(&e),
    };
    let options = Options {
        configs: configs(&args.config),
        quick: args.quick,
        rows,
        user,
        ram_bytes: args.ram_mib << 20,
        kpti: args.kpti.into(),
        invocation: std::env::args().collect(),
    };
    if let Err(e) = super::plan(&options) {
        return compare_error(&e);
    }
    let report = match super::compare(&options) {
        Ok(r) => r,
        Err(e) => return compare_error(&e),
    };
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| super::default_dir(Path::new("results"), &report));
    if let Err(e) = super::write(&dir, &report) {
        return compare_error(&e);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&report).expect("a report always serialises");
        let _ = writeln!(std::io::stdout(), "{text}");
    } else {
        print!("{}", summary(&report, &dir));
    }
    if super::has_failures(&report) {
        eprintln!(
            "kmodlab: some cells failed (see \"failed\" in {}/REPORT.md)",
            dir.display()
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `kmodlab report`.
pub fn report(args: &ReportArgs) -> ExitCode {
    let mut reports = Vec::new();
    for input in &args.inputs {
        match Report::read(input) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("kmodlab: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let out = match (&args.out, args.inputs.as_slice()) {
        (Some(o), _) => o.clone(),
        (None, [one]) => {
            if one.is_dir() {
                one.clone()
            } else {
                one.parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            }
        }
        (None, _) => {
            eprintln!("kmodlab: report of several runs needs --out DIR");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match super::render(&out, &reports) {
        Ok(()) => {
            println!("{}", out.join("REPORT.md").display());
            ExitCode::SUCCESS
        }
        Err(e) => compare_error(&e),
    }
}

/// `kmodlab check`.
pub fn check(args: &CheckArgs) -> ExitCode {
    let baseline = if args.update {
        None
    } else {
        match Report::read(&args.baseline) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!(
                    "kmodlab: cannot read the baseline: {e}\n(create one with `kmodlab check --baseline {} --update`)",
                    args.baseline.display()
                );
                return ExitCode::FAILURE;
            }
        }
    };
    let configs = baseline.as_ref().map_or_else(
        || configs(&[]),
        |b| {
            b.configurations
                .iter()
                .filter_map(|c| match c.config.as_str() {
                    "monolithic" => Some(KernelConfig::Monolithic),
                    "microkernel" => Some(KernelConfig::Microkernel),
                    _ => None,
                })
                .collect()
        },
    );
    let options = Options {
        configs,
        quick: true,
        rows: Vec::new(),
        user: usermods::prepare(crate::artifacts::INITRAMFS, &[]).expect("no user modules"),
        ram_bytes: 256 << 20,
        kpti: kmodlab_abi::kpti::Kpti::Auto,
        invocation: std::env::args().collect(),
    };
    let current = match super::compare(&options) {
        Ok(r) => r,
        Err(e) => return compare_error(&e),
    };
    if let Some(dir) = &args.out
        && let Err(e) = super::write(dir, &current)
    {
        return compare_error(&e);
    }
    let Some(baseline) = baseline else {
        let text = serde_json::to_string_pretty(&current).expect("a report always serialises");
        if let Err(e) = std::fs::write(&args.baseline, text + "\n") {
            eprintln!("kmodlab: {}: {e}", args.baseline.display());
            return ExitCode::FAILURE;
        }
        println!("baseline written: {}", args.baseline.display());
        return ExitCode::SUCCESS;
    };
    let tol = super::check::Tolerances {
        rule: args.timings,
        slowdown: args.max_slowdown,
        text_growth: args.text_tolerance,
        ..Default::default()
    };
    let findings = super::check::compare(&baseline, &current, &tol);
    let failures = findings
        .iter()
        .filter(|f| f.verdict == super::check::Verdict::Fail)
        .count();
    print!("{}", super::check::table(&findings));
    println!(
        "check: {failures} failed, {} notes against {} (commit {}, {})",
        findings.len() - failures,
        args.baseline.display(),
        baseline
            .git
            .commit
            .as_deref()
            .map_or("unknown", |c| &c[..c.len().min(12)]),
        baseline.created_utc
    );
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
