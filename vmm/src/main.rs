//! The `kmodlab` command line (placeholder while the VMM is built; see issue 2).
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kmodlab: a KVM testbed comparing monolithic and microkernel module subsystems.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the .modinfo of modules, like Linux's modinfo.
    Modinfo(kmod_tools::cli::ModinfoArgs),
    /// Compute module dependencies and write modules.dep, like Linux's depmod.
    Depmod(kmod_tools::cli::DepmodArgs),
    /// Sections, sizes and relocation counts of modules.
    Objstat(kmod_tools::cli::ObjstatArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Modinfo(args) => kmod_tools::cli::modinfo(args),
        Command::Depmod(args) => kmod_tools::cli::depmod(args),
        Command::Objstat(args) => kmod_tools::cli::objstat(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kmodlab: {e}");
            ExitCode::FAILURE
        }
    }
}
