//! The figures of a report, as SVG (plotters): load latency per module, per-step stacked
//! bars, call cost against request size, footprint per module. Several reports (hosts) are
//! drawn per KVM flavour, never mixed in one figure.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::CompareError;
use super::markdown::num;
use super::report::Report;
use super::run::STEPS;

/// The figures written: (title, file name relative to the report directory).
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// In order.
    pub files: Vec<(String, String)>,
}

const CONFIGS: [&str; 2] = ["monolithic", "microkernel"];
const WIDTH: u32 = 960;
const HEIGHT: u32 = 540;

fn config_color(i: usize) -> RGBColor {
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14)][i % 2]
}

/// Distinct colours for stacked parts (steps, footprint kinds).
fn part_color(i: usize) -> RGBColor {
    const P: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> CompareError {
    CompareError::Plot {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The name at integer position `x`, or nothing between positions.
fn label_at(names: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    names.get(i as usize).cloned().unwrap_or_default()
}

/// Powers of ten spanning `[lo, hi]` for a log axis.
fn log_range(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let lo = if lo > 0.0 { lo } else { 1.0 };
    let hi = hi.max(lo * 10.0);
    10f64.powf(lo.log10().floor())..10f64.powf(hi.log10().ceil())
}

/// A bar group series: for each entry (one per host and configuration), the medians and
/// quartiles per category.
struct Bars {
    label: String,
    values: Vec<Option<(f64, f64, f64)>>,
}

fn grouped_log_bars(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    y_desc: &str,
    categories: &[String],
    bars: &[Bars],
) -> Result<(), String> {
    let all: Vec<f64> = bars
        .iter()
        .flat_map(|b| b.values.iter().flatten().flat_map(|v| [v.0, v.1, v.2]))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    let y = if all.is_empty() {
        1.0..10.0
    } else {
        log_range(lo, hi)
    };
    let n = categories.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y.clone().log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| label_at(categories, *x))
        .y_label_formatter(&|y| num(*y))
        .y_desc(y_desc)
        .x_desc("module")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let k = bars.len().max(1) as f64;
    let width = 0.8 / k;
    for (bi, b) in bars.iter().enumerate() {
        let color = config_color(bi);
        let offset = -0.4 + width * bi as f64;
        let rects: Vec<_> = b
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .map(|(i, (median, _, _))| {
                let x0 = i as f64 + offset;
                Rectangle::new([(x0, y.start), (x0 + width * 0.9, median)], color.filled())
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(|e| e.to_string())?
            .label(b.label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let whiskers: Vec<_> = b
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .map(|(i, (median, q1, q3))| {
                let x = i as f64 + offset + width * 0.45;
                ErrorBar::new_vertical(x, q1.max(y.start), median, q3, BLACK.stroke_width(1), 6)
            })
            .collect();
        chart.draw_series(whiskers).map_err(|e| e.to_string())?;
        let missing: Vec<_> = b
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_none())
            .map(|(i, _)| {
                Text::new(
                    "n/a",
                    (i as f64 + offset + width * 0.1, y.start * 1.3),
                    ("sans-serif", 13),
                )
            })
            .collect();
        chart.draw_series(missing).map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A series' legend label: the configuration, and with `many` the host and flavour.
fn series_label(r: &Report, config: &str, many: bool) -> String {
    if many {
        format!("{config} — {} ({})", r.host.cpu_short, r.host.kvm_flavour)
    } else {
        config.to_owned()
    }
}

fn load_latency(path: &Path, reports: &[&Report], with_host: bool) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let categories = reports[0].parameters.modules.clone();
    let many = with_host;
    let mut bars = Vec::new();
    for r in reports {
        let us = r.us_per_cycle();
        for c in CONFIGS {
            let Some(cr) = r.config(c) else { continue };
            bars.push(Bars {
                label: series_label(r, c, many),
                values: categories
                    .iter()
                    .map(|name| {
                        let m = cr
                            .loads
                            .iter()
                            .find(|l| &l.name == name)?
                            .outcome
                            .measured()?;
                        Some((m.load.median * us, m.load.q1 * us, m.load.q3 * us))
                    })
                    .collect(),
            });
        }
    }
    grouped_log_bars(
        &root,
        &format!(
            "Module load latency, insmod → LIVE ({} KVM)",
            reports[0].host.kvm_flavour
        ),
        "load time (µs, log scale; bar: median, whisker: quartiles)",
        &categories,
        &bars,
    )?;
    root.present().map_err(|e| e.to_string())
}

/// One panel per row, each with a stacked bar per configuration (its own y scale, so that
/// small and large modules are both legible), and one legend of the parts.
fn stacked_panels(
    path: &Path,
    title: &str,
    y_desc: &str,
    rows: &[String],
    stacks: &[[Option<Vec<f64>>; 2]],
    parts: &[&str],
) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (title_area, rest) = root.split_vertically(40);
    title_area
        .titled(title, ("sans-serif", 22))
        .map_err(|e| e.to_string())?;
    let (panels_area, legend_area) = rest.split_vertically(HEIGHT - 40 - 60);
    let panels = panels_area.split_evenly((1, rows.len().max(1)));
    let configs: Vec<String> = CONFIGS.iter().map(|s| s.to_string()).collect();
    for ((panel, name), pair) in panels.iter().zip(rows).zip(stacks) {
        let top = pair
            .iter()
            .flatten()
            .map(|v| v.iter().sum::<f64>())
            .fold(0.0, f64::max)
            .max(1e-3)
            * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(name, ("sans-serif", 16))
            .margin(6)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..1.5, 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(2)
            .x_label_formatter(&|x| {
                label_at(&configs, *x)
                    .replace("monolithic", "mono")
                    .replace("microkernel", "micro")
            })
            .y_labels(5)
            .y_label_formatter(&|y| num(*y))
            .y_desc(y_desc)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        for (ci, stack) in pair.iter().enumerate() {
            let Some(stack) = stack else {
                chart
                    .draw_series(std::iter::once(Text::new(
                        "n/a",
                        (ci as f64 - 0.2, top * 0.05),
                        ("sans-serif", 13),
                    )))
                    .map_err(|e| e.to_string())?;
                continue;
            };
            let mut base = 0.0;
            let mut rects = Vec::new();
            for (si, v) in stack.iter().enumerate() {
                rects.push(Rectangle::new(
                    [(ci as f64 - 0.3, base), (ci as f64 + 0.3, base + v)],
                    part_color(si).filled(),
                ));
                base += v;
            }
            chart.draw_series(rects).map_err(|e| e.to_string())?;
        }
    }
    let cell = (WIDTH - 40) / parts.len().max(1) as u32;
    for (i, part) in parts.iter().enumerate() {
        let x = 20 + i as i32 * cell as i32;
        legend_area
            .draw(&Rectangle::new(
                [(x, 20), (x + 14, 34)],
                part_color(i).filled(),
            ))
            .map_err(|e| e.to_string())?;
        legend_area
            .draw(&Text::new(*part, (x + 18, 20), ("sans-serif", 14)))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

fn load_steps(path: &Path, r: &Report) -> Result<(), String> {
    let us = r.us_per_cycle();
    let rows = &r.parameters.modules;
    let stacks: Vec<[Option<Vec<f64>>; 2]> = rows
        .iter()
        .map(|name| {
            CONFIGS.map(|c| {
                let m = r
                    .config(c)?
                    .loads
                    .iter()
                    .find(|l| &l.name == name)?
                    .outcome
                    .measured()?;
                Some(m.steps.iter().map(|(_, s)| s.median * us).collect())
            })
        })
        .collect();
    // The steps the report recorded (older kernels had fewer).
    let steps: Vec<&str> = r
        .configurations
        .iter()
        .flat_map(|c| c.loads.iter())
        .find_map(|l| l.outcome.measured())
        .map(|m| m.steps.iter().map(|(s, _)| s.as_str()).collect())
        .unwrap_or_else(|| STEPS.to_vec());
    stacked_panels(
        path,
        &format!(
            "Where a load's time goes: median µs per step ({} KVM)",
            r.host.kvm_flavour
        ),
        "µs",
        rows,
        &stacks,
        &steps,
    )
}

fn call_cost(path: &Path, reports: &[&Report], with_host: bool) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let many = with_host;
    // Sizes on a categorical axis: 0 B cannot sit on a log axis.
    let mut sizes: Vec<u32> = reports
        .iter()
        .flat_map(|r| r.configurations.iter())
        .flat_map(|c| c.calls.iter().map(|x| x.bytes))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let names: Vec<String> = sizes.iter().map(|b| format!("{b} B")).collect();
    // (label, series index for the colour, dashed, points)
    type Line = (String, usize, bool, Vec<(f64, f64)>);
    let mut lines: Vec<Line> = Vec::new();
    for r in reports {
        for (ci, c) in CONFIGS.iter().enumerate() {
            let Some(cr) = r.config(c) else { continue };
            let mut series: Vec<String> = cr.calls.iter().map(|x| x.name.clone()).collect();
            series.dedup();
            for (si, s) in series.iter().enumerate() {
                let points: Vec<(f64, f64)> = cr
                    .calls
                    .iter()
                    .filter(|x| &x.name == s)
                    .filter_map(|x| {
                        let m = x.outcome.measured()?;
                        let i = sizes.iter().position(|b| *b == x.bytes)?;
                        Some((i as f64, m.per_call.median))
                    })
                    .collect();
                if !points.is_empty() {
                    let label = format!("{s} — {}", series_label(r, c, many));
                    lines.push((label, si, ci == 1, points));
                }
            }
        }
    }
    let all: Vec<f64> = lines.iter().flat_map(|l| l.3.iter().map(|p| p.1)).collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    let y = if all.is_empty() {
        1.0..10.0
    } else {
        log_range(lo, hi)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Cost of a call between modules vs request size ({} KVM)",
                reports[0].host.kvm_flavour
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.3f64..(sizes.len() as f64 - 0.7), y.log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_labels(sizes.len().max(1))
        .x_label_formatter(&|x| label_at(&names, *x))
        .y_label_formatter(&|y| num(*y))
        .x_desc("request (value) size")
        .y_desc("cycles per call (median, log scale)")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (label, si, dashed, points) in lines {
        let color = part_color(si);
        let style = if dashed {
            color.stroke_width(2)
        } else {
            color.stroke_width(3)
        };
        let drawn = if dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), 8, 5, style))
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))
        };
        drawn
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        if dashed {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|p| TriangleMarker::new(*p, 7, color.filled())),
                )
                .map_err(|e| e.to_string())?;
        } else {
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 5, color.filled())))
                .map_err(|e| e.to_string())?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

const FOOTPRINT_KINDS: [&str; 7] = [
    "sections (pages)",
    "page tables",
    "stacks",
    "kernel objects",
    "IPC buffers",
    "heap",
    "metadata",
];

fn footprint(path: &Path, r: &Report) -> Result<(), String> {
    let rows = &r.parameters.modules;
    let page = kmodlab_abi::layout::PAGE_SIZE as f64;
    let stacks: Vec<[Option<Vec<f64>>; 2]> = rows
        .iter()
        .map(|name| {
            CONFIGS.map(|c| {
                let m = r
                    .config(c)?
                    .loads
                    .iter()
                    .find(|l| &l.name == name)?
                    .outcome
                    .measured()?;
                let mut k = vec![0.0; FOOTPRINT_KINDS.len()];
                for (_, f) in &m.footprint {
                    let parts = [
                        f.section_pages as f64 * page,
                        f.page_table_pages as f64 * page,
                        f.stack_bytes as f64,
                        f.kernel_object_bytes as f64,
                        f.ipc_buffer_bytes as f64,
                        f.heap_bytes as f64,
                        f.metadata_bytes as f64,
                    ];
                    for (slot, v) in k.iter_mut().zip(parts) {
                        *slot += v / 1024.0;
                    }
                }
                Some(k)
            })
        })
        .collect();
    stacked_panels(
        path,
        &format!(
            "Memory per loaded module (row), KiB by kind ({} KVM)",
            r.host.kvm_flavour
        ),
        "KiB",
        rows,
        &stacks,
        &FOOTPRINT_KINDS,
    )
}

/// Draws every figure of `reports` into `dir`. One report: its four figures. Several: per
/// KVM flavour, load latency and call cost with one series per host and configuration.
pub fn render_all(dir: &Path, reports: &[Report]) -> Result<Figures, CompareError> {
    let mut figures = Figures::default();
    let mut add = |title: String, file: String, f: &dyn Fn(&Path) -> Result<(), String>| {
        let path = dir.join(&file);
        f(&path).map_err(|e| plot_error(&path, e))?;
        figures.files.push((title, file));
        Ok::<(), CompareError>(())
    };
    if let [r] = reports {
        add(
            "Load latency per module".into(),
            "load-latency.svg".into(),
            &|p| load_latency(p, &[r], false),
        )?;
        add("Load steps".into(), "load-steps.svg".into(), &|p| {
            load_steps(p, r)
        })?;
        add(
            "Call cost vs request size".into(),
            "call-cost.svg".into(),
            &|p| call_cost(p, &[r], false),
        )?;
        add(
            "Footprint per module".into(),
            "footprint.svg".into(),
            &|p| footprint(p, r),
        )?;
    } else {
        let mut flavours: Vec<&str> = reports
            .iter()
            .map(|r| r.host.kvm_flavour.as_str())
            .collect();
        flavours.sort_unstable();
        flavours.dedup();
        for flavour in flavours {
            let group: Vec<&Report> = reports
                .iter()
                .filter(|r| r.host.kvm_flavour == flavour)
                .collect();
            add(
                format!("Load latency per module, {flavour} hosts"),
                format!("load-latency-{flavour}.svg"),
                &|p| load_latency(p, &group, true),
            )?;
            add(
                format!("Call cost vs request size, {flavour} hosts"),
                format!("call-cost-{flavour}.svg"),
                &|p| call_cost(p, &group, true),
            )?;
        }
    }
    Ok(figures)
}
