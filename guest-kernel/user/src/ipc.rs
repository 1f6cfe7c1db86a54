//! IPC and task system calls for user programs (`kmodlab_ipc` is the contract): the calling
//! side (`call`), the serving side (`recv`, `reply`, `reply_recv`, leases), notifications, and
//! the supervisor's task calls. The message travels in the task's UTCB.

use kmodlab_ipc::msg::{Buffer, Lease, MSG_WORDS, Message, Received, ReplyInfo};
use kmodlab_ipc::task::{Perm, TaskInfo};
use kmodlab_ipc::{layout, sys, utcb};

use crate::{check, syscall6};

fn utcb_area() -> *mut utcb::Area {
    layout::UTCB as *mut utcb::Area
}

fn load() -> utcb::Area {
    // SAFETY: the kernel maps this task's UTCB at layout::UTCB (read-write) for its whole
    // life; only this task's single thread and the kernel (while the task is in a system
    // call) touch it, and any bit pattern is a valid u64.
    unsafe { utcb_area().read_volatile() }
}

fn store(area: &utcb::Area) {
    // SAFETY: as in `load`.
    unsafe { utcb_area().write_volatile(*area) }
}

fn set_message(m: &Message) {
    let mut area = load();
    m.encode(&mut area);
    store(&area);
}

/// The result of a completed call: the status (`Ok`: the replier's non-negative status),
/// the reply's words and payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The replier's status.
    pub status: u64,
    /// The reply's words and payload length.
    pub info: ReplyInfo,
}

/// Why a call failed: the errno, and whether the kernel (not the server) said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallError {
    /// Positive errno.
    pub errno: u64,
    /// The kernel refused or aborted the call (`EPIPE`, `EDEADLK`, ...), rather than the
    /// server answering with an error.
    pub from_kernel: bool,
}

/// A message to send: op, words, an optional payload, reply buffer and leases.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The op.
    pub op: u64,
    /// The words.
    pub words: [u64; MSG_WORDS],
    /// Payload copied to the receiver.
    pub payload: &'a [u8],
    /// Read-only leases.
    pub read_leases: &'a [&'a [u8]],
}

/// Calls the endpoint in `slot` with `out`; a reply payload lands in `reply_buf` and write
/// leases are `write_leases`.
pub fn call(
    slot: u64,
    out: &Outgoing<'_>,
    reply_buf: &mut [u8],
    write_leases: &mut [&mut [u8]],
) -> Result<Reply, CallError> {
    let mut m = Message::new(out.op, out.words);
    m.send = Buffer {
        addr: out.payload.as_ptr() as u64,
        len: out.payload.len() as u64,
    };
    m.reply = Buffer {
        addr: reply_buf.as_mut_ptr() as u64,
        len: reply_buf.len() as u64,
    };
    let mut n = 0;
    for l in out.read_leases {
        if let Some(slot) = m.leases.get_mut(n) {
            *slot = Lease {
                addr: l.as_ptr() as u64,
                len: l.len() as u64,
                flags: kmodlab_ipc::msg::LEASE_READ,
            };
            n += 1;
        }
    }
    for l in write_leases.iter_mut() {
        if let Some(slot) = m.leases.get_mut(n) {
            *slot = Lease {
                addr: l.as_mut_ptr() as u64,
                len: l.len() as u64,
                flags: kmodlab_ipc::msg::LEASE_WRITE,
            };
            n += 1;
        }
    }
    m.lease_count = n;
    set_message(&m);
    let ret = syscall6(sys::CALL, [slot, 0, 0, 0, 0, 0]);
    let info = ReplyInfo::decode(&load());
    match check(ret) {
        Ok(status) => Ok(Reply { status, info }),
        Err(errno) => Err(CallError {
            errno,
            from_kernel: info.from_kernel,
        }),
    }
}

/// Calls the endpoint in `slot` with a message built by the caller (its buffers and leases
/// are addresses in this task's memory; the kernel checks them). For protocols that lay out
/// leases themselves, as the call stubs of module exports do.
pub fn call_message(slot: u64, m: &Message) -> Result<Reply, CallError> {
    set_message(m);
    let ret = syscall6(sys::CALL, [slot, 0, 0, 0, 0, 0]);
    let info = ReplyInfo::decode(&load());
    match check(ret) {
        Ok(status) => Ok(Reply { status, info }),
        Err(errno) => Err(CallError {
            errno,
            from_kernel: info.from_kernel,
        }),
    }
}

/// The smallest call: `op` and words, no payload, no leases.
pub fn call_words(slot: u64, op: u64, words: [u64; MSG_WORDS]) -> Result<Reply, CallError> {
    call(
        slot,
        &Outgoing {
            op,
            words,
            payload: &[],
            read_leases: &[],
        },
        &mut [],
        &mut [],
    )
}

/// Waits on the own endpoint (`slot`); a payload lands in `buf`.
pub fn recv(slot: u64, buf: &mut [u8]) -> Result<Received, u64> {
    check(syscall6(
        sys::RECV,
        [slot, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0],
    ))?;
    Ok(Received::decode(&load()))
}

fn set_reply(words: [u64; MSG_WORDS], payload: &[u8]) {
    let mut m = Message::new(0, words);
    m.send = Buffer {
        addr: payload.as_ptr() as u64,
        len: payload.len() as u64,
    };
    set_message(&m);
}

/// Answers the call `token` with `status`, `words` and `payload`.
pub fn reply(token: u64, status: u64, words: [u64; MSG_WORDS], payload: &[u8]) -> Result<(), u64> {
    set_reply(words, payload);
    check(syscall6(sys::REPLY, [token, status, 0, 0, 0, 0])).map(drop)
}

/// [`reply`] then [`recv`].
pub fn reply_recv(
    token: u64,
    status: u64,
    words: [u64; MSG_WORDS],
    payload: &[u8],
    slot: u64,
    buf: &mut [u8],
) -> Result<Received, u64> {
    set_reply(words, payload);
    check(syscall6(
        sys::REPLY_RECV,
        [
            token,
            status,
            slot,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
        ],
    ))?;
    Ok(Received::decode(&load()))
}

/// Reads lease `index` of call `token` from `offset` into `buf`; returns the bytes read.
pub fn lease_read(token: u64, index: u64, offset: u64, buf: &mut [u8]) -> Result<u64, u64> {
    check(syscall6(
        sys::LEASE_READ,
        [
            token,
            index,
            offset,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
        ],
    ))
}

/// Writes `data` into lease `index` of call `token` at `offset`; returns the bytes written.
pub fn lease_write(token: u64, index: u64, offset: u64, data: &[u8]) -> Result<u64, u64> {
    check(syscall6(
        sys::LEASE_WRITE,
        [
            token,
            index,
            offset,
            data.as_ptr() as u64,
            data.len() as u64,
            0,
        ],
    ))
}

/// Posts notification `bits` to the endpoint in `slot`.
pub fn notify(slot: u64, bits: u64) -> Result<(), u64> {
    check(syscall6(sys::NOTIFY, [slot, bits, 0, 0, 0, 0])).map(drop)
}

/// Appends `text` to the kernel log.
pub fn log(text: &[u8]) -> Result<u64, u64> {
    check(syscall6(
        sys::LOG_WRITE,
        [text.as_ptr() as u64, text.len() as u64, 0, 0, 0, 0],
    ))
}

/// Creates a task named `name` (the caller needs the factory capability in `factory`);
/// its supervisor capability carries `badge`. Returns the caller's slot of it.
pub fn task_create(factory: u64, name: &str, badge: u64) -> Result<u64, u64> {
    check(syscall6(
        sys::TASK_CREATE,
        [
            factory,
            name.as_ptr() as u64,
            name.len() as u64,
            badge,
            0,
            0,
        ],
    ))
}

/// Maps `pages` zeroed pages at `vaddr` in the task with `perm`.
pub fn task_map(task: u64, vaddr: u64, pages: u64, perm: Perm) -> Result<(), u64> {
    check(syscall6(
        sys::TASK_MAP,
        [task, vaddr, pages, perm.code(), 0, 0],
    ))
    .map(drop)
}

/// Unmaps `pages` pages at `vaddr` of the task.
pub fn task_unmap(task: u64, vaddr: u64, pages: u64) -> Result<(), u64> {
    check(syscall6(sys::TASK_UNMAP, [task, vaddr, pages, 0, 0, 0])).map(drop)
}

/// Changes the permissions of mapped pages of the task.
pub fn task_protect(task: u64, vaddr: u64, pages: u64, perm: Perm) -> Result<(), u64> {
    check(syscall6(
        sys::TASK_PROTECT,
        [task, vaddr, pages, perm.code(), 0, 0],
    ))
    .map(drop)
}

/// Copies `data` into the task's memory at `vaddr`.
pub fn task_write(task: u64, vaddr: u64, data: &[u8]) -> Result<(), u64> {
    check(syscall6(
        sys::TASK_WRITE,
        [task, vaddr, data.as_ptr() as u64, data.len() as u64, 0, 0],
    ))
    .map(drop)
}

/// Starts the task at `entry` with stack `stack_top` and `rdi = arg`.
pub fn task_start(task: u64, entry: u64, stack_top: u64, arg: u64) -> Result<(), u64> {
    check(syscall6(
        sys::TASK_START,
        [task, entry, stack_top, arg, 0, 0],
    ))
    .map(drop)
}

/// Destroys the task (and empties the slot).
pub fn task_destroy(task: u64) -> Result<(), u64> {
    check(syscall6(sys::TASK_DESTROY, [task, 0, 0, 0, 0, 0])).map(drop)
}

fn decode_info(buf: &[u8], n: u64) -> Result<TaskInfo, u64> {
    buf.get(..n as usize)
        .and_then(TaskInfo::decode)
        .ok_or(guest_rt::errno::EIO)
}

/// The task's state and accounting.
pub fn task_info(task: u64) -> Result<TaskInfo, u64> {
    let mut buf = [0u8; TaskInfo::MAX_ENCODED];
    let n = check(syscall6(
        sys::TASK_INFO,
        [task, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0],
    ))?;
    decode_info(&buf, n)
}

/// This task's own state and accounting.
pub fn self_info() -> Result<TaskInfo, u64> {
    let mut buf = [0u8; TaskInfo::MAX_ENCODED];
    let n = check(syscall6(
        sys::TASK_SELF_INFO,
        [buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0, 0],
    ))?;
    decode_info(&buf, n)
}

/// Copies the endpoint capability in `mine` into the task, with `badge` and `rights`.
/// Returns the task's slot.
pub fn cap_grant(task: u64, mine: u64, badge: u64, rights: u64) -> Result<u64, u64> {
    check(syscall6(sys::CAP_GRANT, [task, mine, badge, rights, 0, 0]))
}

/// Empties `slot` of the task's table ([`CAP_SELF`] for the caller's own).
pub fn cap_delete(task: u64, slot: u64) -> Result<(), u64> {
    check(syscall6(sys::CAP_DELETE, [task, slot, 0, 0, 0, 0])).map(drop)
}

/// The `task` argument of [`cap_delete`] naming the caller itself.
pub const CAP_SELF: u64 = kmodlab_ipc::cap::SELF_TASK;
