//! Tasks: a user program with its own address space, capability table, endpoint and UTCB.
//!
//! Both configurations run every user program as a task (the shell, `init`); the
//! microkernel configuration also runs the module manager and one task per module server.
//! The kernel runs user code as a call ([`UserContext::run`] returns at the next system call
//! or trap), so scheduling is a loop in [`sched`] that picks a runnable task, switches to its
//! address space and runs it; IPC ([`crate::ipc`]) decides who runs next.
//!
//! Tasks live in a fixed-size table ([`MAX_TASKS`] slots); a [`TaskId`] carries the slot's
//! generation, so an id of a task that is gone never names its successor.

pub mod aspace;
pub mod manage;
pub mod sched;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use kmodlab_ipc::cap::{self, SLOTS, rights};
use kmodlab_ipc::msg::{Buffer, Message};
use kmodlab_ipc::task::{Fault, TaskId, TaskState};
use kmodlab_ipc::{layout, utcb};
use spin::Mutex;

use crate::arch::UserContext;
use crate::user::Session;
use aspace::AddressSpace;

/// Most tasks alive at once.
pub const MAX_TASKS: usize = 64;

/// The kernel itself as a caller (the reply token of a call the kernel makes).
pub const KERNEL_CALLER: TaskId = TaskId::new(u32::MAX, 0);

/// A capability in a task's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// The endpoint of task `owner`, with a badge and rights.
    Endpoint {
        /// The task that receives on it.
        owner: TaskId,
        /// What the receiver sees as the sender's badge.
        badge: u64,
        /// [`rights`] mask.
        rights: u64,
    },
    /// Control of a task: map its memory, start it, destroy it.
    Task(TaskId),
    /// Creating tasks (the module manager's alone).
    Factory,
}

/// Who waits in an endpoint's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A task blocked in `call`.
    Task(TaskId),
    /// The kernel's own call ([`crate::ipc::kernel_call`]).
    Kernel,
}

/// What a task is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Created, not started.
    Created,
    /// Ready to run.
    Runnable,
    /// Waiting in `recv` for a message; a copied payload lands in `buf`.
    Receiving {
        /// The receive buffer.
        buf: Buffer,
    },
    /// Blocked in `call`, queued on `to`'s endpoint.
    Sending {
        /// The callee.
        to: TaskId,
        /// The message (checked), kept until delivery.
        msg: Message,
        /// The badge of the capability used.
        badge: u64,
    },
    /// Blocked in `call`, received by `from`, waiting for its reply.
    AwaitingReply {
        /// The server.
        from: TaskId,
        /// The message: its leases and reply buffer stay valid until the reply.
        msg: Message,
    },
    /// Blocked in a system call the kernel serves by calling another task itself (a module
    /// operation forwarded to the module manager).
    InKernel,
    /// It exited.
    Exited(u64),
    /// It faulted or was stopped; it never runs again.
    Faulted(Fault),
}

impl State {
    /// Whether the task has ended (exited or faulted).
    pub fn ended(&self) -> bool {
        matches!(self, State::Exited(_) | State::Faulted(_))
    }

    /// The state as `task_info` reports it.
    pub fn public(&self) -> TaskState {
        match self {
            State::Created => TaskState::Created,
            State::Runnable | State::InKernel => TaskState::Runnable,
            State::Receiving { .. } => TaskState::Receiving,
            State::Sending { .. } | State::AwaitingReply { .. } => TaskState::Calling,
            State::Exited(s) => TaskState::Exited(*s),
            State::Faulted(f) => TaskState::Faulted(*f),
        }
    }
}

/// Work counters of a task.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// System calls made.
    pub syscalls: u64,
    /// IPC messages sent (calls and replies).
    pub ipc_sent: u64,
    /// TSC cycles spent in user mode.
    pub user_cycles: u64,
}

/// One task.
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// Its name (the program, or the module a server runs).
    pub name: String,
    /// Its address space.
    pub aspace: AddressSpace,
    /// Physical address of its UTCB frame (mapped at [`layout::UTCB`]).
    pub utcb: u64,
    /// Its registers while it is not running.
    pub ctx: UserContext,
    /// What it is doing.
    pub state: State,
    /// Its capabilities.
    pub caps: [Option<Cap>; SLOTS],
    /// Its supervisor, told of its faults; `None`: the kernel.
    pub supervisor: Option<TaskId>,
    /// Callers waiting for this task to receive them, in arrival order.
    pub queue: VecDeque<Caller>,
    /// Notification bits posted and not yet received.
    pub notifications: u64,
    /// The environment of a program the kernel started (capability bits, input, output).
    pub session: Session,
    /// What it handed over with `report`.
    pub reports: Vec<u64>,
    /// Work counters.
    pub counters: Counters,
    /// TSC when it last started running without having blocked since (the watchdog's clock).
    pub running_since: Option<u64>,
    /// The watchdog's budget for it (TSC cycles of computing without blocking), if it is
    /// watched: module servers (tasks with a task supervisor) are; the programs the kernel
    /// runs itself are bounded by the VMM's deadline instead.
    pub watchdog: Option<u64>,
    /// The CPU's report of the exception that ended it, if one did.
    pub last_fault: Option<kmodlab_abi::channel::FaultReport>,
}

impl Task {
    /// Kernel heap bytes this task's kernel objects take.
    pub fn kernel_bytes(&self) -> u64 {
        (core::mem::size_of::<Task>()
            + self.name.capacity()
            + self.queue.capacity() * core::mem::size_of::<Caller>()
            + self.reports.capacity() * 8) as u64
    }

    /// Copies the kernel's area of the UTCB out of its frame.
    pub fn utcb_load(&self) -> utcb::Area {
        let mut area = [0u64; utcb::AREA];
        // SAFETY: the UTCB frame belongs to this task's address space and is reached through
        // the direct map; the task is not running while the kernel handles it (single CPU),
        // so the words cannot change during the copy. Any bit pattern is a valid u64.
        unsafe {
            core::ptr::copy_nonoverlapping(
                crate::mm::paging::phys_to_virt(self.utcb) as *const u64,
                area.as_mut_ptr(),
                utcb::AREA,
            )
        };
        area
    }

    /// Writes the kernel's area of the UTCB back.
    pub fn utcb_store(&self, area: &utcb::Area) {
        // SAFETY: as in `utcb_load`; the frame is the task's own UTCB, nothing of the kernel.
        unsafe {
            core::ptr::copy_nonoverlapping(
                area.as_ptr(),
                crate::mm::paging::phys_to_virt(self.utcb) as *mut u64,
                utcb::AREA,
            )
        };
    }

    /// The first free capability slot (slot 0 and 1 are fixed), if any.
    pub fn free_slot(&self) -> Option<usize> {
        (3..SLOTS).find(|&i| self.caps[i].is_none())
    }

    /// The capability in `slot`.
    pub fn cap(&self, slot: u64) -> Option<Cap> {
        self.caps
            .get(usize::try_from(slot).ok()?)
            .copied()
            .flatten()
    }
}

struct Slot {
    generation: u32,
    task: Option<Task>,
}

/// The task table.
pub struct Tasks {
    slots: Vec<Slot>,
    /// Runnable tasks, in the order they became runnable.
    pub run_queue: VecDeque<TaskId>,
}

/// Why a task could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateError {
    /// All [`MAX_TASKS`] slots are in use.
    TooManyTasks,
    /// No memory for its address space or UTCB.
    OutOfMemory,
}

impl CreateError {
    /// The errno of a `task_create` that failed so.
    pub fn errno(self) -> u64 {
        match self {
            CreateError::TooManyTasks => guest_rt::errno::EAGAIN,
            CreateError::OutOfMemory => guest_rt::errno::ENOMEM,
        }
    }
}

impl Tasks {
    const fn new() -> Tasks {
        Tasks {
            slots: Vec::new(),
            run_queue: VecDeque::new(),
        }
    }

    /// The task `id`, if it still exists.
    pub fn get(&self, id: TaskId) -> Option<&Task> {
        let slot = self.slots.get(id.index() as usize)?;
        slot.task
            .as_ref()
            .filter(|_| slot.generation == id.generation())
    }

    /// The task `id`, if it still exists, for changing.
    pub fn get_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        let slot = self.slots.get_mut(id.index() as usize)?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.task.as_mut()
    }

    /// Every live task.
    pub fn iter(&self) -> impl Iterator<Item = &Task> {
        self.slots.iter().filter_map(|s| s.task.as_ref())
    }

    /// Creates a task named `name`, supervised by `supervisor`, with an empty address space
    /// holding only its UTCB, its own endpoint in slot [`cap::OWN_ENDPOINT`] and, if the
    /// supervisor is a task, that task's endpoint (badged `badge`) in [`cap::SUPERVISOR`].
    pub fn create(
        &mut self,
        name: &str,
        supervisor: Option<TaskId>,
        badge: u64,
        session: Session,
    ) -> Result<TaskId, CreateError> {
        let index = match self.slots.iter().position(|s| s.task.is_none()) {
            Some(i) => i,
            None if self.slots.len() < MAX_TASKS => {
                self.slots.push(Slot {
                    generation: 0,
                    task: None,
                });
                self.slots.len() - 1
            }
            None => return Err(CreateError::TooManyTasks),
        };
        let mut aspace = AddressSpace::new().map_err(|_| CreateError::OutOfMemory)?;
        let utcb = aspace
            .map_zeroed(layout::UTCB, 1, kmodlab_ipc::task::Perm::ReadWrite)
            .map_err(|_| CreateError::OutOfMemory)?;
        let slot = &mut self.slots[index];
        // Generation 0 is never handed out, so TaskId 0 (a notification's "sender") names
        // no task.
        slot.generation = slot.generation.wrapping_add(1).max(1);
        let id = TaskId::new(index as u32, slot.generation);
        let mut caps = [None; SLOTS];
        caps[cap::OWN_ENDPOINT as usize] = Some(Cap::Endpoint {
            owner: id,
            badge: 0,
            rights: rights::RECV | rights::NOTIFY,
        });
        if let Some(sup) = supervisor {
            caps[cap::SUPERVISOR as usize] = Some(Cap::Endpoint {
                owner: sup,
                badge,
                rights: rights::SEND,
            });
        }
        slot.task = Some(Task {
            id,
            name: name.into(),
            aspace,
            utcb,
            ctx: UserContext::default(),
            state: State::Created,
            caps,
            supervisor,
            queue: VecDeque::new(),
            notifications: 0,
            session,
            reports: Vec::new(),
            counters: Counters::default(),
            running_since: None,
            watchdog: supervisor.map(|_| sched::watchdog_budget()),
            last_fault: None,
        });
        Ok(id)
    }

    /// Makes `id` runnable (if it exists) and queues it.
    pub fn wake(&mut self, id: TaskId) {
        if let Some(t) = self.get_mut(id) {
            t.state = State::Runnable;
            self.run_queue.push_back(id);
        }
    }

    /// Removes task `id` from the table and returns it (its address space is freed when the
    /// returned task is dropped, which the caller must do with other tables active).
    pub fn remove(&mut self, id: TaskId) -> Option<Task> {
        let slot = self.slots.get_mut(id.index() as usize)?;
        if slot.generation != id.generation() {
            return None;
        }
        self.run_queue.retain(|&t| t != id);
        slot.task.take()
    }
}

static TASKS: Mutex<Tasks> = Mutex::new(Tasks::new());

/// Runs `f` on the task table. Never held while user code runs or while the kernel waits for
/// another task (see [`sched`]).
pub fn with_tasks<R>(f: impl FnOnce(&mut Tasks) -> R) -> R {
    f(&mut TASKS.lock())
}

/// Destroys task `id`: ends it if it is still alive (callers in flight get `-EPIPE`), then
/// frees its address space and kernel objects. Returns whether it existed.
pub fn destroy(id: TaskId) -> bool {
    let task = with_tasks(|t| {
        if t.get(id).is_some_and(|task| !task.state.ended()) {
            crate::ipc::end_task(t, id, State::Exited(u64::MAX));
        }
        t.remove(id)
    });
    let Some(task) = task else { return false };
    if crate::mm::paging::active_root() == task.aspace.root() {
        // SAFETY: the kernel's own PML4 maps the whole kernel half.
        unsafe { crate::mm::paging::activate(crate::mm::paging::kernel_pml4()) };
    }
    drop(task);
    true
}
