//! The `kmodlab` command line.
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use kmodlab::KernelConfig;
use kmodlab::devices::serial::Echo;
use kmodlab::selftest::{self, BootError};
use kmodlab::vm::{VmConfig, VmError};
use kmodlab_abi::channel::SelfTestParams;

/// kmodlab: a KVM testbed comparing monolithic and microkernel module subsystems.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The configuration to boot.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Config {
    /// Modules load into the kernel (Linux's design).
    Monolithic,
    /// Modules run as user-space servers.
    Microkernel,
}

impl From<Config> for KernelConfig {
    fn from(c: Config) -> KernelConfig {
        match c {
            Config::Monolithic => KernelConfig::Monolithic,
            Config::Microkernel => KernelConfig::Microkernel,
        }
    }
}

/// Options of every command that boots the guest.
#[derive(Debug, clap::Args)]
struct VmArgs {
    /// Kernel configuration.
    #[arg(long, value_enum, default_value = "monolithic")]
    config: Config,
    /// Guest RAM in MiB (64..=3072, even).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(64..=3072))]
    ram_mib: u64,
    /// Stop the guest and report it hung after this many seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout_secs: u64,
    /// Show the guest's console output as it arrives (on stderr).
    #[arg(long)]
    console: bool,
}

impl VmArgs {
    fn vm_config(&self) -> VmConfig {
        VmConfig {
            ram_bytes: self.ram_mib << 20,
            deadline: Duration::from_secs(self.timeout_secs),
            ..VmConfig::new(self.config.into())
        }
    }

    fn echo(&self) -> Echo {
        if self.console {
            Echo::To(Box::new(std::io::stderr()))
        } else {
            Echo::Quiet
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot the guest, run its self-test and print a summary.
    Boot {
        #[command(flatten)]
        vm: VmArgs,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
        /// Iterations of the measured loop.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1_000..))]
        iterations: u32,
        /// Repetitions of each measurement (medians are reported).
        #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..=1001))]
        runs: u32,
    },
    /// Show the .modinfo of modules, like Linux's modinfo.
    Modinfo(kmod_tools::cli::ModinfoArgs),
    /// Compute module dependencies and write modules.dep, like Linux's depmod.
    Depmod(kmod_tools::cli::DepmodArgs),
    /// Sections, sizes and relocation counts of modules.
    Objstat(kmod_tools::cli::ObjstatArgs),
}

/// Exit status when KVM is unusable.
const EXIT_NO_KVM: u8 = 3;

fn main() -> ExitCode {
    let t0 = Instant::now();
    let cli = Cli::parse();
    match cli.command {
        Command::Boot {
            vm,
            json,
            iterations,
            runs,
        } => boot(&vm, json, iterations, runs, t0),
        Command::Modinfo(args) => tool(kmod_tools::cli::modinfo(&args)),
        Command::Depmod(args) => tool(kmod_tools::cli::depmod(&args)),
        Command::Objstat(args) => tool(kmod_tools::cli::objstat(&args)),
    }
}

fn tool(result: Result<ExitCode, kmod_tools::cli::ToolError>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("kmodlab: {e}");
        ExitCode::FAILURE
    })
}

fn boot(vm: &VmArgs, json: bool, iterations: u32, runs: u32, t0: Instant) -> ExitCode {
    let params = SelfTestParams {
        loop_iterations: iterations,
        runs,
        ..SelfTestParams::default()
    };
    match selftest::boot(vm.config.into(), params, &vm.vm_config(), vm.echo(), t0) {
        Ok(summary) => {
            if json {
                match serde_json::to_string_pretty(&summary) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("kmodlab: cannot encode the summary: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", summary.human());
            }
            for w in summary.warnings() {
                eprintln!("kmodlab: WARNING: {w}");
            }
            let problems = summary.problems();
            for p in &problems {
                eprintln!("kmodlab: ERROR: {p}");
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(BootError::Vm(VmError::Preflight(e))) => {
            eprintln!("kmodlab: KVM is not usable: {e}");
            ExitCode::from(EXIT_NO_KVM)
        }
        Err(e) => {
            eprintln!("kmodlab: boot failed: {e}");
            ExitCode::FAILURE
        }
    }
}
