//! User programs the kernel starts itself (`init`, the shell, the module manager): loading a
//! static ELF executable into a new task's address space, and running it to its end.
//!
//! Module servers are not started here: the module manager builds them (microkernel
//! configuration) with the task system calls.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use guest_rt::cap;
use kmodlab_abi::channel::FaultReport;
use kmodlab_ipc::layout::{PAGE_SIZE, STACK_TOP, USER_MIN};
use kmodlab_ipc::task::{Perm, TaskId};
use object::elf::{PF_W, PF_X, PT_LOAD};
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{LittleEndian, Object};

use crate::arch::UserContext;
use crate::task::aspace::{AddressSpace, MapError};
use crate::task::{self, CreateError, State, sched, with_tasks};

/// Pages of user stack (below it, a guard: nothing is mapped).
pub const USER_STACK_PAGES: u64 = 16;

/// Why a program could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file is not a well-formed ELF64 executable.
    BadElf(object::Error),
    /// A segment is outside the user range, overlaps the stack or overflows.
    BadSegment {
        /// Virtual address of the segment.
        vaddr: u64,
    },
    /// A segment is both writable and executable (or shares a page with one that makes the
    /// page so).
    WritableAndExecutable {
        /// Virtual address of the segment.
        vaddr: u64,
    },
    /// The entry point is not in an executable segment.
    BadEntry(u64),
    /// Out of memory.
    NoMemory,
    /// No task slot or memory for the task.
    Task(CreateError),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::BadElf(e) => write!(f, "not a valid ELF executable: {e}"),
            LoadError::BadSegment { vaddr } => {
                write!(f, "segment at {vaddr:#x} is outside user memory")
            }
            LoadError::WritableAndExecutable { vaddr } => {
                write!(f, "segment at {vaddr:#x} is writable and executable")
            }
            LoadError::BadEntry(e) => write!(f, "entry point {e:#x} is not executable code"),
            LoadError::NoMemory => write!(f, "out of memory"),
            LoadError::Task(CreateError::TooManyTasks) => write!(f, "no free task slot"),
            LoadError::Task(CreateError::OutOfMemory) => {
                write!(f, "out of memory for the task")
            }
        }
    }
}

fn map_err(e: MapError, vaddr: u64) -> LoadError {
    match e {
        MapError::OutOfMemory => LoadError::NoMemory,
        _ => LoadError::BadSegment { vaddr },
    }
}

/// The permission two segments sharing a page need together, unless that breaks W^X.
fn combine(a: Perm, b: Perm) -> Option<Perm> {
    use Perm::*;
    match (a, b) {
        (x, y) if x == y => Some(x),
        (ReadOnly, other) | (other, ReadOnly) => Some(other),
        _ => None,
    }
}

/// Loads `image` into `aspace` (which holds nothing in the program's range yet) and maps a
/// stack below [`STACK_TOP`]; returns the entry point.
pub fn load(aspace: &mut AddressSpace, image: &[u8]) -> Result<u64, LoadError> {
    let elf = ElfFile64::<LittleEndian>::parse(image).map_err(LoadError::BadElf)?;
    let endian = elf.endian();
    let entry = elf.entry();
    let stack_bottom = STACK_TOP - USER_STACK_PAGES * PAGE_SIZE;
    let mut entry_ok = false;
    // Pages mapped so far and their permission: segments may share a page. A map, not a
    // list: the module manager's 32 MiB arena alone is 8,192 pages, and a linear search per
    // page took minutes where supervisor code is emulated (`--hardware-setup`).
    let mut mapped: BTreeMap<u64, Perm> = BTreeMap::new();
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) != PT_LOAD {
            continue;
        }
        let vaddr = ph.p_vaddr(endian);
        let memsz = ph.p_memsz(endian);
        let flags = ph.p_flags(endian);
        let end = vaddr
            .checked_add(memsz)
            .filter(|&e| vaddr >= USER_MIN && e <= stack_bottom - PAGE_SIZE)
            .ok_or(LoadError::BadSegment { vaddr })?;
        if flags.contains(PF_W) && flags.contains(PF_X) {
            return Err(LoadError::WritableAndExecutable { vaddr });
        }
        let perm = if flags.contains(PF_X) {
            Perm::ReadExecute
        } else if flags.contains(PF_W) {
            Perm::ReadWrite
        } else {
            Perm::ReadOnly
        };
        if perm == Perm::ReadExecute && (vaddr..end).contains(&entry) {
            entry_ok = true;
        }
        let data = ph
            .data(endian, image)
            .map_err(|_| LoadError::BadSegment { vaddr })?;
        if data.len() as u64 > memsz {
            return Err(LoadError::BadSegment { vaddr });
        }
        let first_page = vaddr & !(PAGE_SIZE - 1);
        for page in (first_page..end).step_by(PAGE_SIZE as usize) {
            match mapped.get_mut(&page) {
                Some(have) => {
                    let both =
                        combine(*have, perm).ok_or(LoadError::WritableAndExecutable { vaddr })?;
                    if both != *have {
                        aspace
                            .protect(page, 1, both)
                            .map_err(|e| map_err(e, vaddr))?;
                        *have = both;
                    }
                }
                None => {
                    aspace
                        .map_zeroed(page, 1, perm)
                        .map_err(|e| map_err(e, vaddr))?;
                    mapped.insert(page, perm);
                }
            }
        }
        aspace
            .write(vaddr, data, false)
            .map_err(|_| LoadError::BadSegment { vaddr })?;
    }
    if !entry_ok {
        return Err(LoadError::BadEntry(entry));
    }
    aspace
        .map_zeroed(stack_bottom, USER_STACK_PAGES, Perm::ReadWrite)
        .map_err(|e| map_err(e, stack_bottom))?;
    Ok(entry)
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit` with this status.
    Status(u64),
    /// It took an exception, which ended it.
    Faulted(FaultReport),
    /// It blocked, and so did every other task: it would never have run again.
    Stalled,
}

/// What a finished program produced.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// The values it handed over with `report`, in order.
    pub reports: Vec<u64>,
}

/// Where a program's `read_input` lines come from.
pub enum Input {
    /// Nowhere: `read_input` returns end of input.
    None,
    /// This script, then end of input.
    Script(kmodlab_abi::input::ScriptInput),
    /// The serial console (interactive), until the user sends end of input (Ctrl-D).
    Console,
}

/// The environment a program runs in: its privileges, its input, where its output goes.
pub struct Session {
    /// Capability bits (`guest_rt::cap`).
    pub caps: u64,
    /// Its input.
    pub input: Input,
    /// Where its output goes instead of the serial console, if the caller wants it
    /// (a script's output streams to the VMM).
    pub capture: Option<crate::control::OutputStream>,
    /// The kernel's explanation of its last failed module operation.
    pub last_error: String,
}

impl Session {
    /// All capabilities, no input, output to the console only.
    pub fn new() -> Session {
        Session {
            caps: cap::ALL,
            input: Input::None,
            capture: None,
            last_error: String::new(),
        }
    }

    /// No capabilities, no input: a module server's.
    pub fn none() -> Session {
        Session {
            caps: 0,
            ..Session::new()
        }
    }
}

/// Creates a task for `image` supervised by the kernel, loads it and makes it runnable with
/// `args` in `rdi, rsi, rdx`.
pub fn spawn(
    image: &[u8],
    name: &str,
    args: [u64; 3],
    session: Session,
) -> Result<TaskId, LoadError> {
    let id = with_tasks(|t| t.create(name, None, 0, session)).map_err(LoadError::Task)?;
    let loaded = with_tasks(|t| {
        let task = t.get_mut(id).ok_or(LoadError::NoMemory)?;
        let entry = load(&mut task.aspace, image)?;
        task.ctx = UserContext::new(entry, STACK_TOP, args);
        t.wake(id);
        Ok(())
    });
    if let Err(e) = loaded {
        task::destroy(id);
        return Err(e);
    }
    Ok(id)
}

/// Loads and runs `image` with `args` until it exits or faults.
pub fn run(image: &[u8], args: [u64; 3]) -> Result<Outcome, LoadError> {
    let mut session = Session::new();
    run_in(image, args, &mut session)
}

/// Like [`run`], in `session` (which the program's changes are written back to).
pub fn run_in(image: &[u8], args: [u64; 3], session: &mut Session) -> Result<Outcome, LoadError> {
    let id = spawn(
        image,
        "program",
        args,
        core::mem::replace(session, Session::new()),
    )?;
    let ran = sched::run_until(|| with_tasks(|t| t.get(id).is_none_or(|x| x.state.ended())));
    let (exit, reports, back) = with_tasks(|t| {
        let x = t
            .get_mut(id)
            .expect("the program's task lives until destroyed below");
        let exit = match (&x.state, ran) {
            (State::Exited(s), _) => Exit::Status(*s),
            (State::Faulted(_), _) => Exit::Faulted(x.last_fault.unwrap_or_default()),
            (_, _) => Exit::Stalled,
        };
        (
            exit,
            core::mem::take(&mut x.reports),
            core::mem::replace(&mut x.session, Session::new()),
        )
    });
    task::destroy(id);
    *session = back;
    Ok(Outcome { exit, reports })
}
