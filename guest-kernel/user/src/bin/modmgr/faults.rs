//! A module server that dies: the kernel stops the task (an exception of any vector, or its
//! watchdog) and posts `CHILD_FAULTED` to the manager, which finds the dead server with
//! `task_info`, reports the fault as the monolithic kernel's crash report does (module,
//! vector, offset), destroys the task (its memory, page tables, endpoint and capabilities go
//! back to the kernel), takes back the capabilities other servers hold to it, and keeps the
//! module's record, marked faulted, in the state Linux leaves a module whose code oopsed:
//! "Loading" if its init died, "Unloading" if its exit did, "Live" if a call into it did.
//! Whoever waited for its init or exit gets an error; callers in flight got `EPIPE` from the
//! kernel. `rmmod` removes the record (nothing runs: the server is gone). With the restart
//! policy (`server.restart=N` at insmod) the module is loaded again from its file instead.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_rt::rdtsc_ordered;
use kmod_manager::ModError;
use kmod_manager::error::FaultText;
use kmod_manager::registry::ModuleId;
use kmodlab_abi::channel::{
    EXITED_VECTOR, FaultPhase, Footprint, ModuleFault, WATCHDOG_VECTOR, vector_name,
};
use kmodlab_ipc::layout;
use kmodlab_ipc::task::TaskState;
use kmodlab_user::ipc;

use crate::log;
use crate::manager::{Manager, Phase, Waiter};

impl Manager {
    /// Handles every server that has ended since the last look.
    pub fn reap(&mut self) {
        let dead: Vec<(ModuleId, TaskState)> = self
            .servers
            .iter()
            .filter_map(|s| {
                let info = ipc::task_info(s.slot).ok()?;
                matches!(info.state, TaskState::Faulted(_) | TaskState::Exited(_))
                    .then_some((s.module, info.state))
            })
            .collect();
        for (id, state) in dead {
            self.server_died(id, state);
        }
    }

    fn server_died(&mut self, id: ModuleId, state: TaskState) {
        self.server_died_inner(id, state);
        if self.restarting.contains(&id) {
            self.restart_over(id);
        }
    }

    fn server_died_inner(&mut self, id: ModuleId, state: TaskState) {
        let Some(s) = self.server_mut(id) else { return };
        let phase = s.phase;
        let waiter = s.waiter;
        let plan = s.plan;
        let init_mapped = s.init_mapped;
        let task = s.task;
        let restart = s.restart.take();
        let name = self
            .registry
            .get(id)
            .map_or_else(String::new, |m| m.name.clone());
        let during = Self::fault_phase(phase);
        let (fault, rsp) = match state {
            TaskState::Faulted(f) => (
                ModuleFault {
                    during,
                    vector: f.vector,
                    rip: f.rip,
                    cr2: f.cr2,
                    error_code: f.error_code,
                    offset: plan.locate(f.rip, init_mapped).map(|(_, o)| o),
                },
                f.rsp,
            ),
            _ => (
                ModuleFault {
                    during,
                    vector: EXITED_VECTOR,
                    rip: 0,
                    cr2: 0,
                    error_code: 0,
                    offset: None,
                },
                0,
            ),
        };
        let what = match fault.vector {
            WATCHDOG_VECTOR => {
                String::from("stopped by the watchdog: it ran too long without blocking")
            }
            EXITED_VECTOR => format!("its runtime exited ({state:?})"),
            v => format!("{} (vector {v})", vector_name(v)),
        };
        let when = match during {
            FaultPhase::Init => "in its init",
            FaultPhase::Call => "during a call",
            FaultPhase::Exit => "in its exit",
        };
        let mut report = format!(
            "\nMODULE SERVER FAULT: {what} in user mode, module {name} (task {:#x}) {when}\n  \
             rip {:#018x}  cr2 {:#018x}  error {:#x}\n  rsp {rsp:#018x}\n",
            task.0, fault.rip, fault.cr2, fault.error_code
        );
        if let Some(offset) = fault.offset {
            report.push_str(&format!(
                "  rip is in module {name} at offset {offset:#x}\n"
            ));
        } else if self.runtime.contains(fault.rip) {
            report.push_str(&format!(
                "  rip is in the server runtime at {:#x}\n",
                fault.rip
            ));
        } else if (layout::STUB_BASE..layout::STUB_END).contains(&fault.rip) {
            report.push_str("  rip is in a call stub\n");
        }
        log(&report);

        // Everything the server had goes back to the kernel, and nobody can reach it. Its
        // own requests die with it (what they were loading goes on, answered to nobody).
        self.destroy_server(id);
        self.jobs.retain(|j| j.requester != id);
        let services = self.registry.drop_services_of(id);
        let users = self.registry.get(id).map_or(0, |m| m.used_by.len());
        if let Some(m) = self.registry.get_mut(id) {
            m.fault = Some(fault);
            m.pages = 0;
            m.footprint = Footprint {
                section_bytes: m.footprint.section_bytes,
                ..Footprint::default()
            };
        }
        let state_name = self.registry.get(id).map_or("?", |m| m.state.name());
        log(&format!(
            "module {name}: its server is gone ({services} service(s) dropped, memory and \
             capabilities released); the module stays {state_name}, marked faulted\n"
        ));

        let died = ModError::ServerDied {
            module: name.clone(),
            fault,
        };
        match restart {
            Some(mut r) if r.left > 0 && users == 0 => {
                r.left -= 1;
                if r.since == 0 {
                    r.since = rdtsc_ordered();
                }
                log(&format!(
                    "module {name}: restarting it from its file (restart {} of {}) after {}\n",
                    r.allowed - r.left,
                    r.allowed,
                    FaultText(&fault)
                ));
                // A restart is a new load of the same file: the faulted record goes first.
                self.discard(id);
                let image = r.image.clone();
                let params = r.params.clone();
                let waiter = if phase == Phase::Serving {
                    Waiter::Nobody
                } else {
                    waiter
                };
                match self.load_with(image, &params, waiter, rdtsc_ordered(), Some(r)) {
                    Ok(new_id) => self.restarting.push(new_id),
                    Err(e) => {
                        log(&format!("module {name}: the restart failed: {e}\n"));
                        self.fail_waiter(waiter, &e);
                    }
                }
            }
            other => {
                if let Some(r) = other {
                    if users > 0 {
                        log(&format!(
                            "module {name}: not restarted: other modules use it (they hold stubs \
                             to its old server)\n"
                        ));
                    } else if r.left == 0 {
                        log(&format!(
                            "module {name}: not restarted: its {} restart(s) are used up\n",
                            r.allowed
                        ));
                    }
                }
                if phase != Phase::Serving {
                    self.fail_waiter(waiter, &died);
                }
            }
        }
    }

    /// After a module that was restarted is LIVE again: how long recovery took, from the
    /// fault being seen to LIVE.
    pub fn report_restart(&mut self, id: ModuleId) {
        let tsc_khz = self.tsc_khz;
        let Some(s) = self.server_mut(id) else { return };
        let Some(r) = s.restart.as_mut() else { return };
        if r.since == 0 {
            return;
        }
        let cycles = rdtsc_ordered() - r.since;
        r.since = 0;
        let left = r.left;
        let name = self
            .registry
            .get(id)
            .map_or_else(String::new, |m| m.name.clone());
        let time = (cycles.saturating_mul(1000))
            .checked_div(tsc_khz)
            .map_or_else(|| String::from("? us"), |us| format!("{us} us"));
        log(&format!(
            "module {name}: restarted and LIVE again; recovery took {time} ({cycles} cycles), \
             {left} restart(s) left\n"
        ));
    }
}
