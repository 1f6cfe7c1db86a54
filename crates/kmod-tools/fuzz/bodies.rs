//! The bodies of the host tools' fuzz targets, shared by `fuzz_targets/*.rs` (cargo-fuzz,
//! nightly) and `tests/fuzz_corpus.rs`, which replays the committed corpus on stable. Each
//! runs everything the tools do with bytes from a file; any panic is a bug.

use std::path::Path;
use std::sync::OnceLock;

use kmod_tools::ModuleFile;
use kmod_tools::depmod::{self, Entry, KernelExports};
use kmod_tools::objstat::ObjStat;

/// The decompressed-size cap under fuzzing: small, so that bombs fail fast and cheaply.
pub const FUZZ_LIMIT: u64 = 16 << 20;

/// Counts what is written and keeps nothing.
struct Sink;

impl std::fmt::Write for Sink {
    fn write_str(&mut self, _: &str) -> std::fmt::Result {
        Ok(())
    }
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn render_modinfo(
    modinfo: &[(String, String)],
    signature: Option<&kmod_tools::modinfo::SignatureInfo>,
) {
    for field in [None, Some("license"), Some("parm"), Some("filename")] {
        let _ = kmod_tools::modinfo::render(modinfo, signature, "f.ko", field, '\n');
    }
    let _ = kmod_tools::modinfo::render(modinfo, signature, "f.ko", None, '\0');
}

/// A module file as `modinfo`, `depmod` and `objstat` read it: decompression (by magic),
/// ELF checks, `.modinfo`, symbols, section statistics and both report formats.
pub fn module_file(data: &[u8]) {
    let path = Path::new("fuzz.ko");
    let Ok(bytes) = kmod_tools::input::decompress(path, data.to_vec(), FUZZ_LIMIT) else {
        return;
    };
    if let Ok(module) = ModuleFile::parse(path, &bytes) {
        render_modinfo(&module.modinfo, module.signature.as_ref());
        let _ = module.modinfo_value("name");
        for export in module.exports() {
            let _ = module.exports_symbol(export);
        }
        let _ = module.imports().count();
        let _ = module.defined_globals().count();
        let entries = [Entry {
            relpath: "fuzz.ko".into(),
            module,
        }];
        if let Ok(graph) = depmod::compute(&entries, &KernelExports::Default) {
            let _ = graph.modules_dep();
        }
    }
    if let Ok(stat) = ObjStat::parse(path, &bytes) {
        let _ = stat.write_report(&mut Sink);
        let _ = serde_json::to_writer(Sink, &stat);
    }
}

/// The xz and zstd decoders on any bytes (the corpus holds both formats).
pub fn decompress(data: &[u8]) {
    let _ = kmod_tools::input::decode_xz(data, FUZZ_LIMIT);
    let _ = kmod_tools::input::decode_zstd(data, FUZZ_LIMIT);
}

/// Real modules for [`depmod_inputs`]: the committed kmodlab and Linux fixtures.
fn fixture_entries() -> &'static [Entry] {
    static ENTRIES: OnceLock<Vec<Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        let files: [(&str, &[u8]); 5] = [
            (
                "kernel/net/llc/llc.ko",
                include_bytes!("../tests/fixtures/linux/kernel/net/llc/llc.ko"),
            ),
            (
                "kernel/net/802/stp.ko",
                include_bytes!("../tests/fixtures/linux/kernel/net/802/stp.ko"),
            ),
            (
                "crc32.ko",
                include_bytes!("../tests/fixtures/kmodlab/crc32.ko"),
            ),
            (
                "cstats.ko",
                include_bytes!("../tests/fixtures/kmodlab/cstats.ko"),
            ),
            (
                "hello.ko",
                include_bytes!("../tests/fixtures/kmodlab/hello.ko"),
            ),
        ];
        files
            .iter()
            .map(|(relpath, bytes)| Entry {
                relpath: (*relpath).into(),
                module: ModuleFile::parse(Path::new(relpath), bytes).expect("fixture parses"),
            })
            .collect()
    })
}

/// depmod's text inputs: the data as a System.map, a Module.symvers, a plain symbol list
/// and a `modules.order` (with dependencies computed against each list), as a
/// `modules.dep` read back the way the guest's modprobe reads it, and as the contents of a
/// `.modinfo` section rendered by modinfo.
pub fn depmod_inputs(data: &[u8]) {
    render_modinfo(&kmod_tools::ko::parse_modinfo(data), None);
    let text = String::from_utf8_lossy(data);
    let path = Path::new("list");
    let lists = [
        KernelExports::from_system_map(path, &text).ok(),
        KernelExports::from_symvers(path, &text).ok(),
        Some(KernelExports::from_plain_list(&text)),
    ];
    let mut entries = fixture_entries().to_vec();
    depmod::order_by_modules_order(&mut entries, &text);
    for kernel in lists.iter().flatten() {
        if let Ok(graph) = depmod::compute(&entries, kernel) {
            let _ = graph.modules_dep();
            for i in 0..graph.modules.len() {
                let _ = graph.load_order(i);
            }
        }
    }
    let dep = kmodlab_abi::modules_dep::ModulesDep::parse(&text);
    for path in dep.paths() {
        let _ = dep.load_order(&kmodlab_abi::modules_dep::module_name(path));
    }
}
