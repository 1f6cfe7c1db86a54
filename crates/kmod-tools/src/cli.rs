//! Command-line entry points called by the `kmodlab` binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::depmod::{self, KernelExports};
pub use crate::error::ToolError;
use crate::ko::ModuleFile;
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

fn write_stdout(text: &str) -> Result<(), ToolError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| ToolError::Io {
            path: PathBuf::from("<stdout>"),
            source,
        })
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
        match ModuleFile::open(file) {
            Ok(module) => {
                let name = crate::modinfo::display_filename(file);
                write_stdout(&crate::modinfo::render(&module, &name, field, separator))?;
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
    std::fs::read_to_string(path).map_err(|source| ToolError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Runs `depmod`: writes modules.dep, warns about symbols exported twice, and reports
/// symbols found nowhere (exit code failure when there are any, modules.dep still written).
/// A dependency cycle is an error and nothing is written.
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
    let entries = depmod::load_dir(&dir)?;
    let graph = depmod::compute(&entries, &kernel)?;
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
        std::fs::write(&out, &text).map_err(|source| ToolError::Io { path: out, source })?;
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
/// printed; the exit code is then a failure.
pub fn objstat(args: &ObjstatArgs) -> Result<ExitCode, ToolError> {
    let mut code = ExitCode::SUCCESS;
    let mut stats = Vec::new();
    for file in &args.files {
        match ObjStat::open(file) {
            Ok(s) => stats.push(s),
            Err(e) => {
                eprintln!("kmodlab objstat: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    if args.json {
        let text = serde_json::to_string_pretty(&stats).map_err(|e| ToolError::Io {
            path: PathBuf::from("<json>"),
            source: e.into(),
        })?;
        write_stdout(&(text + "\n"))?;
    } else {
        let text: Vec<String> = stats.iter().map(ObjStat::render).collect();
        write_stdout(&text.join("\n"))?;
    }
    Ok(code)
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
