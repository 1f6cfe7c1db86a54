//! The three tools without the VMM: `cargo run -p kmod-tools --example kmod-tool -- modinfo
//! FILE.ko` behaves like `kmodlab modinfo FILE.ko` (same for depmod and objstat).
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kmod_tools::cli;

/// kmodlab's module tools.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the .modinfo of modules, like Linux's modinfo.
    Modinfo(cli::ModinfoArgs),
    /// Compute module dependencies and write modules.dep, like Linux's depmod.
    Depmod(cli::DepmodArgs),
    /// Sections, sizes and relocation counts of modules.
    Objstat(cli::ObjstatArgs),
}

fn main() -> ExitCode {
    let result = match &Cli::parse().command {
        Command::Modinfo(args) => cli::modinfo(args),
        Command::Depmod(args) => cli::depmod(args),
        Command::Objstat(args) => cli::objstat(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("kmod-tool: {e}");
        ExitCode::FAILURE
    })
}
