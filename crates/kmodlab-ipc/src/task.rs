//! Task identities, page permissions and the task information the kernel reports.

use serde::{Deserialize, Serialize};

/// A task: slot index in the kernel's task table plus a generation, so that a stale id (of a
/// task that ended and whose slot was reused) never names the new task. Also the reply token
/// of a call: the caller's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub u64);

impl TaskId {
    /// The id of slot `index` in generation `generation`.
    pub const fn new(index: u32, generation: u32) -> TaskId {
        TaskId(((generation as u64) << 32) | index as u64)
    }
    /// The slot index.
    pub const fn index(self) -> u32 {
        self.0 as u32
    }
    /// The generation.
    pub const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// Permissions of a mapped user page. Never writable and executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Perm {
    /// Read-only data.
    ReadOnly,
    /// Read-write data.
    ReadWrite,
    /// Code (read, execute).
    ReadExecute,
}

impl Perm {
    /// The system call argument.
    pub const fn code(self) -> u64 {
        match self {
            Perm::ReadOnly => 1,
            Perm::ReadWrite => 2,
            Perm::ReadExecute => 3,
        }
    }
    /// The permission a system call argument names.
    pub const fn from_code(code: u64) -> Option<Perm> {
        match code {
            1 => Some(Perm::ReadOnly),
            2 => Some(Perm::ReadWrite),
            3 => Some(Perm::ReadExecute),
            _ => None,
        }
    }
}

/// A task's state, as `task_info` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Created, not started.
    Created,
    /// Runnable or running.
    Runnable,
    /// Waiting in `recv`.
    Receiving,
    /// Waiting for a reply (or to be received) in `call`.
    Calling,
    /// It exited with a status.
    Exited(u64),
    /// It took an exception (or was stopped by the kernel's watchdog); never runs again.
    Faulted(Fault),
}

/// Why a task was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Exception vector, or [`WATCHDOG_VECTOR`] when the kernel stopped a task that ran too
    /// long without blocking.
    pub vector: u8,
    /// Error code pushed by the CPU (0 if none).
    pub error_code: u64,
    /// Instruction pointer.
    pub rip: u64,
    /// CR2 (the faulting address of a page fault).
    pub cr2: u64,
    /// Stack pointer.
    pub rsp: u64,
}

/// The pseudo-vector of a task stopped by the watchdog (not an x86 exception vector).
pub const WATCHDOG_VECTOR: u8 = 0xff;

/// What the kernel holds for a task: the memory it costs and the work it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Its id.
    pub id: TaskId,
    /// Its state.
    pub state: TaskState,
    /// User pages mapped (frames it owns), including stack and UTCB.
    pub pages: u64,
    /// Page-table pages of its address space (user half).
    pub page_table_pages: u64,
    /// Kernel heap bytes of its kernel objects (task, endpoint, capability table).
    pub kernel_bytes: u64,
    /// System calls it made.
    pub syscalls: u64,
    /// IPC messages it sent (calls and replies).
    pub ipc_sent: u64,
    /// TSC cycles it ran in user mode (approximately: from entry to the next kernel entry).
    pub user_cycles: u64,
}

impl TaskInfo {
    /// Largest encoding of a `TaskInfo` (a `task_info` buffer of this size always suffices).
    pub const MAX_ENCODED: usize = 128;

    /// Encodes into `buf`; returns the bytes used.
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        postcard::to_slice(self, buf).ok().map(|b| b.len())
    }

    /// Decodes what the kernel wrote.
    pub fn decode(buf: &[u8]) -> Option<TaskInfo> {
        postcard::from_bytes(buf).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_pack_index_and_generation() {
        let id = TaskId::new(7, 3);
        assert_eq!(id.0, 0x3_0000_0007);
        assert_eq!((id.index(), id.generation()), (7, 3));
    }

    #[test]
    fn perms_round_trip_and_unknown_codes_are_refused() {
        for p in [Perm::ReadOnly, Perm::ReadWrite, Perm::ReadExecute] {
            assert_eq!(Perm::from_code(p.code()), Some(p));
        }
        assert_eq!(Perm::from_code(0), None);
        assert_eq!(Perm::from_code(4), None);
    }

    #[test]
    fn task_info_fits_its_bound() {
        let info = TaskInfo {
            id: TaskId(u64::MAX),
            state: TaskState::Faulted(Fault {
                vector: 255,
                error_code: u64::MAX,
                rip: u64::MAX,
                cr2: u64::MAX,
                rsp: u64::MAX,
            }),
            pages: u64::MAX,
            page_table_pages: u64::MAX,
            kernel_bytes: u64::MAX,
            syscalls: u64::MAX,
            ipc_sent: u64::MAX,
            user_cycles: u64::MAX,
        };
        let mut buf = [0u8; TaskInfo::MAX_ENCODED];
        let n = info.encode(&mut buf).expect("fits");
        assert_eq!(TaskInfo::decode(&buf[..n]), Some(info));
        assert_eq!(TaskInfo::decode(&[0xff; 3]), None);
    }
}
