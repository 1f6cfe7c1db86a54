//! Synchronous IPC between tasks: `call`, `recv`, `reply`, `reply_recv`, leases and
//! notifications (the contract is `kmodlab_ipc`), plus calls the kernel makes itself
//! ([`kernel_call`]).
//!
//! Rules the code below keeps:
//! - **Every message is checked before it moves.** The sender's UTCB is decoded with
//!   [`Message::decode`]; every buffer and lease is checked against the sender's own address
//!   space before the sender blocks, so a malformed call fails at once with an errno to the
//!   caller and never reaches the receiver.
//! - **Direct switch.** Delivering a call switches to the receiver; a reply switches to the
//!   caller ([`sched::switch_to`]).
//! - **Nobody waits on the dead.** When a task ends ([`end_task`]) every call queued on it or
//!   being served by it fails with `-EPIPE`, and its supervisor gets
//!   [`notify::CHILD_FAULTED`]. A call that would close a cycle of tasks waiting for each other
//!   fails with `-EDEADLK` instead of hanging (single-threaded servers cannot serve a call while
//!   they wait for one).

use alloc::vec;
use alloc::vec::Vec;

use guest_rt::errno;
use kmodlab_ipc::cap::{notify, rights};
use kmodlab_ipc::msg::{self, Buffer, Lease, Message, Received, ReplyInfo};
use kmodlab_ipc::task::TaskId;
use spin::Mutex;

use crate::task::sched::{self, Stall};
use crate::task::{Caller, Cap, KERNEL_CALLER, MAX_TASKS, State, Tasks, with_tasks};

/// A system call's immediate result, or `None`: the task blocked (someone else sets its
/// result when it is woken).
pub type SysResult = Option<u64>;

fn err(e: u64) -> u64 {
    e.wrapping_neg()
}

#[cfg_attr(feature = "monolithic", allow(dead_code))] // only the microkernel's backend calls the kernel's own IPC
/// Memory a lease of the kernel's own call points into.
#[derive(Debug, Clone, Copy)]
pub enum LeaseMem {
    /// A task's memory (a user program whose system call the kernel forwards).
    Task {
        /// The task.
        task: TaskId,
        /// Start in its address space.
        addr: u64,
    },
    /// Kernel memory that outlives the call (the caller of [`kernel_call`] keeps it).
    Kernel {
        /// Start.
        addr: usize,
    },
}

/// A lease of a call the kernel makes.
#[derive(Debug, Clone, Copy)]
pub struct KernelLease {
    /// Where the memory is.
    pub mem: LeaseMem,
    /// Length.
    pub len: u64,
    /// [`msg::LEASE_READ`] / [`msg::LEASE_WRITE`].
    pub flags: u64,
}

#[cfg_attr(feature = "monolithic", allow(dead_code))] // only the microkernel's backend calls the kernel's own IPC
/// A call the kernel makes to a task.
pub struct KernelRequest<'a> {
    /// Op.
    pub op: u64,
    /// Words.
    pub words: [u64; msg::MSG_WORDS],
    /// Payload copied to the receiver.
    pub payload: &'a [u8],
    /// Leases.
    pub leases: &'a [KernelLease],
    /// Largest reply payload accepted.
    pub reply_cap: usize,
}

#[cfg_attr(feature = "monolithic", allow(dead_code))] // only the microkernel's backend calls the kernel's own IPC
/// The reply to a call the kernel made.
#[derive(Debug)]
pub struct KernelReply {
    /// The replier's status.
    pub status: i64,
    /// Its payload.
    pub payload: Vec<u8>,
}

#[cfg_attr(feature = "monolithic", allow(dead_code))] // only the microkernel's backend calls the kernel's own IPC
/// Why a call the kernel made failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelCallError {
    /// The kernel refused or aborted it with this errno (`EPIPE`: the server is dead or
    /// died; `EBUSY`: the kernel is already waiting for a call of its own).
    Errno(u64),
    /// Every task blocked before the server replied: it will never answer.
    NoAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "monolithic", allow(dead_code))]
enum Phase {
    Idle,
    Queued(TaskId),
    Awaiting(TaskId),
    Done,
}

struct KernelCall {
    phase: Phase,
    op: u64,
    words: [u64; msg::MSG_WORDS],
    payload: Vec<u8>,
    leases: Vec<KernelLease>,
    reply_cap: usize,
    result: Option<Result<KernelReply, u64>>,
}

static KCALL: Mutex<KernelCall> = Mutex::new(KernelCall {
    phase: Phase::Idle,
    op: 0,
    words: [0; msg::MSG_WORDS],
    payload: Vec::new(),
    leases: Vec::new(),
    reply_cap: 0,
    result: None,
});

/// What moves at delivery: the message as the receiver sees it, and the payload bytes.
struct Delivery {
    received: Received,
    payload: Vec<u8>,
}

fn delivery_from(t: &Tasks, from: Caller) -> Option<Delivery> {
    match from {
        Caller::Task(c) => {
            let task = t.get(c)?;
            let State::Sending { msg, badge, .. } = &task.state else {
                return None;
            };
            let mut payload = vec![0u8; msg.send.len as usize];
            task.aspace.read(msg.send.addr, &mut payload).ok()?;
            let mut received = Received {
                sender: c.0,
                badge: *badge,
                op: msg.op,
                words: msg.words,
                len: payload.len() as u64,
                lease_count: msg.lease_count as u64,
                ..Received::default()
            };
            for (i, l) in msg.leases().iter().enumerate() {
                received.lease_len[i] = l.len;
                received.lease_flags[i] = l.flags;
            }
            Some(Delivery { received, payload })
        }
        Caller::Kernel => {
            let k = KCALL.lock();
            let mut received = Received {
                sender: KERNEL_CALLER.0,
                badge: kmodlab_ipc::cap::KERNEL_BADGE,
                op: k.op,
                words: k.words,
                len: k.payload.len() as u64,
                lease_count: k.leases.len() as u64,
                ..Received::default()
            };
            for (i, l) in k.leases.iter().enumerate() {
                received.lease_len[i] = l.len;
                received.lease_flags[i] = l.flags;
            }
            Some(Delivery {
                received,
                payload: k.payload.clone(),
            })
        }
    }
}

/// Moves `from`'s message into receiving task `to` and makes both states follow: `to`
/// becomes runnable (with `recv` returning 0), the caller waits for the reply. On `Err`, the
/// caller must be failed with the errno and `to` keeps receiving.
fn deliver(t: &mut Tasks, from: Caller, to: TaskId) -> Result<(), u64> {
    let Some(d) = delivery_from(t, from) else {
        return Err(errno::EPIPE);
    };
    let Some(rx) = t.get_mut(to) else {
        return Err(errno::EPIPE);
    };
    let State::Receiving { buf } = rx.state else {
        return Err(errno::EPIPE);
    };
    if d.payload.len() as u64 > buf.len {
        return Err(errno::EMSGSIZE);
    }
    rx.aspace
        .write(buf.addr, &d.payload, true)
        .map_err(|_| errno::EFAULT)?;
    crate::stats::count_ipc_message(d.payload.len());
    let mut area = rx.utcb_load();
    d.received.encode(&mut area);
    rx.utcb_store(&area);
    rx.ctx.rax = 0;
    rx.state = State::Runnable;
    t.run_queue.push_back(to);
    sched::switch_to(to);
    match from {
        Caller::Task(c) => {
            if let Some(ct) = t.get_mut(c)
                && let State::Sending { msg, .. } = ct.state
            {
                ct.state = State::AwaitingReply { from: to, msg };
            }
        }
        Caller::Kernel => KCALL.lock().phase = Phase::Awaiting(to),
    }
    Ok(())
}

/// Ends a call of `c` with kernel error `e`.
fn fail_caller(t: &mut Tasks, c: Caller, e: u64) {
    match c {
        Caller::Task(id) => {
            if let Some(task) = t.get_mut(id) {
                if !matches!(
                    task.state,
                    State::Sending { .. } | State::AwaitingReply { .. }
                ) {
                    return;
                }
                task.ctx.rax = err(e);
                let mut area = task.utcb_load();
                ReplyInfo {
                    from_kernel: true,
                    ..ReplyInfo::default()
                }
                .encode(&mut area);
                task.utcb_store(&area);
                t.wake(id);
            }
        }
        Caller::Kernel => {
            let mut k = KCALL.lock();
            if matches!(k.phase, Phase::Queued(_) | Phase::Awaiting(_)) {
                k.result = Some(Err(e));
                k.phase = Phase::Done;
            }
        }
    }
}

/// Whether `target` (transitively) waits for `caller`: then `caller` waiting for `target`
/// would close a cycle.
fn closes_cycle(t: &Tasks, caller: TaskId, target: TaskId) -> bool {
    let mut cur = target;
    for _ in 0..=MAX_TASKS {
        if cur == caller {
            return true;
        }
        let next = match t.get(cur).map(|x| &x.state) {
            Some(State::Sending { to, .. }) => *to,
            Some(State::AwaitingReply { from, .. }) => *from,
            _ => return false,
        };
        cur = next;
    }
    false
}

/// Checks a decoded message's buffers and leases against the sender's memory.
fn check_buffers(t: &Tasks, id: TaskId, m: &Message) -> Result<(), u64> {
    let task = t.get(id).ok_or(errno::ESRCH)?;
    let a = &task.aspace;
    a.check(m.send.addr, m.send.len, false)
        .and_then(|()| a.check(m.reply.addr, m.reply.len, true))
        .map_err(|_| errno::EFAULT)?;
    for l in m.leases() {
        a.check(l.addr, l.len, l.flags & msg::LEASE_WRITE != 0)
            .map_err(|_| errno::EFAULT)?;
    }
    Ok(())
}

/// `call(slot)` by task `c`.
pub fn call(t: &mut Tasks, c: TaskId, slot: u64) -> SysResult {
    let Some(task) = t.get(c) else {
        return Some(err(errno::ESRCH));
    };
    let m = match Message::decode(&task.utcb_load()) {
        Ok(m) => m,
        Err(_) => return Some(err(errno::EINVAL)),
    };
    let (target, badge) = match task.cap(slot) {
        Some(Cap::Endpoint {
            owner,
            badge,
            rights: r,
        }) => {
            if r & rights::SEND == 0 {
                return Some(err(errno::EACCES));
            }
            (owner, badge)
        }
        Some(_) => return Some(err(errno::EACCES)),
        None => return Some(err(errno::EBADF)),
    };
    if let Err(e) = check_buffers(t, c, &m) {
        return Some(err(e));
    }
    match t.get(target) {
        None => return Some(err(errno::EPIPE)),
        Some(s) if s.state.ended() => return Some(err(errno::EPIPE)),
        _ => {}
    }
    if closes_cycle(t, c, target) {
        return Some(err(errno::EDEADLK));
    }
    if let Some(task) = t.get_mut(c) {
        task.state = State::Sending {
            to: target,
            msg: m,
            badge,
        };
        task.running_since = None;
        task.counters.ipc_sent += 1;
    }
    let receiving = matches!(
        t.get(target).map(|s| &s.state),
        Some(State::Receiving { .. })
    );
    if receiving {
        if let Err(e) = deliver(t, Caller::Task(c), target) {
            if let Some(task) = t.get_mut(c) {
                task.state = State::Runnable;
            }
            return Some(err(e));
        }
    } else if let Some(s) = t.get_mut(target) {
        s.queue.push_back(Caller::Task(c));
    }
    None
}

/// Delivers pending notifications to receiving task `id`, if it has any. Returns whether it
/// did (the task is then runnable with `recv` returning 0).
fn deliver_notifications(t: &mut Tasks, id: TaskId) -> bool {
    let Some(task) = t.get_mut(id) else {
        return false;
    };
    if task.notifications == 0 || !matches!(task.state, State::Receiving { .. }) {
        return false;
    }
    let mut area = task.utcb_load();
    Received {
        notifications: core::mem::take(&mut task.notifications),
        ..Received::default()
    }
    .encode(&mut area);
    task.utcb_store(&area);
    task.ctx.rax = 0;
    t.wake(id);
    true
}

/// `recv(slot, buf, cap)` by task `s`.
pub fn recv(t: &mut Tasks, s: TaskId, slot: u64, buf: u64, cap: u64) -> SysResult {
    let Some(task) = t.get(s) else {
        return Some(err(errno::ESRCH));
    };
    match task.cap(slot) {
        Some(Cap::Endpoint { owner, rights, .. }) if owner == s && rights & rights::RECV != 0 => {}
        Some(_) => return Some(err(errno::EACCES)),
        None => return Some(err(errno::EBADF)),
    }
    if task.aspace.check(buf, cap, true).is_err() {
        return Some(err(errno::EFAULT));
    }
    let buf = Buffer {
        addr: buf,
        len: cap,
    };
    if let Some(task) = t.get_mut(s) {
        task.state = State::Receiving { buf };
        task.running_since = None;
    }
    if deliver_notifications(t, s) {
        return None;
    }
    loop {
        let Some(next) = t.get_mut(s).and_then(|x| x.queue.pop_front()) else {
            // Nothing pending: stay receiving.
            return None;
        };
        match deliver(t, next, s) {
            Ok(()) => return None,
            Err(e) => fail_caller(t, next, e),
        }
    }
}

/// `reply(token, status)` by task `s`; returns `recv`-style 0 or a negated errno.
pub fn reply(t: &mut Tasks, s: TaskId, token: u64, status: u64) -> u64 {
    let Some(server) = t.get(s) else {
        return err(errno::ESRCH);
    };
    let m = match Message::decode(&server.utcb_load()) {
        Ok(m) => m,
        Err(_) => return err(errno::EINVAL),
    };
    let mut payload = vec![0u8; m.send.len as usize];
    if server.aspace.read(m.send.addr, &mut payload).is_err() {
        return err(errno::EFAULT);
    }
    if let Some(server) = t.get_mut(s) {
        server.counters.ipc_sent += 1;
    }
    crate::stats::count_ipc_message(payload.len());
    let token = TaskId(token);
    if token == KERNEL_CALLER {
        let mut k = KCALL.lock();
        if k.phase != Phase::Awaiting(s) {
            return err(errno::ESRCH);
        }
        k.phase = Phase::Done;
        if payload.len() > k.reply_cap {
            k.result = Some(Err(errno::EMSGSIZE));
            return err(errno::EMSGSIZE);
        }
        k.result = Some(Ok(KernelReply {
            status: status as i64,
            payload,
        }));
        return 0;
    }
    let Some(caller) = t.get_mut(token) else {
        return err(errno::ESRCH);
    };
    let reply_buf = match &caller.state {
        State::AwaitingReply { from, msg } if *from == s => msg.reply,
        _ => return err(errno::ESRCH),
    };
    let mut area = caller.utcb_load();
    let result = if payload.len() as u64 > reply_buf.len {
        ReplyInfo {
            from_kernel: true,
            ..ReplyInfo::default()
        }
        .encode(&mut area);
        caller.ctx.rax = err(errno::EMSGSIZE);
        err(errno::EMSGSIZE)
    } else if caller.aspace.write(reply_buf.addr, &payload, true).is_err() {
        // The caller's reply buffer was checked when it called; it can only have gone if its
        // supervisor unmapped it meanwhile.
        ReplyInfo {
            from_kernel: true,
            ..ReplyInfo::default()
        }
        .encode(&mut area);
        caller.ctx.rax = err(errno::EFAULT);
        0
    } else {
        ReplyInfo {
            words: m.words,
            len: payload.len() as u64,
            from_kernel: false,
        }
        .encode(&mut area);
        caller.ctx.rax = status;
        0
    };
    caller.utcb_store(&area);
    t.wake(token);
    result
}

/// `reply_recv(token, status, slot, buf, cap)` by task `s`.
pub fn reply_recv(
    t: &mut Tasks,
    s: TaskId,
    token: u64,
    status: u64,
    slot: u64,
    buf: u64,
    cap: u64,
) -> SysResult {
    // A reply to a caller that is gone is not the server's problem here.
    let _ = reply(t, s, token, status);
    let woke = TaskId(token);
    let r = recv(t, s, slot, buf, cap);
    if r.is_none() && t.get(woke).is_some_and(|c| c.state == State::Runnable) {
        sched::switch_to(woke);
    }
    r
}

/// The lease `index` of the call `token` pending on server `s`.
fn lease_of(t: &Tasks, s: TaskId, token: u64, index: u64) -> Result<KernelLease, u64> {
    let token = TaskId(token);
    if token == KERNEL_CALLER {
        let k = KCALL.lock();
        if k.phase != Phase::Awaiting(s) {
            return Err(errno::ESRCH);
        }
        return k
            .leases
            .get(usize::try_from(index).map_err(|_| errno::EINVAL)?)
            .copied()
            .ok_or(errno::EINVAL);
    }
    let caller = t.get(token).ok_or(errno::ESRCH)?;
    let State::AwaitingReply { from, msg } = &caller.state else {
        return Err(errno::ESRCH);
    };
    if *from != s {
        return Err(errno::ESRCH);
    }
    let l: &Lease = msg
        .leases()
        .get(usize::try_from(index).map_err(|_| errno::EINVAL)?)
        .ok_or(errno::EINVAL)?;
    Ok(KernelLease {
        mem: LeaseMem::Task {
            task: token,
            addr: l.addr,
        },
        len: l.len,
        flags: l.flags,
    })
}

/// `lease_read`/`lease_write(token, index, offset, buf, len)` by server `s`: copies at most
/// `len` bytes between the lease (from `offset`) and `s`'s `buf`; returns the count.
pub fn lease_copy(t: &mut Tasks, s: TaskId, a: [u64; 5], write_to_lease: bool) -> Result<u64, u64> {
    let [token, index, offset, buf, len] = a;
    let lease = lease_of(t, s, token, index)?;
    let need = if write_to_lease {
        msg::LEASE_WRITE
    } else {
        msg::LEASE_READ
    };
    if lease.flags & need == 0 {
        return Err(errno::EACCES);
    }
    if offset > lease.len {
        return Err(errno::EINVAL);
    }
    let n = len.min(lease.len - offset);
    let server = t.get(s).ok_or(errno::ESRCH)?;
    server
        .aspace
        .check(buf, n, !write_to_lease)
        .map_err(|_| errno::EFAULT)?;
    // Copy through a bounded kernel buffer, so a 64 MiB lease costs 4 KiB of kernel memory.
    let mut chunk = vec![0u8; 4096];
    let mut done = 0u64;
    while done < n {
        let step = (n - done).min(chunk.len() as u64) as usize;
        let piece = &mut chunk[..step];
        let at = offset + done;
        if write_to_lease {
            let server = t.get(s).ok_or(errno::ESRCH)?;
            server
                .aspace
                .read(buf + done, piece)
                .map_err(|_| errno::EFAULT)?;
            lease_write(t, lease.mem, at, piece)?;
        } else {
            lease_read(t, lease.mem, at, piece)?;
            let server = t.get(s).ok_or(errno::ESRCH)?;
            server
                .aspace
                .write(buf + done, piece, true)
                .map_err(|_| errno::EFAULT)?;
        }
        done += step as u64;
    }
    Ok(n)
}

fn lease_read(t: &Tasks, mem: LeaseMem, at: u64, out: &mut [u8]) -> Result<(), u64> {
    match mem {
        LeaseMem::Task { task, addr } => t
            .get(task)
            .ok_or(errno::ESRCH)?
            .aspace
            .read(addr + at, out)
            .map_err(|_| errno::EFAULT),
        LeaseMem::Kernel { addr } => {
            // SAFETY: the caller of kernel_call keeps the leased kernel memory alive and
            // unchanged until the call returns, and lease_copy bounded `at + out.len()` by the
            // lease's length.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (addr + at as usize) as *const u8,
                    out.as_mut_ptr(),
                    out.len(),
                )
            };
            Ok(())
        }
    }
}

fn lease_write(t: &Tasks, mem: LeaseMem, at: u64, data: &[u8]) -> Result<(), u64> {
    match mem {
        LeaseMem::Task { task, addr } => t
            .get(task)
            .ok_or(errno::ESRCH)?
            .aspace
            .write(addr + at, data, true)
            .map_err(|_| errno::EFAULT),
        LeaseMem::Kernel { addr } => {
            // SAFETY: as in lease_read; a write lease of kernel memory is a buffer the caller
            // of kernel_call owns exclusively for the call's duration.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    (addr + at as usize) as *mut u8,
                    data.len(),
                )
            };
            Ok(())
        }
    }
}

/// `notify(slot, bits)` by task `s`.
pub fn notify_endpoint(t: &mut Tasks, s: TaskId, slot: u64, bits: u64) -> u64 {
    let target = match t.get(s).and_then(|x| x.cap(slot)) {
        Some(Cap::Endpoint { owner, rights, .. }) if rights & rights::NOTIFY != 0 => owner,
        // A supervisor notifies its child through the task capability (e.g. EXIT_REQUESTED).
        Some(Cap::Task(owner)) => owner,
        Some(_) => return err(errno::EACCES),
        None => return err(errno::EBADF),
    };
    post(t, target, bits)
}

/// Posts notification `bits` to task `target`, waking it if it is receiving.
pub fn post(t: &mut Tasks, target: TaskId, bits: u64) -> u64 {
    match t.get_mut(target) {
        Some(x) if !x.state.ended() => x.notifications |= bits,
        _ => return err(errno::EPIPE),
    }
    deliver_notifications(t, target);
    0
}

/// Ends task `id` with `state` (a fault, an exit): it never runs again; every call queued on
/// it or served by it fails with `-EPIPE`; a call it was making is withdrawn; its supervisor
/// is notified.
pub fn end_task(t: &mut Tasks, id: TaskId, state: State) {
    let Some(task) = t.get_mut(id) else { return };
    if task.state.ended() {
        return;
    }
    let was = core::mem::replace(&mut task.state, state);
    task.running_since = None;
    let queued: Vec<Caller> = task.queue.drain(..).collect();
    let supervisor = task.supervisor;
    t.run_queue.retain(|&q| q != id);
    for c in queued {
        fail_caller(t, c, errno::EPIPE);
    }
    let served: Vec<TaskId> = t
        .iter()
        .filter(|x| matches!(&x.state, State::AwaitingReply { from, .. } if *from == id))
        .map(|x| x.id)
        .collect();
    for c in served {
        fail_caller(t, Caller::Task(c), errno::EPIPE);
    }
    let kernel_waits = matches!(
        KCALL.lock().phase,
        Phase::Queued(s) | Phase::Awaiting(s) if s == id
    );
    if kernel_waits {
        fail_caller(t, Caller::Kernel, errno::EPIPE);
    }
    if let State::Sending { to, .. } = was
        && let Some(s) = t.get_mut(to)
    {
        s.queue.retain(|&c| c != Caller::Task(id));
    }
    if let Some(sup) = supervisor {
        let _ = post(t, sup, notify::CHILD_FAULTED);
    }
}

#[cfg_attr(feature = "monolithic", allow(dead_code))] // only the microkernel's backend calls the kernel's own IPC
/// Makes a call to task `target` as the kernel (badge [`kmodlab_ipc::cap::KERNEL_BADGE`],
/// reply token [`KERNEL_CALLER`]), running tasks until it is answered. Not re-entrant: the
/// kernel makes one call at a time (a second one gets `EBUSY`).
pub fn kernel_call(target: TaskId, req: KernelRequest<'_>) -> Result<KernelReply, KernelCallError> {
    {
        let mut k = KCALL.lock();
        if k.phase != Phase::Idle {
            return Err(KernelCallError::Errno(errno::EBUSY));
        }
        k.phase = Phase::Queued(target);
        k.op = req.op;
        k.words = req.words;
        k.payload = req.payload.to_vec();
        k.leases = req.leases.to_vec();
        k.reply_cap = req.reply_cap;
        k.result = None;
    }
    with_tasks(|t| {
        let alive = t.get(target).is_some_and(|s| !s.state.ended());
        if !alive {
            fail_caller(t, Caller::Kernel, errno::EPIPE);
            return;
        }
        let receiving = matches!(
            t.get(target).map(|s| &s.state),
            Some(State::Receiving { .. })
        );
        if receiving {
            if let Err(e) = deliver(t, Caller::Kernel, target) {
                fail_caller(t, Caller::Kernel, e);
            }
        } else if let Some(s) = t.get_mut(target) {
            s.queue.push_back(Caller::Kernel);
        }
    });
    let outcome = sched::run_until(|| KCALL.lock().phase == Phase::Done);
    let mut k = KCALL.lock();
    let result = match outcome {
        Ok(()) => k
            .result
            .take()
            .unwrap_or(Err(errno::EPIPE))
            .map_err(KernelCallError::Errno),
        Err(Stall::AllBlocked) => {
            drop(k);
            // Withdraw the call, so that a late reply finds nothing.
            with_tasks(|t| {
                if let Some(s) = t.get_mut(target) {
                    s.queue.retain(|&c| c != Caller::Kernel);
                }
            });
            k = KCALL.lock();
            Err(KernelCallError::NoAnswer)
        }
    };
    k.phase = Phase::Idle;
    k.payload = Vec::new();
    k.leases = Vec::new();
    k.result = None;
    result
}
