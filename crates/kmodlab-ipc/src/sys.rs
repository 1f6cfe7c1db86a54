//! System call numbers of the IPC and task mechanisms, and their register conventions.
//!
//! A system call is `syscall` with the number in `rax` and arguments in
//! `rdi, rsi, rdx, r10, r8, r9`; the result comes back in `rax`: a non-negative value, or a
//! negated errno. Numbers below 32 are the basic calls every program has (`guest_rt::nr`);
//! these start at 32 so that the two lists never collide. A message's contents travel in the
//! caller's [UTCB](crate::utcb), not in registers: registers carry only what names the
//! operation (a capability slot, a reply token, a status).

/// `call(slot)`: sends the message in the caller's UTCB through the endpoint capability in
/// `slot` and waits for the reply. Returns the replier's status (reply words and payload
/// length in the UTCB), or a kernel error: `-EBADF` (no such capability), `-EACCES` (it does
/// not allow sending), `-EINVAL` (a malformed message), `-EFAULT` (a buffer or lease outside
/// the caller's memory), `-EPIPE` (the server is dead or died during the call), `-EDEADLK`
/// (the call would close a cycle of tasks waiting for each other).
pub const CALL: u64 = 32;
/// `recv(slot, buf, cap)`: waits for a message or notification on the caller's own endpoint
/// (`slot` must hold it with the receive right); a copied payload lands in `buf[..cap]`.
/// Returns 0 with the sender, badge, op, words, payload length and leases in the UTCB's
/// receive area.
pub const RECV: u64 = 33;
/// `reply(token, status)`: answers the call identified by `token` (from the receive area)
/// with `status`, the UTCB's words and its send payload. `-ESRCH` if the caller is no longer
/// waiting for this task's reply.
pub const REPLY: u64 = 34;
/// `reply_recv(token, status, slot, buf, cap)`: [`REPLY`] then [`RECV`] in one call; a
/// failed reply (caller gone) is not an error here: the server simply receives next.
pub const REPLY_RECV: u64 = 35;
/// `lease_read(token, index, offset, buf, len)`: copies `len` bytes at `offset` of lease
/// `index` of the pending call `token` into `buf`. Returns the bytes copied.
pub const LEASE_READ: u64 = 36;
/// `lease_write(token, index, offset, buf, len)`: the other direction, into a write lease.
pub const LEASE_WRITE: u64 = 37;
/// `notify(slot, bits)`: posts notification `bits` to the endpoint behind `slot` (needs the
/// notify right, or a task capability: a supervisor notifies its child); never blocks.
pub const NOTIFY: u64 = 38;

/// `task_create(factory_slot, name, name_len, badge)`: creates an empty task (its own address
/// space, endpoint and UTCB), supervised by the caller. Its slot [`crate::cap::SUPERVISOR`]
/// holds a send capability to the caller's endpoint badged `badge`. Returns the caller's slot
/// of a task capability. Needs the factory capability (only the module manager has it).
pub const TASK_CREATE: u64 = 40;
/// `task_map(task_slot, vaddr, pages, perm)`: maps `pages` fresh zeroed frames at `vaddr` in
/// the task, with [`crate::task::Perm`] `perm` (never writable and executable). `task_slot`
/// may be [`crate::cap::SELF_TASK`] for a caller holding the factory capability (the module
/// manager growing its own heap); for any other caller that is `EACCES`.
pub const TASK_MAP: u64 = 41;
/// `task_unmap(task_slot, vaddr, pages)`: unmaps and frees them.
pub const TASK_UNMAP: u64 = 42;
/// `task_write(task_slot, vaddr, src, len)`: copies `len` bytes from the caller's `src` into
/// the task's mapped memory at `vaddr` (whatever the pages' permissions: this is how code
/// gets in), before or after the task starts.
pub const TASK_WRITE: u64 = 43;
/// `task_start(task_slot, entry, stack_top, arg)`: starts a created task at `entry` with
/// `rdi = arg`.
pub const TASK_START: u64 = 44;
/// `task_destroy(task_slot)`: stops the task and frees everything it has (frames, page
/// tables, endpoint, capabilities); calls in flight to it fail with `-EPIPE`.
pub const TASK_DESTROY: u64 = 45;
/// `task_info(task_slot, buf, cap)`: writes the task's [`crate::task::TaskInfo`] encoding
/// into `buf`; returns its length.
pub const TASK_INFO: u64 = 46;
/// `cap_grant(task_slot, my_slot, badge, rights)`: copies the endpoint capability in the
/// caller's `my_slot` into a free slot of the task, with `badge` and at most the rights it
/// has (`rights` is a mask, [`crate::cap::rights`]); a task capability in `my_slot` names that
/// task's endpoint, with send and notify rights. Returns the task's slot.
pub const CAP_GRANT: u64 = 47;
/// `cap_delete(task_slot, slot)`: empties `slot` of the task's capability table.
pub const CAP_DELETE: u64 = 48;
/// `task_protect(task_slot, vaddr, pages, perm)`: changes the permissions of mapped pages.
pub const TASK_PROTECT: u64 = 49;
/// `log_write(ptr, len)`: appends to the kernel log (what `dmesg` shows), as module code in
/// the kernel does with `kmod_print`; the console also shows it unless the kernel is quiet.
pub const LOG_WRITE: u64 = 50;
/// `task_self_info(buf, cap)`: like [`TASK_INFO`] for the caller itself (no capability
/// needed).
pub const TASK_SELF_INFO: u64 = 51;
