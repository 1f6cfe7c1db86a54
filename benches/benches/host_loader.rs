//! The host loader pipeline (`kmod-loader`), step by step and whole, in relocations per
//! second (`Throughput::Elements(relocations)`).
//!
//! ```text
//! cargo bench -p kmodlab-benches --bench host_loader
//! KMOD_LOADER_MODULE_DIR=/lib/modules/$(uname -r) cargo bench -p kmodlab-benches --bench host_loader
//! ```
//!
//! Module sets, each a benchmark group:
//! - `kmodlab`: kmodlab's own modules, from `target/guest/modules-example/modules/` when
//!   `cargo run --release -p kmodlab-build --example build-modules` has built them, else the
//!   copies committed in `crates/kmod-tools/tests/fixtures/kmodlab/`;
//! - `linux`: the Debian Linux modules committed in `crates/kmod-loader/tests/fixtures/linux/`;
//! - `tree`, only with `KMOD_LOADER_MODULE_DIR`: every `.ko` under that directory (a
//!   `/lib/modules/VERSION` or an unpacked `linux-image-*` package). For one figure per step
//!   on a whole tree without Criterion, the throughput example prints nanoseconds per
//!   relocation: `cargo run --release -p kmod-loader --example throughput -- DIR`.
//!
//! In each group, one benchmark per step (`validate`, `layout`, `resolve`, `copy`,
//! `relocate`) runs that step over every module of the set, with the earlier steps' results
//! prepared outside the timing, and `whole` runs all five per module. Steps use one
//! [`Loader`] (tables kept between modules) and one reused memory buffer per region, as a
//! kernel loading module after module would. Undefined symbols resolve through an
//! [`ExportTable`] that holds every name the set leaves undefined, at stand-in kernel
//! addresses.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kmod_loader::{
    ExportTable, Layout, Loader, Module, ProviderId, RegionMemory, Regions, Resolution,
    copy_sections,
};

const CORE_BASE: u64 = 0xffff_ffff_c000_0000;
const INIT_BASE: u64 = 0xffff_ffff_c800_0000;
const KERNEL_BASE: u64 = 0xffff_ffff_8100_0000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is inside the workspace")
        .to_path_buf()
}

/// Every `.ko` under `dir`, sorted, read into memory.
fn modules_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut paths = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "ko") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), data)
        })
        .collect()
}

/// A stand-in kernel address for `name` (FNV-1a into 16 MiB, 16-byte aligned).
fn kernel_address(name: &str) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    KERNEL_BASE + (hash % (16 << 20)) / 16 * 16
}

/// A module set, its stand-in kernel and the region memory big enough for any of its modules.
struct Set {
    files: Vec<(String, Vec<u8>)>,
    kernel: ExportTable,
    relocations: u64,
    core: Vec<u8>,
    init: Vec<u8>,
}

impl Set {
    fn new(files: Vec<(String, Vec<u8>)>) -> Self {
        let mut kernel = ExportTable::new();
        let (mut relocations, mut core, mut init) = (0, 0, 0);
        let mut loader = Loader::new();
        for (name, data) in &files {
            let module = loader
                .validate(data)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let layout = loader
                .layout(&module)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            for &index in module.undefined_symbols() {
                let name = module.symbol(index).and_then(|s| s.name()).unwrap_or("");
                if !name.is_empty() && name != "_GLOBAL_OFFSET_TABLE_" && kernel.get(name).is_none()
                {
                    kernel
                        .insert(name, kernel_address(name), ProviderId(0))
                        .expect("a new name");
                }
            }
            relocations += module.counts().relocation_entries();
            core = core.max(layout.core.size as usize);
            init = init.max(layout.init.size as usize);
        }
        Self {
            files,
            kernel,
            relocations,
            core: vec![0; core],
            init: vec![0; init],
        }
    }

    fn regions(&mut self) -> Regions<'_> {
        Regions {
            core: RegionMemory {
                base: CORE_BASE,
                bytes: &mut self.core,
            },
            init: RegionMemory {
                base: INIT_BASE,
                bytes: &mut self.init,
            },
        }
    }
}

/// Each module's validated, laid-out and resolved state, for the later steps' benchmarks.
fn prepared<'a>(
    files: &'a [(String, Vec<u8>)],
    kernel: &ExportTable,
) -> Vec<(Module<'a>, Layout, Resolution)> {
    let mut loader = Loader::new();
    files
        .iter()
        .map(|(name, data)| {
            let module = loader.validate(data).expect(name);
            let layout = loader.layout(&module).expect(name);
            let resolution = loader.resolve(&module, kernel).expect(name);
            (module, layout, resolution)
        })
        .collect()
}

fn bench_set(c: &mut Criterion, group_name: &str, files: Vec<(String, Vec<u8>)>) {
    if files.is_empty() {
        eprintln!("host_loader: no modules for {group_name}, skipped");
        return;
    }
    let mut set = Set::new(files);
    let files = std::mem::take(&mut set.files);
    let kernel = std::mem::take(&mut set.kernel);
    let mut group = c.benchmark_group(format!("host_loader/{group_name}"));
    group.throughput(Throughput::Elements(set.relocations));
    let id = |step: &str| BenchmarkId::new(step, format!("{} modules", files.len()));

    let mut loader = Loader::new();
    group.bench_function(id("validate"), |b| {
        b.iter(|| {
            for (_, data) in &files {
                let module = loader.validate(black_box(data)).expect("validates");
                black_box(module.counts());
                loader.recycle_module(module);
            }
        })
    });

    let state = prepared(&files, &kernel);
    group.bench_function(id("layout"), |b| {
        b.iter(|| {
            for (module, _, _) in &state {
                let layout = loader.layout(black_box(module)).expect("lays out");
                black_box(layout.core.size);
                loader.recycle_layout(layout);
            }
        })
    });
    group.bench_function(id("resolve"), |b| {
        b.iter(|| {
            for (module, _, _) in &state {
                let resolution = loader
                    .resolve(black_box(module), &kernel)
                    .expect("resolves");
                black_box(resolution.counts());
                loader.recycle_resolution(resolution);
            }
        })
    });
    group.bench_function(id("copy"), |b| {
        b.iter(|| {
            for (module, layout, _) in &state {
                let mut regions = set.regions();
                black_box(copy_sections(module, layout, &mut regions).expect("copies"));
            }
        })
    });
    group.bench_function(id("relocate"), |b| {
        // Relocation rewrites the same fields each time: the copied contents stay valid
        // input, but only the last module's copy is in the buffer, so copy each first and
        // time relocation alone.
        b.iter_custom(|iterations| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iterations {
                for (module, layout, resolution) in &state {
                    let mut regions = set.regions();
                    copy_sections(module, layout, &mut regions).expect("copies");
                    let start = std::time::Instant::now();
                    let counts = loader
                        .relocate(module, layout, resolution, &mut regions)
                        .expect("relocates");
                    total += start.elapsed();
                    black_box(counts);
                }
            }
            total
        })
    });
    drop(state);

    group.bench_function(id("whole"), |b| {
        b.iter(|| {
            for (_, data) in &files {
                let module = loader.validate(black_box(data)).expect("validates");
                let layout = loader.layout(&module).expect("lays out");
                let resolution = loader.resolve(&module, &kernel).expect("resolves");
                let mut regions = set.regions();
                copy_sections(&module, &layout, &mut regions).expect("copies");
                let counts = loader
                    .relocate(&module, &layout, &resolution, &mut regions)
                    .expect("relocates");
                black_box(counts);
                loader.recycle(module, layout, resolution);
            }
        })
    });
    group.finish();
}

fn host_loader(c: &mut Criterion) {
    let root = workspace();
    let built = root.join("target/guest/modules-example/modules");
    let kmodlab = if built.is_dir() {
        built
    } else {
        root.join("crates/kmod-tools/tests/fixtures/kmodlab")
    };
    bench_set(c, "kmodlab", modules_in(&kmodlab));
    bench_set(
        c,
        "linux",
        modules_in(&root.join("crates/kmod-loader/tests/fixtures/linux")),
    );
    if let Some(dir) = std::env::var_os("KMOD_LOADER_MODULE_DIR") {
        bench_set(c, "tree", modules_in(Path::new(&dir)));
    }
}

criterion_group!(benches, host_loader);
criterion_main!(benches);
