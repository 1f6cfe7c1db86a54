//! `kmodlab compare`, `report` and `check`: the same modules measured in both
//! configurations, side by side, written as `report.json` (every sample), `REPORT.md`
//! (tables and a reading) and SVG plots; re-rendered from one or more reports; and checked
//! against a committed baseline in CI.
//!
//! - [`session`]: a booted guest driven one command at a time (shared with the Criterion
//!   benchmarks in `benches/`).
//! - [`run`]: the matrix: timed boots, load/unload of each module, calls between modules,
//!   footprints, fault isolation.
//! - [`report`]: the `report.json` schema; [`stats`]: its statistics.
//! - [`markdown`] and [`plots`]: `REPORT.md` and the figures; [`check`]: the regression gate.
//! - [`usermods`]: the user's own modules (`--module`, `--modules`).

pub mod check;
pub mod cli;
pub mod environment;
pub mod markdown;
pub mod plots;
pub mod report;
pub mod run;
pub mod session;
pub mod stats;
pub mod usermods;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use kmodlab_abi::KernelConfig;

use report::{Host, LoadAverage, Parameters, Report, SCHEMA_VERSION};
use run::{BUILT_IN_ROWS, Plan, Progress};

/// Why a comparison could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// KVM is unusable.
    #[error("KVM is not usable: {0}")]
    Kvm(#[from] crate::kvm::PreflightError),
    /// A `--module` name is neither a built-in row nor a file.
    #[error(
        "--module {0}: no such file, and not a built-in module row (rows: {rows})",
        rows = BUILT_IN_ROWS.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
    )]
    UnknownRow(String),
    /// Writing the results failed.
    #[error("{path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Rendering a plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
}

/// Options of one comparison.
#[derive(Debug, Clone)]
pub struct Options {
    /// Configurations to measure.
    pub configs: Vec<KernelConfig>,
    /// The `--quick` matrix.
    pub quick: bool,
    /// Built-in rows to run (empty: all).
    pub rows: Vec<String>,
    /// User modules, checked.
    pub user: usermods::Prepared,
    /// Guest RAM.
    pub ram_bytes: u64,
    /// The kernel/user page-table split to ask the guest for (`--kpti`).
    pub kpti: kmodlab_abi::kpti::Kpti,
    /// The command line, for the record.
    pub invocation: Vec<String>,
}

/// Plain progress lines, or an indicatif bar when stdout is a terminal.
pub struct ProgressReporter {
    bar: Option<indicatif::ProgressBar>,
    done: u64,
    total: u64,
}

impl ProgressReporter {
    /// A reporter for `total` steps.
    pub fn new(total: u64) -> ProgressReporter {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        ProgressReporter {
            bar,
            done: 0,
            total,
        }
    }

    /// Ends the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for ProgressReporter {
    fn step(&mut self, config: KernelConfig, what: &str) {
        self.done += 1;
        let msg = format!("{}: {what}", config.name());
        match &self.bar {
            Some(b) => {
                b.set_message(msg);
                b.set_position(self.done - 1);
            }
            None => eprintln!("[{}/{}] {msg}", self.done, self.total),
        }
    }
}

/// The plan for `options`.
pub fn plan(options: &Options) -> Result<Plan, CompareError> {
    let mut parameters = Parameters::new(options.quick);
    let rows: Vec<&'static run::Row> = if options.rows.is_empty() {
        BUILT_IN_ROWS.iter().collect()
    } else {
        options
            .rows
            .iter()
            .map(|name| {
                BUILT_IN_ROWS
                    .iter()
                    .find(|r| r.name == name)
                    .ok_or_else(|| CompareError::UnknownRow(name.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    parameters.modules = rows
        .iter()
        .map(|r| r.name.to_owned())
        .chain(options.user.modules.iter().map(|m| m.name.clone()))
        .collect();
    parameters.user_modules = options
        .user
        .modules
        .iter()
        .map(|m| report::UserModule {
            name: m.name.clone(),
            path: usermods::display(&m.path),
            bytes: m.bytes.len() as u64,
            depends: m.depends.clone(),
        })
        .collect();
    Ok(Plan {
        parameters,
        rows,
        user: options.user.modules.clone(),
        archive: options.user.archive.clone(),
        ram_bytes: options.ram_bytes,
        kpti: options.kpti,
    })
}

/// Runs the comparison.
pub fn compare(options: &Options) -> Result<Report, CompareError> {
    crate::kvm::availability()?;
    let plan = plan(options)?;
    let (_, created_utc) = environment::now_utc();
    let load_start = environment::load_average();
    let mut progress =
        ProgressReporter::new(run::steps_per_config(&plan) * options.configs.len() as u64);
    let mut configurations = Vec::new();
    let mut flavour = None;
    let mut tsc_khz = 0;
    for &config in &options.configs {
        let result = run::run_config(config, &plan, &mut progress);
        configurations.push(result);
        if flavour.is_none() {
            // One short boot tells flavour and TSC frequency, whatever the matrix did.
            if let Ok(g) = session::GuestSession::boot(
                &crate::vm::VmConfig::new(config),
                crate::artifacts::images(config),
                crate::devices::serial::Echo::Quiet,
                std::time::Duration::from_secs(30),
            ) {
                flavour = Some(g.flavour);
                tsc_khz = g.tsc_khz;
                g.shutdown();
            }
        }
    }
    progress.finish();
    let mut parameters = plan.parameters;
    parameters.kpti = Some(report::KptiRecord {
        requested: options.kpti.name().into(),
        on: options
            .kpti
            .resolve(flavour == Some(kmodlab_abi::KvmFlavour::Pvm)),
    });
    let info = crate::host::HostInfo::detect();
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        kmodlab_version: env!("CARGO_PKG_VERSION").into(),
        created_utc,
        host: Host {
            cpu_short: environment::cpu_short(&info.cpu_model),
            cpu_model: info.cpu_model,
            cores: info.cpus,
            kernel_release: info.kernel_release,
            kvm_module: info.kvm_module,
            kvm_flavour: flavour.map_or("unknown", |f| f.name()).into(),
            tsc_khz,
            mitigations: environment::mitigations(),
            load_average: LoadAverage {
                start: load_start,
                end: environment::load_average(),
            },
        },
        git: environment::git(environment::source_tree()),
        invocation: options.invocation.clone(),
        parameters,
        configurations,
    })
}

/// `results/<date>-<flavour>-<cpu-short>` for `report`, under `base`.
pub fn default_dir(base: &Path, report: &Report) -> PathBuf {
    let date = report.created_utc.get(..10).unwrap_or("undated");
    base.join(format!(
        "{date}-{}-{}",
        report.host.kvm_flavour, report.host.cpu_short
    ))
}

/// Writes `report.json`, `REPORT.md` and the plots into `dir`.
pub fn write(dir: &Path, report: &Report) -> Result<(), CompareError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CompareError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = dir.join("report.json");
    let text = serde_json::to_string_pretty(report).expect("a report always serialises");
    std::fs::write(&json, text + "\n").map_err(io(&json))?;
    render(dir, std::slice::from_ref(report))
}

/// Writes `REPORT.md` and the plots of `reports` (one: a run's report; several: a
/// cross-host report) into `dir`.
pub fn render(dir: &Path, reports: &[Report]) -> Result<(), CompareError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CompareError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let figures = plots::render_all(dir, reports)?;
    let md = if reports.len() == 1 {
        markdown::report(&reports[0], &figures)
    } else {
        markdown::cross_host(reports, &figures)
    };
    let path = dir.join("REPORT.md");
    std::fs::write(&path, md).map_err(io(&path))
}

/// Whether any cell failed (not merely unsupported): the comparison's exit status.
pub fn has_failures(report: &Report) -> bool {
    report.configurations.iter().any(|c| {
        matches!(c.boot, report::Outcome::Failed { .. })
            || c.loads
                .iter()
                .any(|l| matches!(l.outcome, report::Outcome::Failed { .. }))
            || c.calls
                .iter()
                .any(|l| matches!(l.outcome, report::Outcome::Failed { .. }))
    })
}
