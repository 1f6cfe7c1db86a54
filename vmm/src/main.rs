//! The `kmodlab` command line.
use std::fmt::Display;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use kmodlab::KernelConfig;
use kmodlab::compare::cli::KptiArg;
use kmodlab::control::Script;
use kmodlab::devices::serial::Echo;
use kmodlab::selftest::{self, BootError};
use kmodlab::vm::{GuestImages, RunEnd, VmConfig, VmError};
use kmodlab_abi::channel::SelfTestParams;
use kmodlab_abi::channel::{Command as GuestCommand, Reply};

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
    /// Each module runs in a user-space server of its own, built by a user-space module
    /// manager; a module that faults stops only its server.
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
    #[arg(long, default_value_t = 256, value_parser = parse_ram_mib)]
    ram_mib: u64,
    /// Stop the guest and report it hung after this many seconds (default: 60; for
    /// `shell`, a day).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout_secs: Option<u64>,
    /// Show the guest's console output as it arrives (on stderr).
    #[arg(long)]
    console: bool,
    /// Without module unloading (Linux's CONFIG_MODULE_UNLOAD off): rmmod answers "not
    /// supported". Monolithic: boots the kernel built without the unload code; microkernel:
    /// tells the module manager (`module.unload=0`).
    #[arg(long)]
    no_module_unload: bool,
    /// Keep the guest kernel's log off the console (it stays readable with `dmesg`): every
    /// console byte is a VM exit, which would distort the load-step cycle counts.
    #[arg(long)]
    quiet: bool,
    /// Refuse modules without a valid signature by the build's key (kernel command line
    /// `module.sig_enforce=1`, Linux's CONFIG_MODULE_SIG_FORCE); without it they load with a
    /// warning in the kernel log. Checked by the monolithic kernel, and by the microkernel's
    /// module manager.
    #[arg(long)]
    sig_enforce: bool,
    /// Give user mode page tables of its own (kernel command line `kpti=on|off`; auto: on
    /// kvm_pvm, where nothing else keeps guest user mode out of guest kernel memory, off on
    /// hardware KVM, where the U/S bits do).
    #[arg(long, value_enum, default_value = "auto")]
    kpti: KptiArg,
}

impl VmArgs {
    fn vm_config(&self, default_timeout: u64) -> VmConfig {
        VmConfig {
            ram_bytes: self.ram_mib << 20,
            deadline: Duration::from_secs(self.timeout_secs.unwrap_or(default_timeout)),
            cmdline: self.cmdline(),
            ..VmConfig::new(self.config.into())
        }
    }

    fn cmdline(&self) -> String {
        let mut words = Vec::new();
        if self.quiet {
            words.push("quiet");
        }
        if self.no_module_unload && matches!(self.config, Config::Microkernel) {
            words.push("module.unload=0");
        }
        if self.sig_enforce {
            words.push("module.sig_enforce=1");
        }
        words.extend(kmodlab_abi::kpti::Kpti::from(self.kpti).cmdline_word());
        words.join(" ")
    }

    fn images(&self) -> Result<GuestImages<'static>, String> {
        match (self.no_module_unload, self.config) {
            (true, Config::Monolithic) => Ok(kmodlab::artifacts::images_without_unload()),
            (_, c) => Ok(kmodlab::artifacts::images(c.into())),
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
        /// Null system calls (and IPC round trips) per timed run. On kvm_pvm, loops longer
        /// than a host time slice are descheduled while the TSC runs on: on a busy host keep
        /// them short (≤ 100) and read the minima.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        syscall_iterations: u32,
        /// Debug: on a kvm_pvm host, boot with the guest setup of hardware KVM (no VIF page,
        /// kernel pages without U/S), to run the hardware paging, boot and fault paths on a
        /// machine without VMX/SVM. Supervisor code is then emulated (slow, timings
        /// meaningless) and user system calls do not work there, so the self-test reports
        /// the checks that need them as not run. No effect on hardware KVM.
        #[arg(long)]
        hardware_setup: bool,
    },
    /// Boot the guest and run shell commands in it (insmod, rmmod, lsmod, modinfo,
    /// modprobe, dmesg, ls; see `help`), printing the guest console.
    Run {
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        user: kmodlab::compare::cli::UserModuleArgs,
        /// Commands, separated by `;` or newlines, e.g. "insmod hello.ko; lsmod; rmmod hello".
        #[arg(
            short = 'c',
            long = "command",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        command: Option<String>,
        /// Read the commands from this file instead (`-` for standard input); for scripts
        /// longer than a command-line argument may be (128 KiB on Linux).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
    /// Boot the guest and talk to its shell on this terminal (Ctrl-D or `exit` ends it).
    Shell {
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        user: kmodlab::compare::cli::UserModuleArgs,
    },
    /// Show the .modinfo of modules, like Linux's modinfo.
    Modinfo(kmod_tools::cli::ModinfoArgs),
    /// Compute module dependencies and write modules.dep, like Linux's depmod.
    Depmod(kmod_tools::cli::DepmodArgs),
    /// Sections, sizes and relocation counts of modules.
    Objstat(kmod_tools::cli::ObjstatArgs),
    /// Sign a module (Linux's sign-file), or create a signing key (--new-key).
    Sign(kmod_tools::cli::SignArgs),
    /// Measure both configurations side by side: report.json, REPORT.md and plots in
    /// results/<date>-<flavour>-<cpu>/.
    Compare(kmodlab::compare::cli::CompareArgs),
    /// Re-render REPORT.md and the plots from report.json files (several: a cross-host
    /// report).
    Report(kmodlab::compare::cli::ReportArgs),
    /// Run the quick comparison and fail if a count changed or a timing regressed against a
    /// baseline (the CI gate).
    Check(kmodlab::compare::cli::CheckArgs),
    /// Inject faults into modules of a running system (faulty in every mode, at init, exit
    /// and during calls) and count crashes, hangs, leaks and recovery times.
    Faults(kmodlab::faults::cli::FaultsArgs),
}

/// `--ram-mib`: even (guest RAM is mapped in 2 MiB pages) and within 64..=3072.
fn parse_ram_mib(s: &str) -> Result<u64, String> {
    let v: u64 = s.parse().map_err(|e| format!("{e}"))?;
    if !(64..=3072).contains(&v) {
        return Err(format!("{v} is not in 64..=3072"));
    }
    if !v.is_multiple_of(2) {
        return Err(format!(
            "{v} is odd; guest RAM is a whole number of 2 MiB pages"
        ));
    }
    Ok(v)
}

/// Exit status when KVM is unusable.
const EXIT_NO_KVM: u8 = 3;

/// A message on stderr. If stderr itself cannot be written there is nowhere left to say so;
/// the exit status still tells.
fn warn(message: impl Display) {
    let _ = writeln!(io::stderr(), "kmodlab: {message}");
}

/// Writes `text` to stdout and flushes it: a command whose output is lost must fail.
fn print_stdout(text: &str) -> Result<(), ExitCode> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            warn(format_args!("cannot write to standard output: {e}"));
            ExitCode::FAILURE
        })
}

fn main() -> ExitCode {
    let t0 = Instant::now();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed, unless stdout cannot be
            // written; usage errors print to stderr and exit 2.
            let printed = e.print().and_then(|()| io::stdout().flush());
            if let Err(err) = printed
                && !e.use_stderr()
            {
                warn(format_args!("cannot write to standard output: {err}"));
                return ExitCode::FAILURE;
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match cli.command {
        Command::Boot {
            vm,
            json,
            iterations,
            runs,
            syscall_iterations,
            hardware_setup,
        } => boot(
            &vm,
            json,
            SelfTestParams {
                loop_iterations: iterations,
                runs,
                syscall_iterations,
            },
            hardware_setup,
            t0,
        ),
        Command::Run {
            vm,
            user,
            command,
            file,
        } => {
            let script = match (command, file) {
                (Some(c), _) => c,
                (None, Some(path)) => match read_script(&path) {
                    Ok(s) => s,
                    Err(code) => return code,
                },
                (None, None) => unreachable!("clap requires -c or -f"),
            };
            shell(&vm, &user, Some(script), t0)
        }
        Command::Shell { vm, user } => shell(&vm, &user, None, t0),
        Command::Modinfo(args) => tool(kmod_tools::cli::modinfo(&args)),
        Command::Depmod(args) => tool(kmod_tools::cli::depmod(&args)),
        Command::Objstat(args) => tool(kmod_tools::cli::objstat(&args)),
        Command::Sign(args) => tool(kmod_tools::cli::sign(&args)),
        Command::Compare(args) => kmodlab::compare::cli::compare(&args),
        Command::Report(args) => kmodlab::compare::cli::report(&args),
        Command::Check(args) => kmodlab::compare::cli::check(&args),
        Command::Faults(args) => kmodlab::faults::cli::faults(&args),
    }
}

fn tool(result: Result<ExitCode, kmod_tools::cli::ToolError>) -> ExitCode {
    result.unwrap_or_else(|e| {
        warn(e);
        ExitCode::FAILURE
    })
}

fn boot(
    vm: &VmArgs,
    json: bool,
    params: SelfTestParams,
    hardware_setup: bool,
    t0: Instant,
) -> ExitCode {
    if vm.no_module_unload {
        warn("note: booting the kernel built without module unloading");
    }
    let images = match vm.images() {
        Ok(i) => i,
        Err(e) => {
            warn(e);
            return ExitCode::from(2);
        }
    };
    let vm_config = VmConfig {
        hardware_setup,
        ..vm.vm_config(60)
    };
    match selftest::boot(vm.config.into(), images, params, &vm_config, vm.echo(), t0) {
        Ok(summary) => {
            let text = if json {
                match serde_json::to_string_pretty(&summary) {
                    Ok(s) => s + "\n",
                    Err(e) => {
                        warn(format_args!("cannot encode the summary: {e}"));
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                summary.human()
            };
            if let Err(code) = print_stdout(&text) {
                return code;
            }
            for w in summary.warnings() {
                warn(format_args!("WARNING: {w}"));
            }
            let problems = summary.problems();
            for p in &problems {
                warn(format_args!("ERROR: {p}"));
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(BootError::Vm(VmError::Preflight(e))) => {
            warn(format_args!("KVM is not usable: {e}"));
            ExitCode::from(EXIT_NO_KVM)
        }
        Err(e) => {
            warn(format_args!("boot failed: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// The script in `path` (`-`: stdin), read up to one byte past the longest script the
/// control channel carries, so that neither a huge file nor an endless one (a FIFO,
/// `/dev/zero`) costs more memory than that.
fn read_script(path: &std::path::Path) -> Result<String, ExitCode> {
    use std::io::Read;
    let limit = kmodlab::control::max_script_bytes() as u64 + 1;
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    if let Err(e) = read {
        warn(format_args!(
            "cannot read the script {}: {e}",
            path.display()
        ));
        return Err(ExitCode::from(2));
    }
    if bytes.len() as u64 >= limit {
        warn(format_args!(
            "the script {} is more than {} bytes; the control channel carries at most {} \
             bytes of script (split it over several runs)",
            path.display(),
            limit - 1,
            limit - 1
        ));
        return Err(ExitCode::from(2));
    }
    String::from_utf8(bytes).map_err(|e| {
        warn(format_args!(
            "the script {} is not UTF-8 text (byte {} is invalid)",
            path.display(),
            e.utf8_error().valid_up_to()
        ));
        ExitCode::from(2)
    })
}

/// `run` (a script) and `shell` (interactive): the guest shell, its console on stdout.
fn shell(
    vm: &VmArgs,
    user: &kmodlab::compare::cli::UserModuleArgs,
    script: Option<String>,
    t0: Instant,
) -> ExitCode {
    if let Some(script) = &script {
        let max = kmodlab::control::max_script_bytes();
        if script.len() > max {
            warn(format_args!(
                "the script is {} bytes; the control channel carries at most {max} bytes of \
                 script (split it over several runs)",
                script.len()
            ));
            return ExitCode::from(2);
        }
    }
    let images = match vm.images() {
        Ok(i) => i,
        Err(e) => {
            warn(e);
            return ExitCode::from(2);
        }
    };
    // The user's modules are checked before anything boots.
    let archive = match user.prepare() {
        Ok(p) => p.archive,
        Err(e) => {
            eprintln!("kmodlab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let images = kmodlab::vm::GuestImages {
        kernel: images.kernel,
        initramfs: &archive,
    };
    let interactive = script.is_none();
    let input = interactive.then(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the terminal for the guest; ends (dropping `tx`, which the guest sees as end
        // of input) at end of file. It may outlive the run blocked in read(); the process
        // exits right after the run, which ends it.
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        rx
    });
    let default_timeout = if interactive { 86_400 } else { 60 };
    let controller = Script::new([GuestCommand::Shell { script }]);
    let report = match kmodlab::vm::run_with_input(
        &vm.vm_config(default_timeout),
        images,
        controller,
        Echo::To(Box::new(std::io::stdout())),
        input,
        t0,
    ) {
        Ok(r) => r,
        Err(VmError::Preflight(e)) => {
            warn(format_args!("KVM is not usable: {e}"));
            return ExitCode::from(EXIT_NO_KVM);
        }
        Err(e) => {
            warn(e);
            return ExitCode::FAILURE;
        }
    };
    // The console is this command's output: if it did not reach stdout, the run failed.
    let lost_output = report.console_echo_error();
    if let Some(e) = &lost_output {
        warn(format_args!(
            "cannot write the guest's console to standard output: {e}"
        ));
    }
    let status = if report.end != (RunEnd::Exited { status: 0 }) {
        warn(report.end.describe());
        ExitCode::FAILURE
    } else {
        match report.controller.replies.first() {
            // A user at the prompt saw each failure already; the session itself succeeded.
            Some(Reply::Shell(out)) if out.failed == 0 || interactive => ExitCode::SUCCESS,
            Some(Reply::Shell(out)) => {
                warn(format_args!(
                    "{} of {} shell commands failed",
                    out.failed, out.lines
                ));
                ExitCode::FAILURE
            }
            Some(other) => {
                warn(format_args!("the guest could not run the shell: {other:?}"));
                ExitCode::FAILURE
            }
            None => {
                warn("the guest did not answer");
                ExitCode::FAILURE
            }
        }
    };
    if lost_output.is_some() {
        ExitCode::FAILURE
    } else {
        status
    }
}
