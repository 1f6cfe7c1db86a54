//! A live guest the host talks to one command at a time: one boot serves a whole group of
//! measurements (the Criterion benchmarks, `kmodlab compare`), never one boot per sample.
//!
//! The VM runs on its own thread with a [`ChannelController`], which hands each guest event
//! to the session and waits for the session's next command. Every reply comes with the VM
//! exits that happened while the guest worked on the command (the difference of the VMM's
//! per-reason counters between the command's doorbell and the reply's, the reply's own
//! doorbell not counted): the "VM exits per operation" of the reports.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kmodlab_abi::channel::{Command, HostMsg, ReadyInfo, Reply};
use kmodlab_abi::{KernelConfig, KvmFlavour};

use crate::control::{Controller, Event, RunFacts};
use crate::devices::serial::Echo;
use crate::vm::{self, BootTimings, GuestImages, RunEnd, VmConfig, VmError};

/// VM exits by reason.
pub type ExitCounts = BTreeMap<String, u64>;

/// Events of the VMM's own clock rather than the guest's work: the kick that ends a user
/// program's time slice (`interrupted`, also a host signal), the interrupt window the VMM
/// asks for to inject it, and the injections themselves (counted beside the exits). How many
/// land in an operation depends on how long it took, so they are not a deterministic count
/// of the operation.
pub const TIMER_EXIT_REASONS: [&str; 4] = [
    "interrupted",
    "irq_window_open",
    "preempt_deferred",
    "preempt_injected",
];

/// The exits in `exits` that the guest's work caused (port I/O, MMIO, `hlt`, ...), without
/// [`TIMER_EXIT_REASONS`]: the "VM exits per operation" the reports count and the gate
/// compares exactly.
pub fn work_exits(exits: &ExitCounts) -> u64 {
    exits
        .iter()
        .filter(|(reason, _)| !TIMER_EXIT_REASONS.contains(&reason.as_str()))
        .map(|(_, n)| n)
        .sum()
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The VMM could not run the guest at all.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The guest ended (crashed, hung, exited) before answering.
    #[error("{}\nlast console lines:\n{console}", end.describe())]
    Ended {
        /// How the run ended.
        end: RunEnd,
        /// The guest's last console lines.
        console: String,
    },
    /// The guest did not answer within the session's command timeout (the VM deadline will
    /// stop it).
    #[error("the guest did not answer within {0:?}")]
    Timeout(Duration),
    /// The guest answered with something other than what the command calls for.
    #[error("the guest answered {what} with {reply}")]
    Unexpected {
        /// The command.
        what: String,
        /// The reply, debug-printed.
        reply: String,
    },
}

enum SessionEvent {
    Started(RunFacts),
    Ready(Box<ReadyInfo>, ExitCounts, Instant),
    Reply(Box<Reply>, ExitCounts),
    Ended(Box<RunEnd>, String),
}

/// Hands guest events to a [`GuestSession`] and its commands to the guest.
pub struct ChannelController {
    events: Sender<SessionEvent>,
    commands: Receiver<HostMsg>,
    last_exits: ExitCounts,
    wait: Duration,
}

impl Controller for ChannelController {
    fn started(&mut self, facts: &RunFacts) {
        let _ = self.events.send(SessionEvent::Started(*facts));
    }

    fn exits(&mut self, exits: &BTreeMap<&'static str, u64>) {
        self.last_exits = exits.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    }

    fn next(&mut self, event: Event) -> HostMsg {
        let exits = std::mem::take(&mut self.last_exits);
        let sent = match event {
            Event::Ready(info) => {
                self.events
                    .send(SessionEvent::Ready(Box::new(info), exits, Instant::now()))
            }
            Event::Reply(reply) => self
                .events
                .send(SessionEvent::Reply(Box::new(reply), exits)),
        };
        if sent.is_err() {
            return HostMsg::Shutdown { status: 0 };
        }
        // Bounded: this runs on the vCPU thread, out of reach of the deadline's kick signal.
        match self.commands.recv_timeout(self.wait) {
            Ok(msg) => msg,
            Err(_) => HostMsg::Shutdown { status: 0 },
        }
    }
}

/// A booted guest waiting for commands.
pub struct GuestSession {
    commands: Sender<HostMsg>,
    events: Receiver<SessionEvent>,
    thread: Option<JoinHandle<()>>,
    last_exits: ExitCounts,
    timeout: Duration,
    /// The configuration booted.
    pub config: KernelConfig,
    /// What the kernel reported when it came up.
    pub ready: ReadyInfo,
    /// The KVM flavour.
    pub flavour: KvmFlavour,
    /// The guest TSC frequency in kHz.
    pub tsc_khz: u64,
    /// Wall-clock time from [`GuestSession::boot`] to the guest's ready message.
    pub boot_time: Duration,
}

/// Per-reason difference `after - before`.
fn exit_delta(before: &ExitCounts, after: &ExitCounts) -> ExitCounts {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

impl GuestSession {
    /// Boots `vm_config` with `images` and waits for the kernel's ready message. The guest
    /// must answer each later command within `timeout`.
    pub fn boot(
        vm_config: &VmConfig,
        images: GuestImages<'static>,
        echo: Echo,
        timeout: Duration,
    ) -> Result<GuestSession, SessionError> {
        Self::boot_owned(
            vm_config,
            images.kernel,
            std::borrow::Cow::Borrowed(images.initramfs),
            echo,
            timeout,
        )
    }

    /// Like [`GuestSession::boot`] with an archive the session keeps (e.g. one holding user
    /// modules).
    pub fn boot_owned(
        vm_config: &VmConfig,
        kernel: &'static [u8],
        initramfs: std::borrow::Cow<'static, [u8]>,
        echo: Echo,
        timeout: Duration,
    ) -> Result<GuestSession, SessionError> {
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let controller = ChannelController {
            events: ev_tx.clone(),
            commands: cmd_rx,
            last_exits: ExitCounts::new(),
            wait: vm_config.deadline,
        };
        let cfg = vm_config.clone();
        let t0 = Instant::now();
        let thread = std::thread::Builder::new()
            .name("kmodlab-session".into())
            .spawn(move || {
                let images = GuestImages {
                    kernel,
                    initramfs: &initramfs,
                };
                let (end, console) = match vm::run(&cfg, images, controller, echo, t0) {
                    Ok(report) => {
                        let console = report.last_console_lines(30).join("\n");
                        (Ok(report.end), console)
                    }
                    Err(e) => (Err(e), String::new()),
                };
                let event = match end {
                    Ok(end) => SessionEvent::Ended(Box::new(end), console),
                    Err(e) => SessionEvent::Ended(
                        Box::new(RunEnd::KvmFailure(format!("the VMM failed: {e}"))),
                        console,
                    ),
                };
                let _ = ev_tx.send(event);
            })
            .map_err(|e| VmError::Thread(format!("could not be started: {e}")))?;
        let mut session = GuestSession {
            commands: cmd_tx,
            events: ev_rx,
            thread: Some(thread),
            last_exits: ExitCounts::new(),
            timeout,
            config: vm_config.config,
            ready: ReadyInfo {
                config: vm_config.config,
                flavour: KvmFlavour::Hardware,
                tsc_entry: 0,
                tsc_memory_ready: 0,
                tsc_ready: 0,
                image: Default::default(),
                frames_total: 0,
                frames_free: 0,
                heap_bytes: 0,
            },
            flavour: KvmFlavour::Hardware,
            tsc_khz: 0,
            boot_time: Duration::ZERO,
        };
        loop {
            match session.event(vm_config.deadline)? {
                SessionEvent::Started(facts) => {
                    session.flavour = facts.flavour;
                    session.tsc_khz = facts.tsc_khz;
                }
                SessionEvent::Ready(info, exits, at) => {
                    session.ready = *info;
                    session.last_exits = exits;
                    session.boot_time = at.duration_since(t0);
                    return Ok(session);
                }
                SessionEvent::Reply(reply, _) => {
                    return Err(SessionError::Unexpected {
                        what: "boot".into(),
                        reply: format!("{reply:?}"),
                    });
                }
                SessionEvent::Ended(..) => unreachable!("event() turns Ended into an error"),
            }
        }
    }

    fn event(&mut self, timeout: Duration) -> Result<SessionEvent, SessionError> {
        match self.events.recv_timeout(timeout) {
            Ok(SessionEvent::Ended(end, console)) => {
                self.join();
                Err(SessionError::Ended { end: *end, console })
            }
            Ok(e) => Ok(e),
            Err(RecvTimeoutError::Timeout) => Err(SessionError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => {
                self.join();
                Err(SessionError::Ended {
                    end: RunEnd::KvmFailure("the VM thread ended without a report".into()),
                    console: String::new(),
                })
            }
        }
    }

    /// Runs `command`; returns the guest's reply and the VM exits it caused.
    pub fn command(&mut self, command: Command) -> Result<(Reply, ExitCounts), SessionError> {
        if self.commands.send(HostMsg::Command(command)).is_err() {
            return Err(SessionError::Ended {
                end: RunEnd::KvmFailure("the VM thread is gone".into()),
                console: String::new(),
            });
        }
        match self.event(self.timeout)? {
            SessionEvent::Reply(reply, exits) => {
                let mut delta = exit_delta(&self.last_exits, &exits);
                // The reply's own doorbell is how the answer got out, not part of the work.
                if let Some(d) = delta.get_mut("io_doorbell") {
                    *d -= 1;
                    if *d == 0 {
                        delta.remove("io_doorbell");
                    }
                }
                self.last_exits = exits;
                Ok((*reply, delta))
            }
            other => Err(SessionError::Unexpected {
                what: "a command".into(),
                reply: match other {
                    SessionEvent::Started(_) => "a second start".into(),
                    SessionEvent::Ready(..) => "a second ready message".into(),
                    _ => "an unexpected event".into(),
                },
            }),
        }
    }

    /// Shuts the guest down and waits for the VM thread.
    pub fn shutdown(mut self) {
        let _ = self.commands.send(HostMsg::Shutdown { status: 0 });
        self.join();
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GuestSession {
    fn drop(&mut self) {
        let _ = self.commands.send(HostMsg::Shutdown { status: 0 });
        self.join();
    }
}

/// Boots `vm_config` and shuts it down at once; returns the wall-clock boot breakdown and
/// the kernel's ready message (the `boot/<config>` measurement).
pub fn boot_once(
    vm_config: &VmConfig,
    images: GuestImages<'_>,
) -> Result<(BootTimings, ReadyInfo), SessionError> {
    let report = vm::run(
        vm_config,
        images,
        crate::control::Script::new([]),
        Echo::Quiet,
        Instant::now(),
    )?;
    match (&report.end, report.controller.ready.clone()) {
        (RunEnd::Exited { status: 0 }, Some(ready)) => Ok((report.timings.clone(), ready)),
        _ => Err(SessionError::Ended {
            end: report.end.clone(),
            console: report.last_console_lines(20).join("\n"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_deltas_are_per_reason_and_drop_zeroes() {
        let before: ExitCounts = [("io".to_string(), 5), ("io_doorbell".to_string(), 2)].into();
        let after: ExitCounts = [
            ("io".to_string(), 9),
            ("io_doorbell".to_string(), 2),
            ("hlt".to_string(), 1),
        ]
        .into();
        let d = exit_delta(&before, &after);
        assert_eq!(d, [("io".to_string(), 4), ("hlt".to_string(), 1)].into());
    }
}
