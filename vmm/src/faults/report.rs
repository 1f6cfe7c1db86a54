//! A campaign's results: the terminal table, the JSON document and the Markdown report.

use std::fmt::Write as _;

use serde::Serialize;

use super::plan::{Fault, Phase};
use super::{Campaign, CampaignRun, Distribution, Outcome, Totals, Verdict};

/// Where and how a campaign was run.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// The command line, as run.
    pub command: String,
    /// `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// The source tree's commit, if known.
    pub commit: Option<String>,
    /// Whether tracked files differed from it.
    pub dirty: Option<bool>,
    /// The KVM module loaded (`kvm_pvm`, `kvm_intel`, `kvm_amd`).
    pub kvm_module: Option<String>,
    /// `/proc/loadavg` when the campaign started.
    pub load_start: String,
    /// `/proc/loadavg` when it ended.
    pub load_end: String,
    /// When it started (UTC, RFC 3339).
    pub started_utc: String,
}

/// One fault × phase row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The fault.
    pub fault: Fault,
    /// The phase.
    pub phase: Phase,
    /// Its counts.
    pub totals: Totals,
    /// Median recovery (µs), if any recovered.
    pub median_recovery_us: Option<u64>,
    /// Vectors reported, with counts.
    pub vectors: Vec<(u8, u64)>,
}

/// The JSON document: everything but the contained injections one by one.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    /// Where and how.
    pub environment: Environment,
    /// How the campaign ran.
    #[serde(flatten)]
    pub run: CampaignRun,
    /// What the recovery times measure.
    pub recovery_clock: &'static str,
    /// The counts.
    pub totals: Totals,
    /// Whether the goal is met.
    pub goal_met: bool,
    /// Recovery time over all injections.
    pub recovery: Option<Distribution>,
    /// Recovery time without `loop`, whose recovery is the watchdog's budget.
    pub recovery_without_loop: Option<Distribution>,
    /// By fault × phase.
    pub rows: Vec<Row>,
    /// Every injection that was not fully contained (at most [`MAX_LISTED`]).
    pub not_contained: Vec<Outcome>,
    /// How many were left out of `not_contained`.
    pub not_contained_omitted: usize,
}

/// Injections listed one by one in a report, at most.
pub const MAX_LISTED: usize = 1000;

/// What the recovery times are.
pub const RECOVERY_CLOCK: &str = "host wall clock, from sending the command that runs the \
    fault (insmod, rmmod or the service call) to a correct reply of the crc32 service";

impl Document {
    /// The document of `c`, run in `env`.
    pub fn new(c: &Campaign, environment: Environment) -> Document {
        let mut rows = Vec::new();
        for fault in Fault::ALL {
            for phase in Phase::ALL {
                let of: Vec<&Outcome> = c
                    .outcomes
                    .iter()
                    .filter(|o| o.injection.fault == fault && o.injection.phase == phase)
                    .collect();
                if of.is_empty() {
                    continue;
                }
                let mut vectors = std::collections::BTreeMap::<u8, u64>::new();
                for v in of.iter().filter_map(|o| o.vector) {
                    *vectors.entry(v).or_default() += 1;
                }
                rows.push(Row {
                    fault,
                    phase,
                    totals: Totals::of(of.iter().copied()),
                    median_recovery_us: Distribution::of(
                        of.iter().filter_map(|o| o.recovery_us).collect(),
                    )
                    .map(|d| d.median_us),
                    vectors: vectors.into_iter().collect(),
                });
            }
        }
        let bad: Vec<&Outcome> = c
            .outcomes
            .iter()
            .filter(|o| o.verdict != Verdict::Contained)
            .collect();
        Document {
            environment,
            run: c.run.clone(),
            recovery_clock: RECOVERY_CLOCK,
            totals: c.totals(),
            goal_met: c.goal_met(),
            recovery: c.recovery(),
            recovery_without_loop: Distribution::of(
                c.outcomes
                    .iter()
                    .filter(|o| o.injection.fault != Fault::Loop)
                    .filter_map(|o| o.recovery_us)
                    .collect(),
            ),
            rows,
            not_contained_omitted: bad.len().saturating_sub(MAX_LISTED),
            not_contained: bad.into_iter().take(MAX_LISTED).cloned().collect(),
        }
    }

    fn summary_lines(&self) -> Vec<(String, String)> {
        let t = &self.totals;
        let mut v = vec![
            ("injected".into(), t.injected.to_string()),
            ("contained".into(), t.contained.to_string()),
            ("kernel crashes".into(), t.kernel_crashes.to_string()),
            ("hangs".into(), t.hangs.to_string()),
            ("survived, a check failed".into(), t.degraded.to_string()),
            (
                "leaked frames after unload".into(),
                format!(
                    "{} (in {} injections)",
                    t.leaked_frames, t.injections_leaking
                ),
            ),
            (
                "faults reported with module+offset".into(),
                format!("{} of {} exceptions", t.reported_with_offset, t.exceptions),
            ),
            (
                "lies refused (garbage)".into(),
                format!("{} of {}", t.lies_refused, t.lies),
            ),
            (
                "faults that did not fire".into(),
                (t.injected - t.fired).to_string(),
            ),
            (
                "services answering after".into(),
                format!("{} of {}", t.services_answered, t.injected),
            ),
            (
                "kernel heap growth, summed".into(),
                format!("{} bytes", t.heap_growth),
            ),
        ];
        let show = |d: &Option<Distribution>| match d {
            Some(d) => format!(
                "min {}  median {}  p99 {}  max {}  (n = {})",
                d.min_us, d.median_us, d.p99_us, d.max_us, d.samples
            ),
            None => "none recovered".into(),
        };
        v.push(("recovery (µs)".into(), show(&self.recovery)));
        v.push((
            "recovery without loop (µs)".into(),
            show(&self.recovery_without_loop),
        ));
        v
    }

    /// The terminal table.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "kmodlab faults: {} configuration, {} injections, seed {}, batches of {} ({} boots, \
             {:.1} s, KVM {})",
            self.run.config,
            self.run.count,
            self.run.seed,
            self.run.batch,
            self.run.boots,
            self.run.wall_secs,
            self.run.kvm_flavour
        );
        if self.run.config == "monolithic" {
            let _ = writeln!(
                s,
                "  (monolithic: every exception ends the kernel, so each costs a boot; the \
                 default count is smaller)"
            );
        }
        let _ = writeln!(s);
        for (k, v) in self.summary_lines() {
            let _ = writeln!(s, "  {k:<38} {v}");
        }
        let _ = writeln!(s, "  recovery clock: {RECOVERY_CLOCK}");
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  {:<11} {:<5} {:>7} {:>9} {:>7} {:>5} {:>8} {:>7} {:>10}  vectors",
            "fault",
            "at",
            "injctd",
            "contained",
            "crashes",
            "hangs",
            "reported",
            "leaked",
            "median µs"
        );
        for r in &self.rows {
            let c = r.cells();
            let _ = writeln!(
                s,
                "  {:<11} {:<5} {:>7} {:>9} {:>7} {:>5} {:>8} {:>7} {:>10}  {}",
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]
            );
        }
        if !self.not_contained.is_empty() {
            let _ = writeln!(
                s,
                "\n  not contained (first {}):",
                self.not_contained.len().min(20)
            );
            for o in self.not_contained.iter().take(20) {
                let _ = writeln!(s, "    {}", describe(o));
            }
        }
        s
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let e = &self.environment;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Fault injection: {} configuration, {} injections\n",
            self.run.config, self.run.count
        );
        let _ = writeln!(s, "- command: `{}`", e.command);
        let _ = writeln!(s, "- started: {}", e.started_utc);
        let _ = writeln!(s, "- CPU: {}", e.cpu_model);
        let _ = writeln!(
            s,
            "- commit: {}{}",
            e.commit.as_deref().unwrap_or("unknown"),
            if e.dirty == Some(true) {
                " (with uncommitted changes)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "- KVM: {} (guest saw flavour `{}`)",
            e.kvm_module.as_deref().unwrap_or("none"),
            self.run.kvm_flavour
        );
        let _ = writeln!(
            s,
            "- load (/proc/loadavg): {} at the start, {} at the end",
            e.load_start, e.load_end
        );
        let _ = writeln!(
            s,
            "- seed {}, batches of {} injections, {} boots, {:.1} s wall clock{}",
            self.run.seed,
            self.run.batch,
            self.run.boots,
            self.run.wall_secs,
            if self.run.config == "microkernel" {
                format!(", watchdog {} ms", self.run.watchdog_ms)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "- goal (0 crashes, 0 hangs, 0 leaked frames, every fault reported with module and offset, every lie refused, services answering after each): **{}**\n",
            if self.goal_met { "met" } else { "not met" }
        );
        let _ = writeln!(s, "| count | value |\n|---|---|");
        for (k, v) in self.summary_lines() {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        let _ = writeln!(s, "\nRecovery time: {RECOVERY_CLOCK}.\n");
        let _ = writeln!(
            s,
            "| fault | at | injected | contained | crashes | hangs | reported | leaked frames | median recovery µs | vectors |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.cells().join(" | "));
        }
        if !self.not_contained.is_empty() {
            let _ = writeln!(
                s,
                "\n## Not contained ({}{})\n",
                self.not_contained.len(),
                if self.not_contained_omitted > 0 {
                    format!(" listed, {} more", self.not_contained_omitted)
                } else {
                    String::new()
                }
            );
            for o in self.not_contained.iter().take(100) {
                let _ = writeln!(s, "- {}", describe(o));
            }
        }
        s
    }
}

impl Row {
    /// The row's cells, as both tables (terminal and Markdown) show them: fault, phase,
    /// injected, contained, crashes, hangs, reported, leaked frames, median recovery, vectors.
    fn cells(&self) -> [String; 10] {
        let t = &self.totals;
        [
            self.fault.name().to_string(),
            self.phase.name().to_string(),
            t.injected.to_string(),
            t.contained.to_string(),
            t.kernel_crashes.to_string(),
            t.hangs.to_string(),
            reported(t, self.fault),
            t.leaked_frames.to_string(),
            self.median_recovery_us
                .map_or("-".into(), |m| m.to_string()),
            vectors(&self.vectors),
        ]
    }
}

fn reported(t: &Totals, fault: Fault) -> String {
    if fault.is_exception() {
        format!("{}/{}", t.reported_with_offset, t.exceptions)
    } else {
        format!("{}/{} refused", t.lies_refused, t.lies)
    }
}

fn vectors(v: &[(u8, u64)]) -> String {
    v.iter()
        .map(|(vec, n)| {
            if *vec == kmodlab_abi::channel::WATCHDOG_VECTOR {
                format!("watchdog×{n}")
            } else {
                format!("{vec}×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe(o: &Outcome) -> String {
    format!(
        "#{} {} (neighbour {:?}): {:?}: {}",
        o.injection.index,
        o.injection.params(),
        o.injection.neighbour,
        o.verdict,
        o.problems.join("; ")
    )
}
