//! Command-line entry points called by the `kmodlab` binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::depmod::{self, KernelExports};
pub use crate::error::ToolError;
use crate::objstat::ObjStat;

/// `kmodlab modinfo`.
#[derive(Debug, clap::Args)]
pub struct ModinfoArgs {
    /// Module files (.ko, .ko.xz, .ko.zst).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print only this field's values (`filename`, `parm`, or any .modinfo key).
    #[arg(short = 'F', long)]
    pub field: Option<String>,
    /// Print only 'author'.
    #[arg(short, long, conflicts_with = "field")]
    pub author: bool,
    /// Print only 'description'.
    #[arg(short, long, conflicts_with = "field")]
    pub description: bool,
    /// Print only 'license'.
    #[arg(short, long, conflicts_with = "field")]
    pub license: bool,
    /// Print only 'parm'.
    #[arg(short, long, conflicts_with = "field")]
    pub parameters: bool,
    /// Print only 'filename'.
    #[arg(short = 'n', long, conflicts_with = "field")]
    pub filename: bool,
    /// End records with NUL instead of newline.
    #[arg(short = '0', long)]
    pub null: bool,
}

/// `kmodlab depmod`.
#[derive(Debug, clap::Args)]
pub struct DepmodArgs {
    /// Directory holding the modules (searched recursively); default: the current one.
    pub dir: Option<PathBuf>,
    /// Where to write modules.dep; default: DIR/modules.dep.
    #[arg(short, long, conflicts_with = "dry_run")]
    pub output: Option<PathBuf>,
    /// Print modules.dep on stdout instead of writing it.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// The kernel's exports from a Linux System.map (its `__ksymtab_X` entries).
    #[arg(short = 'F', long, value_name = "FILE", group = "kernel")]
    pub system_map: Option<PathBuf>,
    /// The kernel's exports from a Linux Module.symvers (entries of `vmlinux`).
    #[arg(short = 'E', long, value_name = "FILE", group = "kernel")]
    pub symvers: Option<PathBuf>,
    /// The kernel's exports as a plain list, one symbol per line.
    #[arg(long, value_name = "FILE", group = "kernel")]
    pub kernel_symbols: Option<PathBuf>,
    /// Don't check symbols against any kernel export list.
    #[arg(long, group = "kernel")]
    pub no_kernel_check: bool,
}

/// `kmodlab objstat`.
#[derive(Debug, clap::Args)]
pub struct ObjstatArgs {
    /// Module files (.ko, .ko.xz, .ko.zst).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print JSON (an array, one object per file) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `kmodlab sign`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["key", "new_key"]))]
pub struct SignArgs {
    /// The signing key: a PEM PKCS#8 ECDSA P-256 private key (`--new-key` makes one; the
    /// build's is target/guest/module-signing/signing_key.pem).
    #[arg(requires = "module")]
    pub key: Option<PathBuf>,
    /// The module to sign (an uncompressed .ko). A signature it already has is replaced.
    pub module: Option<PathBuf>,
    /// Where to write the signed module; default: MODULE itself.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Create a new signing key at PATH (never overwriting a file), write its public key to
    /// PATH.pub.der, and print its identity.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["key", "module", "output"])]
    pub new_key: Option<PathBuf>,
}

fn stdout_error(source: std::io::Error) -> ToolError {
    ToolError::Io {
        path: PathBuf::from("<stdout>"),
        source,
    }
}

fn write_stdout(text: &str) -> Result<(), ToolError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// Adapts an `io::Write` to `fmt::Write`, keeping the I/O error that `fmt::Error` cannot
/// carry.
struct FmtToIo<W: Write> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W: Write> std::fmt::Write for FmtToIo<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.inner.write_all(s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            std::fmt::Error
        })
    }
}

/// Runs `modinfo`. Like Linux's, a file that cannot be read is reported and the others are
/// still printed; the exit code is then a failure.
pub fn modinfo(args: &ModinfoArgs) -> Result<ExitCode, ToolError> {
    let field = if args.author {
        Some("author")
    } else if args.description {
        Some("description")
    } else if args.license {
        Some("license")
    } else if args.parameters {
        Some("parm")
    } else if args.filename {
        Some("filename")
    } else {
        args.field.as_deref()
    };
    let separator = if args.null { '\0' } else { '\n' };
    let mut code = ExitCode::SUCCESS;
    for file in &args.files {
        match crate::ko::read_modinfo(file) {
            Ok(view) => {
                let name = crate::modinfo::display_filename(file);
                write_stdout(&crate::modinfo::render(
                    &view.modinfo,
                    view.signature.as_ref(),
                    &name,
                    field,
                    separator,
                ))?;
            }
            Err(e) => {
                eprintln!("kmodlab modinfo: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// Runs `sign`: appends a PKCS#7 signature trailer to a module, or creates a key.
pub fn sign(args: &SignArgs) -> Result<ExitCode, ToolError> {
    if let Some(path) = &args.new_key {
        let key = crate::sign::new_key(path)?;
        write_stdout(&format!(
            "created {} (public key {}.pub.der)\nsigner: {}\n",
            path.display(),
            path.display(),
            key.identity()
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(key), Some(module)) = (&args.key, &args.module) else {
        return Err(ToolError::Usage(
            "usage: kmodlab sign KEY MODULE.ko [-o OUT] | kmodlab sign --new-key PATH".into(),
        ));
    };
    let key = crate::sign::read_key(key)?;
    let output = args.output.as_deref().unwrap_or(module);
    if let Some(replaced) = crate::sign::sign_file(&key, module, output)? {
        eprintln!(
            "kmodlab sign: {}: replaced its signature by {replaced}",
            module.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn read_text(path: &Path) -> Result<String, ToolError> {
    crate::input::read_list(path)
}

/// Runs `depmod`: writes modules.dep, warns about symbols exported twice, and reports
/// symbols found nowhere (exit code failure when there are any, modules.dep still written).
/// A dependency cycle is an error and nothing is written.
///
/// As kmod's depmod, a module that cannot be parsed, a duplicate module name or an
/// unusable directory entry is a warning on stderr, and modules.dep is still written (the
/// unparsable module listed without dependencies). modules.dep is replaced by renaming a
/// temporary file over it, so a symbolic link there is replaced, never written through.
pub fn depmod(args: &DepmodArgs) -> Result<ExitCode, ToolError> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let kernel = if let Some(path) = &args.system_map {
        KernelExports::from_system_map(path, &read_text(path)?)?
    } else if let Some(path) = &args.symvers {
        KernelExports::from_symvers(path, &read_text(path)?)?
    } else if let Some(path) = &args.kernel_symbols {
        KernelExports::from_plain_list(&read_text(path)?)
    } else if args.no_kernel_check {
        KernelExports::Unchecked
    } else {
        KernelExports::Default
    };
    let scan = depmod::load_dir(&dir)?;
    for warning in &scan.warnings {
        eprintln!("depmod: WARNING: {warning}");
    }
    let graph = depmod::compute(&scan.entries, &kernel)?;
    for (sym, used, ignored) in &graph.duplicates {
        eprintln!("depmod: WARNING: {sym} is exported by {used} and {ignored}; using {used}");
    }
    let text = graph.modules_dep();
    if args.dry_run {
        write_stdout(&text)?;
    } else {
        let out = args
            .output
            .clone()
            .unwrap_or_else(|| dir.join("modules.dep"));
        depmod::write_replacing(&out, &text)?;
    }
    for (sym, needers) in &graph.missing {
        eprintln!(
            "depmod: ERROR: unknown symbol {sym} (not exported by the kernel or any module), needed by {}",
            needers.join(", ")
        );
    }
    Ok(if graph.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `objstat`. A file that cannot be read is reported and the others are still
/// printed; the exit code is then a failure. Each file is read, reported and dropped before
/// the next, and reports are written as they are produced (JSON: one array).
pub fn objstat(args: &ObjstatArgs) -> Result<ExitCode, ToolError> {
    objstat_to(args, std::io::stdout().lock())
}

/// [`objstat`] writing its reports to `out` (errors about files still go to stderr).
pub fn objstat_to(args: &ObjstatArgs, out: impl Write) -> Result<ExitCode, ToolError> {
    let mut code = ExitCode::SUCCESS;
    let mut out = std::io::BufWriter::new(out);
    let mut printed = 0usize;
    if args.json {
        out.write_all(b"[").map_err(stdout_error)?;
    }
    for file in &args.files {
        let stat = crate::ko::read_module_bytes(file).and_then(|data| {
            let stat = ObjStat::parse(file, &data)?;
            if args.json {
                let separator: &[u8] = if printed == 0 { b"\n" } else { b",\n" };
                out.write_all(separator).map_err(stdout_error)?;
                serde_json::to_writer_pretty(&mut out, &stat)
                    .map_err(|e| stdout_error(e.into()))?;
            } else {
                if printed > 0 {
                    out.write_all(b"\n").map_err(stdout_error)?;
                }
                let mut adapter = FmtToIo {
                    inner: &mut out,
                    error: None,
                };
                if stat.write_report(&mut adapter).is_err() {
                    return Err(stdout_error(adapter.error.take().unwrap_or_else(|| {
                        std::io::Error::other("formatting the report failed")
                    })));
                }
            }
            Ok(())
        });
        match stat {
            Ok(()) => printed += 1,
            Err(e @ ToolError::Io { .. }) if is_stdout(&e) => return Err(e),
            Err(e) => {
                eprintln!("kmodlab objstat: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    if args.json {
        let end: &[u8] = if printed == 0 { b"]\n" } else { b"\n]\n" };
        out.write_all(end).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    Ok(code)
}

fn is_stdout(e: &ToolError) -> bool {
    matches!(e, ToolError::Io { path, .. } if path.as_os_str() == "<stdout>")
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser, Subcommand};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        Modinfo(ModinfoArgs),
        Depmod(DepmodArgs),
        Objstat(ObjstatArgs),
    }

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::parse_from(["k", "modinfo", "-F", "license", "-0", "a.ko", "b.ko"]);
        let Cmd::Modinfo(m) = cli.command else {
            panic!()
        };
        assert_eq!(m.field.as_deref(), Some("license"));
        assert!(m.null);
        assert_eq!(m.files.len(), 2);
        let cli = Cli::parse_from(["k", "depmod", "-n", "-E", "Module.symvers", "dir"]);
        let Cmd::Depmod(d) = cli.command else {
            panic!()
        };
        assert!(d.dry_run && d.symvers.is_some() && d.dir.is_some());
        assert!(Cli::try_parse_from(["k", "depmod", "-F", "a", "-E", "b"]).is_err());
        let cli = Cli::parse_from(["k", "objstat", "--json", "x.ko"]);
        assert!(matches!(
            cli.command,
            Cmd::Objstat(ObjstatArgs { json: true, .. })
        ));
    }
}
