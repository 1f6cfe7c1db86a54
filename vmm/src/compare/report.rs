//! `report.json`: every figure of a `kmodlab compare` run, with its raw samples and what is
//! needed to judge it (host, KVM flavour, mitigations, commit, parameters). The serde types
//! below are the schema; [`SCHEMA_VERSION`] changes when a change would break a reader.

use std::collections::BTreeMap;
use std::path::Path;

use kmodlab_abi::channel::{Footprint, KernelImageInfo};
use serde::{Deserialize, Serialize};

use super::stats::Summary;

/// Version of this schema.
pub const SCHEMA_VERSION: u32 = 1;

/// One `compare` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// kmodlab's version.
    pub kmodlab_version: String,
    /// When the run started, UTC, RFC 3339.
    pub created_utc: String,
    /// The host.
    pub host: Host,
    /// The source tree the binary ran from.
    pub git: Git,
    /// The command line.
    pub invocation: Vec<String>,
    /// What was measured, how often.
    pub parameters: Parameters,
    /// One entry per configuration measured.
    pub configurations: Vec<ConfigResult>,
}

/// The machine a report was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// A short form of it for file names (`xeon`, `epyc-7b13`, …).
    pub cpu_short: String,
    /// Logical CPUs.
    pub cores: usize,
    /// Host kernel release.
    pub kernel_release: String,
    /// The KVM module loaded (`kvm_intel`, `kvm_amd`, `kvm_pvm`).
    pub kvm_module: Option<String>,
    /// `hardware` or `pvm`, as the VMM detected it.
    pub kvm_flavour: String,
    /// Guest TSC frequency in kHz (cycles → time).
    pub tsc_khz: u64,
    /// `/sys/devices/system/cpu/vulnerabilities/*`: name → state.
    pub mitigations: BTreeMap<String, String>,
    /// The 1/5/15-minute load averages when the run started and ended (other work on the
    /// host distorts timings; counts are immune).
    pub load_average: LoadAverage,
}

/// Load averages around a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadAverage {
    /// At the start.
    pub start: [f64; 3],
    /// At the end.
    pub end: [f64; 3],
}

/// The git state of the tree the binary was run from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Git {
    /// `HEAD`'s commit, if known.
    pub commit: Option<String>,
    /// Whether tracked files differ from `HEAD`.
    pub dirty: Option<bool>,
}

/// What a run measured and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// `--quick`.
    pub quick: bool,
    /// Boots timed per configuration.
    pub boots: u32,
    /// Untimed load rounds before the timed ones.
    pub warmup: u32,
    /// Timed load/unload rounds of each small or medium module.
    pub load_iterations: u32,
    /// Timed rounds of `big`.
    pub big_iterations: u32,
    /// Timed rounds of the kvclient chain.
    pub chain_iterations: u32,
    /// Samples per call series.
    pub call_samples: u32,
    /// Calls per sample.
    pub call_batch: u32,
    /// Request sizes of the call series, bytes.
    pub call_sizes: Vec<u32>,
    /// The module rows (built-in and user modules), in order.
    pub modules: Vec<String>,
    /// User modules given with `--module`/`--modules`.
    pub user_modules: Vec<UserModule>,
    /// The kernel/user page-table split asked for (`--kpti`: on, off or auto) and what it
    /// resolved to on this host; `None` in reports written before the switch existed (they
    /// ran with auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpti: Option<KptiRecord>,
}

/// The `--kpti` setting of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KptiRecord {
    /// What was asked for: `on`, `off` or `auto`.
    pub requested: String,
    /// Whether user mode ran on page tables of its own, by the rule the kernel applies
    /// ([`kmodlab_abi::kpti::Kpti::resolve`]: auto is on where the VIF page is registered).
    pub on: bool,
}

/// A user module measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserModule {
    /// Its name.
    pub name: String,
    /// The file it came from.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The modules it needs, load order.
    pub depends: Vec<String>,
}

/// How one cell of the matrix went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    /// Measured.
    Measured(T),
    /// The configuration cannot do this (yet): the guest's own error.
    Unsupported {
        /// The errno the guest reported.
        errno: i32,
        /// The guest's message.
        message: String,
    },
    /// It failed: the guest's error, or how the run ended.
    Failed {
        /// What happened.
        message: String,
    },
}

impl<T> Outcome<T> {
    /// The measurement, if there is one.
    pub fn measured(&self) -> Option<&T> {
        match self {
            Outcome::Measured(t) => Some(t),
            _ => None,
        }
    }

    /// A short label for tables: `unsupported` or `failed`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Measured(_) => "measured",
            Outcome::Unsupported { .. } => "unsupported",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// Why it is not measured, for footnotes.
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Measured(_) => None,
            Outcome::Unsupported { errno, message } => Some(format!("{message} (errno {errno})")),
            Outcome::Failed { message } => Some(message.clone()),
        }
    }
}

/// Everything measured in one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigResult {
    /// `monolithic` or `microkernel`.
    pub config: String,
    /// Boot time.
    pub boot: Outcome<BootResult>,
    /// The kernel image (its text is the privileged code: what a fault can take down).
    pub kernel: Option<KernelFacts>,
    /// Load/unload per module row.
    pub loads: Vec<LoadResult>,
    /// Calls between modules.
    pub calls: Vec<CallResult>,
    /// What a faulting module does to the system.
    pub fault_isolation: Outcome<FaultIsolation>,
    /// VM exits of the measurement session, by reason.
    pub session_vm_exits: BTreeMap<String, u64>,
}

/// Boot timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootResult {
    /// Wall-clock milliseconds from `KVM_CREATE_VM` to the kernel's ready message.
    pub wall_ms: Summary,
    /// Guest cycles from the kernel's first instruction to its ready message.
    pub guest_cycles: Summary,
}

/// Facts about the kernel image and machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelFacts {
    /// Section sizes of the kernel image.
    pub image: KernelImageInfo,
    /// Frames the kernel manages.
    pub frames_total: u64,
    /// Kernel heap size.
    pub heap_bytes: u64,
}

/// One module row: loading and unloading one module, or a dependency chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadResult {
    /// Row name (`hello`, `kvclient-chain`, a user module's name).
    pub name: String,
    /// The modules loaded by one operation, in order.
    pub modules: Vec<String>,
    /// `built-in` or `user`.
    pub source: String,
    /// The measurement.
    pub outcome: Outcome<LoadMeasurement>,
}

/// Load and unload of one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadMeasurement {
    /// Cycles of one load (all modules of the row).
    pub load: Summary,
    /// Cycles of one unload, when the row unloads.
    pub unload: Option<Summary>,
    /// Cycles of each load step (the kernel's `LoadCycles`, summed over the row's modules),
    /// in step order.
    pub steps: Vec<(String, Summary)>,
    /// Relocations applied by one load.
    pub relocations: u64,
    /// Pages mapped for the row's modules while loaded.
    pub pages: u64,
    /// Memory per module, as the kernel accounts it.
    pub footprint: Vec<(String, Footprint)>,
    /// Counts per load+unload round.
    pub per_round: PerOp,
}

/// Deterministic counts per operation.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PerOp {
    /// System calls.
    pub syscalls: f64,
    /// IPC messages.
    pub ipc_messages: f64,
    /// IPC payload bytes.
    pub ipc_bytes: f64,
    /// VM exits (all reasons).
    pub vm_exits: f64,
}

/// One call series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallResult {
    /// Series name: `crc32_compute` (export), `crc32-service`, `kvstore_get-chain`.
    pub name: String,
    /// Request (or value) size in bytes.
    pub bytes: u32,
    /// The measurement.
    pub outcome: Outcome<CallMeasurement>,
}

/// Cost of one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallMeasurement {
    /// Calls per sample.
    pub batch: u32,
    /// Cycles per call (each sample: one batch's cycles / batch).
    pub per_call: Summary,
    /// Counts per call.
    pub per_call_counts: PerOp,
}

/// What happened when a module faulted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultIsolation {
    /// The module and parameters loaded.
    pub trigger: String,
    /// Whether the kernel kept running.
    pub kernel_survived: bool,
    /// How the fault showed (the VMM's description of the run's end, or the error the
    /// caller got).
    pub outcome: String,
    /// Milliseconds until the module's service answered again, where the configuration
    /// restarts it.
    pub recovery_ms: Option<f64>,
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a report of this schema.
    #[error("{path} is not a kmodlab report.json: {source}")]
    Json {
        /// The file.
        path: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// The report is of another schema version.
    #[error("{path} has schema version {found}; this kmodlab reads version {SCHEMA_VERSION}")]
    Version {
        /// The file.
        path: String,
        /// Its version.
        found: u32,
    },
}

impl Report {
    /// Reads and checks a `report.json` (or a directory holding one).
    pub fn read(path: &Path) -> Result<Report, ReadError> {
        let file = if path.is_dir() {
            path.join("report.json")
        } else {
            path.to_owned()
        };
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|source| ReadError::Io {
            path: name.clone(),
            source,
        })?;
        let version: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ReadError::Json {
                path: name.clone(),
                source,
            })?;
        let found = version
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if found != SCHEMA_VERSION {
            return Err(ReadError::Version { path: name, found });
        }
        serde_json::from_value(version).map_err(|source| ReadError::Json { path: name, source })
    }

    /// The result of configuration `config`.
    pub fn config(&self, config: &str) -> Option<&ConfigResult> {
        self.configurations.iter().find(|c| c.config == config)
    }

    /// Guest cycles to microseconds on this report's host.
    pub fn us_per_cycle(&self) -> f64 {
        if self.host.tsc_khz == 0 {
            0.0
        } else {
            1e3 / self.host.tsc_khz as f64
        }
    }
}
