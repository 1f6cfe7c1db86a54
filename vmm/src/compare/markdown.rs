//! `REPORT.md`: the tables of one run (mono, micro and micro ÷ mono from the same run), the
//! per-step load breakdown, the deterministic counts, fault isolation and a reading of the
//! numbers; or, for several runs, one cross-host table.

use std::fmt::Write;

use super::plots::Figures;
use super::report::{ConfigResult, LoadMeasurement, Outcome, Report};
use super::stats::Summary;

const CONFIGS: [&str; 2] = ["monolithic", "microkernel"];

/// `x` with 3–4 significant digits and thousands separators.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let a = x.abs();
    if a == 0.0 {
        return "0".into();
    }
    if a < 10.0 {
        return format!("{x:.2}");
    }
    if a < 100.0 {
        return format!("{x:.1}");
    }
    grouped(x.round() as i64)
}

/// An exact count: integers without decimals, fractions (averages per operation) with two.
pub fn count(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        grouped(x as i64)
    } else {
        format!("{x:.2}")
    }
}

/// An integer with thousands separators.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `median [q1–q3]`.
fn cell(s: &Summary) -> String {
    format!("{} [{}–{}]", num(s.median), num(s.q1), num(s.q3))
}

/// Footnotes for cells that are not measured, numbered in order of appearance.
#[derive(Default)]
struct Notes {
    notes: Vec<String>,
}

impl Notes {
    fn mark<T>(&mut self, o: &Outcome<T>) -> String {
        let reason = o.reason().unwrap_or_default();
        let n = match self.notes.iter().position(|x| *x == reason) {
            Some(i) => i + 1,
            None => {
                self.notes.push(reason);
                self.notes.len()
            }
        };
        format!("{} [^{n}]", o.label())
    }

    fn render(&self, out: &mut String) {
        for (i, n) in self.notes.iter().enumerate() {
            let _ = writeln!(out, "[^{}]: {}", i + 1, n.replace('\n', " "));
        }
    }
}

/// One metric of the main table: a value per configuration, or why there is none.
enum Value {
    Summary(Summary),
    Number(f64),
    Missing(String),
}

fn ratio(a: &Value, b: &Value) -> String {
    let v = |x: &Value| match x {
        Value::Summary(s) => Some(s.median),
        Value::Number(n) => Some(*n),
        Value::Missing(_) => None,
    };
    match (v(a), v(b)) {
        (Some(mono), Some(micro)) if mono > 0.0 => format!("{:.2}×", micro / mono),
        _ => "—".into(),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Summary(s) => cell(s),
        Value::Number(n) => num(*n),
        Value::Missing(m) => m.clone(),
    }
}

struct Row {
    metric: String,
    values: [Value; 2],
}

fn load_value(
    c: Option<&ConfigResult>,
    row: &str,
    notes: &mut Notes,
    f: impl Fn(&LoadMeasurement) -> Option<Value>,
) -> Value {
    let Some(c) = c else {
        return Value::Missing("not run".into());
    };
    match c.loads.iter().find(|l| l.name == row) {
        None => Value::Missing("not run".into()),
        Some(l) => match &l.outcome {
            Outcome::Measured(m) => f(m).unwrap_or_else(|| Value::Missing("—".into())),
            o => Value::Missing(notes.mark(o)),
        },
    }
}

fn main_rows(r: &Report, notes: &mut Notes) -> Vec<Row> {
    let us = r.us_per_cycle();
    let cfg: Vec<Option<&ConfigResult>> = CONFIGS.iter().map(|c| r.config(c)).collect();
    let mut rows = Vec::new();
    let both = |f: &mut dyn FnMut(Option<&ConfigResult>) -> Value| -> [Value; 2] {
        [f(cfg[0]), f(cfg[1])]
    };
    rows.push(Row {
        metric: "boot to ready (ms, wall clock)".into(),
        values: both(&mut |c| match c.map(|c| &c.boot) {
            Some(Outcome::Measured(b)) => Value::Summary(b.wall_ms.clone()),
            Some(o) => Value::Missing(notes.mark(o)),
            None => Value::Missing("not run".into()),
        }),
    });
    let names: Vec<String> = r.parameters.modules.clone();
    for name in &names {
        rows.push(Row {
            metric: format!("load {name} (µs)"),
            values: both(&mut |c| {
                load_value(c, name, notes, |m| {
                    Some(Value::Summary(m.load.scaled(us, "us")))
                })
            }),
        });
        rows.push(Row {
            metric: format!("unload {name} (µs)"),
            values: both(&mut |c| {
                load_value(c, name, notes, |m| {
                    m.unload
                        .as_ref()
                        .map(|u| Value::Summary(u.scaled(us, "us")))
                })
            }),
        });
    }
    let series: Vec<(String, u32)> = cfg
        .iter()
        .flatten()
        .next()
        .map(|c| c.calls.iter().map(|x| (x.name.clone(), x.bytes)).collect())
        .unwrap_or_default();
    for (name, bytes) in &series {
        rows.push(Row {
            metric: format!("call {name} {bytes} B (cycles/call)"),
            values: both(&mut |c| {
                let Some(c) = c else {
                    return Value::Missing("not run".into());
                };
                match c
                    .calls
                    .iter()
                    .find(|x| &x.name == name && x.bytes == *bytes)
                {
                    Some(x) => match &x.outcome {
                        Outcome::Measured(m) => Value::Summary(m.per_call.clone()),
                        o => Value::Missing(notes.mark(o)),
                    },
                    None => Value::Missing("not run".into()),
                }
            }),
        });
    }
    for name in &names {
        rows.push(Row {
            metric: format!("footprint {name} (KiB)"),
            values: both(&mut |c| {
                load_value(c, name, notes, |m| {
                    Some(Value::Number(
                        m.footprint
                            .iter()
                            .map(|(_, f)| f.total_bytes())
                            .sum::<u64>() as f64
                            / 1024.0,
                    ))
                })
            }),
        });
    }
    rows.push(Row {
        metric: "privileged text: kernel .text (KiB)".into(),
        values: both(&mut |c| match c.and_then(|c| c.kernel.as_ref()) {
            Some(k) => Value::Number(k.image.text as f64 / 1024.0),
            None => Value::Missing("not run".into()),
        }),
    });
    rows
}

fn main_table(r: &Report, out: &mut String, notes: &mut Notes) {
    let _ = writeln!(
        out,
        "| metric | monolithic | microkernel | micro ÷ mono |\n|---|---|---|---|"
    );
    for row in main_rows(r, notes) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.metric,
            show(&row.values[0]),
            show(&row.values[1]),
            ratio(&row.values[0], &row.values[1])
        );
    }
}

fn header(r: &Report, out: &mut String) {
    let h = &r.host;
    let _ = writeln!(
        out,
        "- Host: {} ({} CPUs), Linux {}, **KVM flavour: {}** ({}), TSC {} kHz",
        h.cpu_model,
        h.cores,
        h.kernel_release,
        h.kvm_flavour,
        h.kvm_module.as_deref().unwrap_or("no KVM module found"),
        num(h.tsc_khz as f64)
    );
    let _ = writeln!(
        out,
        "- kmodlab {}, commit {}{}; run {}",
        r.kmodlab_version,
        r.git
            .commit
            .as_deref()
            .map_or("unknown", |c| &c[..c.len().min(12)]),
        match r.git.dirty {
            Some(true) => " (dirty tree)",
            Some(false) => "",
            None => " (dirty state unknown)",
        },
        r.created_utc
    );
    let _ = writeln!(out, "- Command: `{}`", r.invocation.join(" "));
    let l = &r.host.load_average;
    let _ = writeln!(
        out,
        "- Host load average (1/5/15 min): {:.2} / {:.2} / {:.2} at the start, {:.2} / {:.2} / {:.2} at the end",
        l.start[0], l.start[1], l.start[2], l.end[0], l.end[1], l.end[2]
    );
    let p = &r.parameters;
    let _ = writeln!(
        out,
        "- Parameters{}: {} boots; {} warm-up + {} timed load/unload rounds per module ({} for big, {} for the chain); {} samples of {} calls per call series",
        if p.quick { " (--quick)" } else { "" },
        p.boots,
        p.warmup,
        p.load_iterations,
        p.big_iterations,
        p.chain_iterations,
        p.call_samples,
        p.call_batch
    );
    if let Some(k) = &p.kpti {
        let _ = writeln!(
            out,
            "- Kernel/user page-table split (`--kpti {}`): {}",
            k.requested,
            if k.on {
                "on: guest user mode runs on page tables of its own, every crossing switches CR3"
            } else {
                "off: user mode shares the kernel's page tables"
            }
        );
    }
    let vulnerable: Vec<&String> = h
        .mitigations
        .iter()
        .filter(|(_, v)| v.starts_with("Vulnerable"))
        .map(|(k, _)| k)
        .collect();
    let _ = writeln!(
        out,
        "- CPU vulnerabilities: {} reported, {}",
        h.mitigations.len(),
        if vulnerable.is_empty() {
            "none unmitigated".to_string()
        } else {
            format!(
                "unmitigated: {}",
                vulnerable
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let _ = writeln!(
        out,
        "- Cells: median [first quartile – third quartile] of the samples in `report.json`."
    );
}

fn steps_table(r: &Report, out: &mut String) {
    let _ = writeln!(
        out,
        "Median cycles of each step of `init_module` (summed over the modules of a row), as the guest kernel records them (`LoadCycles`):\n"
    );
    let mut head = String::from("| row | configuration |");
    let mut rule = String::from("|---|---|");
    // The steps the report recorded (older kernels had fewer).
    let steps: Vec<String> = r
        .configurations
        .iter()
        .flat_map(|c| c.loads.iter())
        .find_map(|l| l.outcome.measured())
        .map(|m| m.steps.iter().map(|(s, _)| s.clone()).collect())
        .unwrap_or_default();
    for s in &steps {
        let _ = write!(head, " {s} |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{head} total |\n{rule}---|");
    for name in &r.parameters.modules {
        for c in CONFIGS {
            let Some(m) = r
                .config(c)
                .and_then(|c| c.loads.iter().find(|l| &l.name == name))
                .and_then(|l| l.outcome.measured())
            else {
                continue;
            };
            let mut line = format!("| {name} | {c} |");
            let mut total = 0.0;
            for (_, s) in &m.steps {
                total += s.median;
                let _ = write!(line, " {} |", num(s.median));
            }
            let _ = writeln!(out, "{line} {} |", num(total));
        }
    }
}

fn counts_table(r: &Report, out: &mut String) {
    let _ = writeln!(
        out,
        "Deterministic counts (the regression gate compares these exactly). Per load+unload round:\n"
    );
    let _ = writeln!(
        out,
        "| row | configuration | relocations | pages mapped | page-table pages | footprint (bytes) | system calls | IPC messages | VM exits |\n|---|---|---|---|---|---|---|---|---|"
    );
    for name in &r.parameters.modules {
        for c in CONFIGS {
            let Some(m) = r
                .config(c)
                .and_then(|c| c.loads.iter().find(|l| &l.name == name))
                .and_then(|l| l.outcome.measured())
            else {
                continue;
            };
            let pt: u64 = m.footprint.iter().map(|(_, f)| f.page_table_pages).sum();
            let total: u64 = m.footprint.iter().map(|(_, f)| f.total_bytes()).sum();
            let _ = writeln!(
                out,
                "| {name} | {c} | {} | {} | {pt} | {} | {} | {} | {} |",
                count(m.relocations as f64),
                m.pages,
                count(total as f64),
                count(m.per_round.syscalls),
                count(m.per_round.ipc_messages),
                count(m.per_round.vm_exits)
            );
        }
    }
    let _ = writeln!(out, "\nPer call between modules:\n");
    let _ = writeln!(
        out,
        "| series | bytes | configuration | system calls | IPC messages | IPC bytes | VM exits |\n|---|---|---|---|---|---|---|"
    );
    for c in CONFIGS {
        let Some(cr) = r.config(c) else { continue };
        for x in &cr.calls {
            if let Some(m) = x.outcome.measured() {
                let k = &m.per_call_counts;
                let _ = writeln!(
                    out,
                    "| {} | {} | {c} | {} | {} | {} | {} |",
                    x.name,
                    x.bytes,
                    count(k.syscalls),
                    count(k.ipc_messages),
                    count(k.ipc_bytes),
                    count(k.vm_exits)
                );
            }
        }
    }
}

fn footprint_table(r: &Report, out: &mut String) {
    let _ = writeln!(
        out,
        "Memory per loaded module, as each configuration's kernel accounts it (bytes; a 0 is measured):\n"
    );
    let _ = writeln!(
        out,
        "| module | configuration | section bytes | section pages | page-table pages | stacks | kernel objects | IPC buffers | heap | metadata | server runtime | total |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for c in CONFIGS {
        let Some(cr) = r.config(c) else { continue };
        let mut seen = std::collections::BTreeSet::new();
        for l in &cr.loads {
            let Some(m) = l.outcome.measured() else {
                continue;
            };
            for (module, f) in &m.footprint {
                if !seen.insert(module.clone()) {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "| {module} | {c} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    count(f.section_bytes as f64),
                    f.section_pages,
                    f.page_table_pages,
                    count(f.stack_bytes as f64),
                    count(f.kernel_object_bytes as f64),
                    count(f.ipc_buffer_bytes as f64),
                    count(f.heap_bytes as f64),
                    count(f.metadata_bytes as f64),
                    count(f.runtime_bytes as f64),
                    count(f.total_bytes() as f64)
                );
            }
        }
    }
}

fn fault_table(r: &Report, out: &mut String, notes: &mut Notes) {
    let _ = writeln!(
        out,
        "| configuration | trigger | kernel survived | what happened | recovery |\n|---|---|---|---|---|"
    );
    for c in CONFIGS {
        let Some(cr) = r.config(c) else { continue };
        match &cr.fault_isolation {
            Outcome::Measured(f) => {
                let _ = writeln!(
                    out,
                    "| {c} | {} | {} | {} | {} |",
                    f.trigger,
                    if f.kernel_survived { "yes" } else { "**no**" },
                    f.outcome.replace('|', "\\|"),
                    f.recovery_ms
                        .map_or("—".into(), |ms| format!("{} ms", num(ms)))
                );
            }
            o => {
                let _ = writeln!(out, "| {c} | faulty | {} | | |", notes.mark(o));
            }
        }
    }
}

/// The step of `init_module` whose medians differ most between the configurations, among
/// those that differ by more than a quarter (the same work in both, e.g. the signature check,
/// moves by less on a busy host, and naming it would explain noise).
fn largest_step_difference(mono: &LoadMeasurement, micro: &LoadMeasurement) -> Option<String> {
    let step = |m: &LoadMeasurement, name: &str| {
        m.steps
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, s)| s.median)
    };
    micro
        .steps
        .iter()
        .map(|(name, s)| (name, s.median, step(mono, name)))
        .filter(|(_, b, a)| (b - a).abs() > 0.25 * a.max(*b))
        .map(|(name, b, a)| (name, b - a))
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(name, d)| {
            format!(
                "{name} ({} {} cycles)",
                if d > 0.0 { "+" } else { "−" },
                count(d.abs())
            )
        })
}

/// The microkernel's half of the reading: every figure a ratio to the monolithic kernel's
/// from the same run.
fn micro_reading(mono: &ConfigResult, micro: &ConfigResult, us: f64, lines: &mut Vec<String>) {
    let load = |c: &ConfigResult, name: &str| {
        c.loads
            .iter()
            .find(|l| l.name == name)
            .and_then(|l| l.outcome.measured())
            .cloned()
    };
    if let (Some(a), Some(b)) = (mono.boot.measured(), micro.boot.measured())
        && b.wall_ms.median > 2.0 * a.wall_ms.median
    {
        lines.push(format!(
            "The microkernel boots to ready in {} ms against {} ms: its kernel reaches the same point as fast, then starts the module manager, a user task: its image, stack and page tables are mapped, its heap's first pages, then its first system calls and IPC. On kvm_pvm each first touch of a page and each user↔kernel crossing is a trip through the hypervisor; on hardware KVM they are not. (The manager's heap grows on demand; a 32 MiB heap array in its `.bss`, mapped and zeroed before it ran, made this boot 77 ms on kvm_pvm at commit efe98e5.)",
            num(b.wall_ms.median),
            num(a.wall_ms.median)
        ));
    }
    let mut rows = Vec::new();
    let mut steps = Vec::new();
    for l in &mono.loads {
        if let (Some(a), Some(b)) = (load(mono, &l.name), load(micro, &l.name))
            && a.load.median > 0.0
        {
            rows.push(format!(
                "{} {} µs ({:.2}×)",
                l.name,
                num(b.load.median * us),
                b.load.median / a.load.median
            ));
            if let Some(d) = largest_step_difference(&a, &b) {
                steps.push(format!("{}: {d}", l.name));
            }
        }
    }
    if !rows.is_empty() {
        lines.push(format!(
            "In the microkernel the same files load into their own servers (the module manager validates, lays out, relocates and starts them in user mode): {}. The step that differs most from the monolithic kernel, per row: {}.",
            rows.join(", "),
            steps.join("; ")
        ));
    }
    let call = |c: &ConfigResult, name: &str, bytes: u32| {
        c.calls
            .iter()
            .find(|x| x.name == name && x.bytes == bytes)
            .and_then(|x| x.outcome.measured())
            .cloned()
    };
    let mut calls = Vec::new();
    for (name, bytes) in [
        ("crc32_compute", 0),
        ("crc32-service", 0),
        ("crc32-service", 4096),
        ("kvstore-chain", 64),
    ] {
        if let (Some(a), Some(b)) = (call(mono, name, bytes), call(micro, name, bytes))
            && a.per_call.median > 0.0
        {
            calls.push(format!(
                "{name} {bytes} B {} cycles ({}×; {} system calls and {} IPC messages per call)",
                num(b.per_call.median),
                num(b.per_call.median / a.per_call.median),
                count(b.per_call_counts.syscalls),
                count(b.per_call_counts.ipc_messages)
            ));
        }
    }
    if !calls.is_empty() {
        lines.push(format!(
            "A call between modules becomes IPC between their servers: {}. The ratio is largest for empty requests, where the direct call costs almost nothing, and falls as the work per call grows.",
            calls.join(", ")
        ));
    }
    let footprint = |c: &ConfigResult, name: &str| {
        load(c, name).and_then(|m| {
            m.footprint
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, f)| f.total_bytes())
        })
    };
    if let (Some(a), Some(b)) = (footprint(mono, "hello"), footprint(micro, "hello"))
        && a > 0
    {
        lines.push(format!(
            "A module server costs memory a module in the kernel does not: hello takes {} KiB in its server against {} KiB in the kernel ({:.1}×) — its own stack, page tables, heap arena, IPC buffer and copy of the server runtime (see the footprint table).",
            num(b as f64 / 1024.0),
            num(a as f64 / 1024.0),
            b as f64 / a as f64
        ));
    }
    if let Outcome::Measured(f) = &micro.fault_isolation
        && f.kernel_survived
    {
        lines.push(format!(
            "A fault in a module's server is contained: {}; the kernel and the other servers keep running{}.",
            f.outcome,
            f.recovery_ms.map_or(String::new(), |ms| format!(
                ", and unloading the faulted module, loading it again and its service's first answer took {} ms",
                num(ms)
            ))
        ));
    }
    if let (Some(a), Some(b)) = (&mono.kernel, &micro.kernel)
        && a.image.text > 0
    {
        lines.push(format!(
            "Privileged code: the microkernel's .text is {} KiB against the monolithic kernel's {} KiB ({:.2}×); the loader, module list and symbol table are not in it.",
            num(b.image.text as f64 / 1024.0),
            num(a.image.text as f64 / 1024.0),
            b.image.text as f64 / a.image.text as f64
        ));
    }
}

fn reading(r: &Report, out: &mut String) {
    let us = r.us_per_cycle();
    let mono = r.config("monolithic");
    let micro = r.config("microkernel");
    let measured = |c: Option<&ConfigResult>| {
        c.is_some_and(|c| c.loads.iter().any(|l| l.outcome.measured().is_some()))
    };
    let mut lines: Vec<String> = Vec::new();
    if let Some(m) = mono {
        let load = |name: &str| {
            m.loads
                .iter()
                .find(|l| l.name == name)
                .and_then(|l| l.outcome.measured())
        };
        if let (Some(h), Some(b)) = (load("hello"), load("big")) {
            let share = |lm: &LoadMeasurement, steps: &[&str]| {
                let total: f64 = lm.steps.iter().map(|(_, s)| s.median).sum();
                let part: f64 = lm
                    .steps
                    .iter()
                    .filter(|(n, _)| steps.contains(&n.as_str()))
                    .map(|(_, s)| s.median)
                    .sum();
                if total > 0.0 {
                    100.0 * part / total
                } else {
                    0.0
                }
            };
            lines.push(format!(
                "In the monolithic kernel a small module (hello, {} relocations) loads in {} µs, and {:.0} % of that is page-table work (allocate + protect); the {}-relocation big module takes {} ms, {:.0} % of it copying the image and applying relocations (copy + relocate).",
                h.relocations,
                num(h.load.median * us),
                share(h, &["allocate", "protect"]),
                count(b.relocations as f64),
                num(b.load.median * us / 1000.0),
                share(b, &["copy", "relocate"]),
            ));
            if let Some(rel) = b.steps.iter().find(|(n, _)| n == "relocate")
                && rel.1.median > 0.0
            {
                lines.push(format!(
                    "Relocation runs at {} relocations per second inside the guest ({:.0} cycles each).",
                    num(b.relocations as f64 / (rel.1.median * us / 1e6)),
                    rel.1.median / b.relocations.max(1) as f64
                ));
            }
        }
        let call = |name: &str, bytes: u32| {
            m.calls
                .iter()
                .find(|c| c.name == name && c.bytes == bytes)
                .and_then(|c| c.outcome.measured())
        };
        if let (Some(e), Some(s)) = (call("crc32_compute", 0), call("crc32-service", 0)) {
            lines.push(format!(
                "A direct call of another module's export (crc32_compute, 0 bytes) costs {} cycles and the same work through the service registry {} cycles, with no system call, IPC message or VM exit: the base the microkernel's IPC adds to.",
                num(e.per_call.median),
                num(s.per_call.median),
            ));
        }
        if let Some(c) = call("kvstore-chain", 64) {
            lines.push(format!(
                "The three-hop chain (a get from the kvstore service, which calls ramblk_read and crc32_compute; a 64-byte value) costs {} cycles per call.",
                num(c.per_call.median)
            ));
        }
        if let Outcome::Measured(f) = &m.fault_isolation
            && !f.kernel_survived
        {
            lines.push(format!(
                "A fault in a module's code takes the monolithic kernel down: {}.",
                f.outcome
            ));
        }
    }
    if let (Some(m), Some(k)) = (mono, micro)
        && measured(mono)
        && measured(micro)
    {
        micro_reading(m, k, us, &mut lines);
    }
    if measured(mono) && !measured(micro) {
        lines.push(
            "The microkernel column is empty because this build's microkernel configuration cannot load modules yet: every cell carries the guest's own error. The ratios fill in when it can, from the same run."
                .into(),
        );
    }
    if r.host.kvm_flavour == "pvm" {
        lines.push(
            "**KVM flavour caveat (kvm_pvm).** On this host every crossing between guest user and supervisor mode and every exit to the VMM costs far more than on hardware KVM (a null system call round trip takes 7,000–120,000 cycles here against ~100–200 ns natively), so the microkernel configuration, which crosses more often, is penalised more here than it would be on VMX/SVM hardware; page-table writes and `invlpg` also trap, which inflates the allocate, protect and copy steps. Guest user mode runs on page tables of its own on kvm_pvm (the kernel's default `kpti` there; without it, user mode could read and write what the kernel touched), which adds two CR3 switches to every crossing. Compare ratios across hosts only within one KVM flavour."
                .into(),
        );
    } else {
        lines.push(
            "Hardware KVM: privilege crossings and page-table updates run at native cost; do not compare these figures with kvm_pvm runs except as ratios, and then say so."
                .into(),
        );
    }
    let l = r.host.load_average.start[0].max(r.host.load_average.end[0]);
    if l > r.host.cores as f64 {
        lines.push(format!(
            "The host was busy during this run (load average up to {l:.1} on {} CPUs): timings carry that noise (see the quartiles); the counts do not.",
            r.host.cores
        ));
    }
    for l in lines {
        let _ = writeln!(out, "- {l}");
    }
}

/// `REPORT.md` of one run.
pub fn report(r: &Report, figures: &Figures) -> String {
    let mut out = String::new();
    let mut notes = Notes::default();
    let _ = writeln!(
        out,
        "# kmodlab compare: monolithic vs microkernel ({} KVM, {})\n",
        r.host.kvm_flavour, r.host.cpu_model
    );
    header(r, &mut out);
    let _ = writeln!(out, "\n## Main table\n");
    main_table(r, &mut out, &mut notes);
    let _ = writeln!(out, "\n## Reading the numbers\n");
    reading(r, &mut out);
    let _ = writeln!(out, "\n## Load steps\n");
    steps_table(r, &mut out);
    let _ = writeln!(out, "\n## Counts per operation\n");
    counts_table(r, &mut out);
    let _ = writeln!(out, "\n## Footprint\n");
    footprint_table(r, &mut out);
    let _ = writeln!(out, "\n## Fault isolation\n");
    fault_table(r, &mut out, &mut notes);
    if !figures.files.is_empty() {
        let _ = writeln!(out, "\n## Figures\n");
        for (title, file) in &figures.files {
            let _ = writeln!(out, "![{title}]({file})\n");
        }
    }
    if !notes.notes.is_empty() {
        let _ = writeln!(out, "\n## Notes\n");
        notes.render(&mut out);
    }
    out
}

/// One table of several runs (hosts), hardware KVM and kvm_pvm side by side in separate
/// columns; figures are drawn per flavour.
pub fn cross_host(reports: &[Report], figures: &Figures) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# kmodlab compare: {} runs across hosts\n",
        reports.len()
    );
    let mut order: Vec<&Report> = reports.iter().collect();
    order.sort_by(|a, b| a.host.kvm_flavour.cmp(&b.host.kvm_flavour));
    let _ = writeln!(
        out,
        "| run | host | KVM flavour | commit | date |\n|---|---|---|---|---|"
    );
    for (i, r) in order.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} ({} CPUs) | {} | {} | {} |",
            i + 1,
            r.host.cpu_model,
            r.host.cores,
            r.host.kvm_flavour,
            r.git
                .commit
                .as_deref()
                .map_or("unknown", |c| &c[..c.len().min(12)]),
            r.created_utc
        );
    }
    let _ = writeln!(
        out,
        "\nMedians per run and configuration (mono / micro / micro ÷ mono of the same run). Flavours differ in what a privilege crossing costs: compare ratios within a flavour.\n"
    );
    let mut notes = Notes::default();
    let per_run: Vec<Vec<Row>> = order.iter().map(|r| main_rows(r, &mut notes)).collect();
    let mut metrics: Vec<String> = Vec::new();
    for rows in &per_run {
        for row in rows {
            if !metrics.contains(&row.metric) {
                metrics.push(row.metric.clone());
            }
        }
    }
    let mut head = String::from("| metric |");
    let mut rule = String::from("|---|");
    for (i, r) in order.iter().enumerate() {
        let _ = write!(head, " run {} ({}) |", i + 1, r.host.kvm_flavour);
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for metric in &metrics {
        let mut line = format!("| {metric} |");
        for rows in &per_run {
            match rows.iter().find(|r| &r.metric == metric) {
                Some(row) => {
                    let short = |v: &Value| match v {
                        Value::Summary(s) => num(s.median),
                        Value::Number(n) => num(*n),
                        Value::Missing(_) => "—".into(),
                    };
                    let _ = write!(
                        line,
                        " {} / {} / {} |",
                        short(&row.values[0]),
                        short(&row.values[1]),
                        ratio(&row.values[0], &row.values[1])
                    );
                }
                None => line.push_str(" — |"),
            }
        }
        let _ = writeln!(out, "{line}");
    }
    if !figures.files.is_empty() {
        let _ = writeln!(out, "\n## Figures (one set per KVM flavour)\n");
        for (title, file) in &figures.files {
            let _ = writeln!(out, "![{title}]({file})\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_grouped() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(4.256), "4.26");
        assert_eq!(num(42.25), "42.2");
        assert_eq!(num(1234.4), "1,234");
        assert_eq!(num(-1_234_567.0), "-1,234,567");
        assert_eq!(num(100.0), "100");
        assert_eq!(num(f64::NAN), "—");
        assert_eq!(count(13.0), "13");
        assert_eq!(count(112_789.0), "112,789");
        assert_eq!(count(0.5), "0.50");
    }
}
