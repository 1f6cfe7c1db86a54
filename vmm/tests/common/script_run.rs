//! A scripted guest run (`kmodlab::control::Script`) and its replies, typed: the harness of
//! the module tests of both configurations (`kvm_modules.rs`, `kvm_microkernel.rs`).

use kmodlab::control::Script;
use kmodlab::vm::{RunEnd, RunReport};
use kmodlab_abi::channel::{Command, MemoryStats, ModuleError, ModuleRecord, Reply, ShellOutput};

/// A finished run.
pub struct Run {
    /// What the VMM reported.
    pub report: RunReport<Script>,
}

impl Run {
    pub fn replies(&self) -> &[Reply] {
        &self.report.controller.replies
    }

    pub fn console(&self) -> String {
        self.report.console_text()
    }

    pub fn context(&self) -> String {
        format!(
            "{}\nlast console lines:\n{}",
            self.report.end.describe(),
            self.report.last_console_lines(40).join("\n")
        )
    }

    pub fn assert_clean(&self, commands: usize) {
        assert_eq!(
            self.report.end,
            RunEnd::Exited { status: 0 },
            "{}",
            self.context()
        );
        assert_eq!(
            self.replies().len(),
            commands,
            "replies: {:#?}",
            self.replies()
        );
    }

    pub fn shell(&self, i: usize) -> &ShellOutput {
        match &self.replies()[i] {
            Reply::Shell(out) => out,
            other => panic!("reply {i}: expected a shell output, got {other:?}"),
        }
    }

    pub fn module(&self, i: usize) -> &ModuleRecord {
        match &self.replies()[i] {
            Reply::Module(m) => m,
            other => panic!("reply {i}: expected a loaded module, got {other:?}"),
        }
    }

    pub fn module_error(&self, i: usize) -> &ModuleError {
        match &self.replies()[i] {
            Reply::ModuleError(e) => e,
            other => panic!("reply {i}: expected a module error, got {other:?}"),
        }
    }

    pub fn modules(&self, i: usize) -> &[ModuleRecord] {
        match &self.replies()[i] {
            Reply::Modules(m) => m,
            other => panic!("reply {i}: expected the module list, got {other:?}"),
        }
    }

    pub fn memory(&self, i: usize) -> MemoryStats {
        match &self.replies()[i] {
            Reply::Memory(m) => *m,
            other => panic!("reply {i}: expected memory statistics, got {other:?}"),
        }
    }

    pub fn service_reply(&self, i: usize) -> &[u8] {
        match &self.replies()[i] {
            Reply::ServiceReply(r) => r,
            other => panic!("reply {i}: expected a service reply, got {other:?}"),
        }
    }

    pub fn done(&self, i: usize) {
        assert_eq!(self.replies()[i], Reply::Done, "reply {i}");
    }
}

pub fn shell(script: &str) -> Command {
    Command::Shell {
        script: Some(script.into()),
    }
}

pub fn init_module(name: &str, params: &str) -> Command {
    Command::InitModule {
        name: name.into(),
        params: params.into(),
    }
}

pub fn delete_module(name: &str) -> Command {
    Command::DeleteModule { name: name.into() }
}

pub fn service_call(service: &str, op: u32, request: &[u8]) -> Command {
    Command::ServiceCall {
        service: service.into(),
        op,
        request: request.to_vec(),
        reply_cap: 4096,
    }
}
