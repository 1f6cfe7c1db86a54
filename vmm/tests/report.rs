//! `report.json`, `kmodlab report` and `kmodlab check`: the schema round-trips, the
//! committed run re-renders to exactly its committed REPORT.md, several hosts make one
//! cross-host report with figures per KVM flavour, and the regression gate passes on an
//! honest baseline and fails on doctored ones (a changed count, a 2× slower timing).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::kvm_usable;
use kmodlab::compare::check::{self, Tolerances, Verdict};
use kmodlab::compare::report::{Outcome, Report};
use kmodlab::compare::stats::Summary;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The committed full `compare` run (the newest results directory with a report.json).
fn committed_run() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("results"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("report.json").is_file())
        .collect();
    dirs.sort();
    dirs.pop().expect("results/ holds a compare run")
}

fn kmodlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args(args)
        .output()
        .expect("cannot run the kmodlab binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("kmodlab-report-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, r: &Report) {
    std::fs::write(path, serde_json::to_string_pretty(r).unwrap()).unwrap();
}

#[test]
fn the_report_schema_round_trips() {
    let dir = committed_run();
    let r = Report::read(&dir).unwrap();
    let json = serde_json::to_string_pretty(&r).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    // What is committed is what the schema writes.
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(serde_json::to_value(&r).unwrap(), committed);
    // Everything a reader needs to judge the numbers is there.
    assert!(!r.host.cpu_model.is_empty());
    assert!(r.host.kvm_flavour == "pvm" || r.host.kvm_flavour == "hardware");
    assert!(r.host.tsc_khz > 0 && r.host.cores > 0);
    assert!(!r.host.mitigations.is_empty());
    assert!(r.git.commit.as_deref().is_some_and(|c| c.len() == 40));
    let mono = r.config("monolithic").expect("a monolithic column");
    let hello = mono.loads.iter().find(|l| l.name == "hello").unwrap();
    let m = hello.outcome.measured().expect("hello measured");
    assert_eq!(m.load.n, m.load.samples.len());
    assert_eq!(m.load.n, r.parameters.load_iterations as usize);

    // Another schema version is refused with a message saying so.
    let s = Scratch::new("version");
    let mut v = committed.clone();
    v["schema_version"] = serde_json::json!(99);
    let path = s.0.join("report.json");
    std::fs::write(&path, v.to_string()).unwrap();
    assert_eq!(
        Report::read(&path).unwrap_err().to_string(),
        format!(
            "{} has schema version 99; this kmodlab reads version {}",
            path.display(),
            kmodlab::compare::report::SCHEMA_VERSION
        )
    );
}

#[test]
fn report_renders_the_committed_run_exactly() {
    let dir = committed_run();
    let s = Scratch::new("render");
    let out = kmodlab(&[
        "report",
        dir.join("report.json").to_str().unwrap(),
        "--out",
        s.0.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rendered = std::fs::read_to_string(s.0.join("REPORT.md")).unwrap();
    let committed = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(
        rendered == committed,
        "{}/REPORT.md is not what the renderer makes of its report.json: re-render it with \
         `cargo run --release -- report {}`",
        dir.display(),
        dir.display()
    );
    for svg in [
        "load-latency.svg",
        "load-steps.svg",
        "call-cost.svg",
        "footprint.svg",
    ] {
        let file = std::fs::read_to_string(s.0.join(svg)).unwrap();
        assert!(file.starts_with("<svg"), "{svg}");
        assert_eq!(
            file,
            std::fs::read_to_string(dir.join(svg)).unwrap(),
            "{svg} differs from the committed one: re-render"
        );
    }
}

#[test]
fn several_hosts_make_one_table_and_figures_per_flavour() {
    let r = Report::read(&committed_run()).unwrap();
    let mut other = r.clone();
    other.host.kvm_flavour = if r.host.kvm_flavour == "pvm" {
        "hardware"
    } else {
        "pvm"
    }
    .into();
    other.host.cpu_model = "Another CPU".into();
    other.host.cpu_short = "another".into();
    let s = Scratch::new("cross");
    let (a, b) = (s.0.join("a.json"), s.0.join("b.json"));
    write(&a, &r);
    write(&b, &other);
    let out_dir = s.0.join("out");
    let out = kmodlab(&[
        "report",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = std::fs::read_to_string(out_dir.join("REPORT.md")).unwrap();
    assert!(
        md.contains("| metric | run 1 (hardware) | run 2 (pvm) |"),
        "{md}"
    );
    assert!(md.contains("Another CPU"), "{md}");
    for flavour in ["hardware", "pvm"] {
        for fig in ["load-latency", "call-cost"] {
            let svg =
                std::fs::read_to_string(out_dir.join(format!("{fig}-{flavour}.svg"))).unwrap();
            // One flavour per figure.
            let other_flavour = if flavour == "pvm" { "hardware" } else { "pvm" };
            assert!(svg.contains(&format!("({flavour})")), "{fig}-{flavour}");
            assert!(
                !svg.contains(&format!("({other_flavour})")),
                "{fig}-{flavour} mixes flavours"
            );
        }
    }
    // Several inputs need --out.
    let out = kmodlab(&["report", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "kmodlab: report of several runs needs --out DIR\n"
    );
}

/// `r` with every timing sample of the monolithic loads and calls scaled by `k`.
fn scale_timings(r: &mut Report, k: f64) {
    let c = r
        .configurations
        .iter_mut()
        .find(|c| c.config == "monolithic")
        .unwrap();
    let scale = |s: &mut Summary| {
        *s = Summary::new(&s.unit.clone(), s.samples.iter().map(|x| x * k).collect())
    };
    for l in &mut c.loads {
        if let Outcome::Measured(m) = &mut l.outcome {
            scale(&mut m.load);
            if let Some(u) = &mut m.unload {
                scale(u);
            }
        }
    }
    for x in &mut c.calls {
        if let Outcome::Measured(m) = &mut x.outcome {
            scale(&mut m.per_call);
        }
    }
}

fn bump_hello_relocations(r: &mut Report) {
    let c = r
        .configurations
        .iter_mut()
        .find(|c| c.config == "monolithic")
        .unwrap();
    let hello = c.loads.iter_mut().find(|l| l.name == "hello").unwrap();
    let Outcome::Measured(m) = &mut hello.outcome else {
        panic!("hello not measured")
    };
    m.relocations += 1;
}

#[test]
fn the_gate_judges_counts_exactly_and_timings_robustly() {
    let r = Report::read(&committed_run()).unwrap();
    let tol = Tolerances::default();
    assert_eq!(check::compare(&r, &r, &tol), []);

    let mut counted = r.clone();
    bump_hello_relocations(&mut counted);
    let f = check::compare(&counted, &r, &tol);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].verdict, Verdict::Fail);
    assert_eq!(f[0].metric, "hello: relocations");
    assert_eq!(f[0].why, "a deterministic count changed");

    // A baseline twice as fast: this run is 2× slower everywhere.
    let mut fast = r.clone();
    scale_timings(&mut fast, 0.5);
    let f = check::compare(&fast, &r, &tol);
    // Every monolithic timing fails; the micro ÷ mono ratios moved too, which the absolute
    // rule only notes.
    assert!(
        f.iter().any(|x| x.config == "monolithic")
            && f.iter()
                .all(|x| (x.verdict == Verdict::Fail) == (x.config != "both")),
        "{f:#?}"
    );
    assert!(
        f.iter()
            .any(|x| x.metric == "load hello" && x.why.starts_with("100 % slower")),
        "{f:#?}"
    );
    // 15 % slower is within the limit, however significant.
    let mut slightly = r.clone();
    scale_timings(&mut slightly, 1.0 / 1.15);
    assert_eq!(check::compare(&slightly, &r, &tol), []);
    // Counts only: the same 2× is not judged.
    let off = Tolerances {
        rule: check::TimingRule::Off,
        ..tol
    };
    assert_eq!(check::compare(&fast, &r, &off), []);
    let table = check::table(&check::compare(&counted, &r, &tol));
    assert!(
        table.starts_with("| verdict | configuration | metric | baseline | this run | why |\n")
    );
    assert!(
        table.contains(
            "| FAIL | monolithic | hello: relocations | 14 | 13 | a deterministic count changed |"
        ),
        "{table}"
    );
}

#[test]
fn check_passes_on_an_honest_baseline_and_fails_on_doctored_ones() {
    if !kvm_usable() {
        return;
    }
    let s = Scratch::new("check");
    let base = s.0.join("baseline.json");
    let b = base.to_str().unwrap();
    let out = kmodlab(&["check", "--baseline", b, "--update"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("baseline written: {b}\n"));

    // Honest: counts identical; timings judged by the same-run ratios (what CI does: on a
    // busy shared host absolute timings of two runs differ by more than any sane limit).
    let out = kmodlab(&[
        "check",
        "--baseline",
        b,
        "--timings",
        "ratio",
        "--max-slowdown",
        "1.0",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("check: 0 failed"),
        "{}",
        text(&out.stdout)
    );

    let honest = Report::read(&base).unwrap();
    let mut counted = honest.clone();
    bump_hello_relocations(&mut counted);
    let doctored = s.0.join("count.json");
    write(&doctored, &counted);
    // Counts alone: a third run's timings are not what this case is about.
    let out = kmodlab(&[
        "check",
        "--baseline",
        doctored.to_str().unwrap(),
        "--timings",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "| FAIL | monolithic | hello: relocations | 14 | 13 | a deterministic count changed |"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("check: 1 failed"), "{stdout}");

    // A baseline whose monolithic loads took four times as long: this run's micro ÷ mono
    // ratios are four times the baseline's, by the medians and by the minima alike.
    let mut mono_slow = honest.clone();
    scale_timings(&mut mono_slow, 4.0);
    let doctored = s.0.join("ratio.json");
    write(&doctored, &mono_slow);
    let out = kmodlab(&[
        "check",
        "--baseline",
        doctored.to_str().unwrap(),
        "--timings",
        "ratio",
        "--max-slowdown",
        "1.0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("| FAIL | both | load hello: micro ÷ mono |")
            && stdout.contains("%; limit 100 %) |"),
        "{stdout}"
    );

    let mut fast = honest.clone();
    scale_timings(&mut fast, 0.5);
    let doctored = s.0.join("slow.json");
    write(&doctored, &fast);
    let out = kmodlab(&[
        "check",
        "--baseline",
        doctored.to_str().unwrap(),
        "--timings",
        "absolute",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("slower (permutation test p = "),
        "{}",
        text(&out.stdout)
    );
}
