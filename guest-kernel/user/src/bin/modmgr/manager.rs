//! The manager's state and its dispatch: who asks (the kernel, a server, the kernel's fault
//! notification) and what they get.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_rt::errno;
use kmod_manager::ModError;
use kmod_manager::plan::ServerPlan;
use kmod_manager::registry::{ModuleId, Registry};
use kmod_manager::runtime::{self, RuntimeImage};
use kmodlab_abi::channel::ModuleRecord;
use kmodlab_ipc::cap::{KERNEL_BADGE, notify};
use kmodlab_ipc::mgr::{self, Failure};
use kmodlab_ipc::msg::{MSG_WORDS, Received};
use kmodlab_ipc::server::{self, ServerConfig};
use kmodlab_ipc::task::TaskId;
use kmodlab_user::ipc;

use crate::log;

/// The kernel's reply token (`KERNEL_CALLER` in the kernel: slot `u32::MAX`, generation 0).
pub const KERNEL_TOKEN: u64 = TaskId::new(u32::MAX, 0).0;

/// The server runtime in the module archive.
const RUNTIME_PATH: &str = "sbin/kmodrt";

/// One answer to send.
pub struct Answer {
    /// The caller's reply token.
    pub token: u64,
    /// Status (a value, or a negated errno).
    pub status: u64,
    /// Reply words.
    pub words: [u64; MSG_WORDS],
    /// Reply payload.
    pub payload: Vec<u8>,
}

/// Who waits for the outcome of a server's init or exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiter {
    /// Nobody (a restart the policy began after a fault during a call).
    Nobody,
    /// The kernel, in its pending call (token [`KERNEL_TOKEN`]).
    Kernel,
    /// A `request_module` job.
    Job(u64),
}

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Started, not yet asked for its configuration.
    Starting,
    /// Running `init_module`.
    Init,
    /// LIVE, serving calls.
    Serving,
    /// Running `cleanup_module`.
    Exiting,
}

/// What the manager keeps to re-run a module after a fault (restart policy).
pub struct Restart {
    /// The module file.
    pub image: Vec<u8>,
    /// Its parameters (without the manager's own options).
    pub params: String,
    /// Restarts left.
    pub left: u32,
    /// Restarts allowed in all.
    pub allowed: u32,
    /// TSC when the fault that began the current restart was seen (0: not restarting).
    pub since: u64,
}

/// A module server.
pub struct Server {
    /// Its module.
    pub module: ModuleId,
    /// The manager's capability slot of its task.
    pub slot: u64,
    /// Its task id.
    pub task: TaskId,
    /// Where its parts are.
    pub plan: ServerPlan,
    /// What its runtime asks for at start.
    pub config: ServerConfig,
    /// End of its heap mapped so far.
    pub heap_end: u64,
    /// Whether the init region is still mapped.
    pub init_mapped: bool,
    /// Its phase.
    pub phase: Phase,
    /// Who waits for its init or exit.
    pub waiter: Waiter,
    /// Endpoint capabilities granted to it: (the providing module, slot in this server).
    pub grants: Vec<(ModuleId, u64)>,
    /// TSC at the start of its load (the INSMOD), at `task_start`, and at its HELLO.
    pub tsc_load: u64,
    /// TSC at `task_start`.
    pub tsc_start: u64,
    /// TSC when init began (the HELLO was answered).
    pub tsc_init: u64,
    /// Restart policy state, if the module may be restarted.
    pub restart: Option<Box<Restart>>,
    /// Cycles of relocating its module, and of doing it again over the touched pages (the
    /// monolithic kernel's measurement, logged when the module is LIVE).
    pub relocation: (u64, u64),
}

/// A `request_module` in progress: the modules still to load, in order.
pub struct Job {
    /// Its id.
    pub id: u64,
    /// The module that asked (its server waits in its call).
    pub requester: ModuleId,
    /// The requester's reply token.
    pub token: u64,
    /// The module asked for.
    pub name: String,
    /// Archive paths still to load, in order.
    pub queue: VecDeque<String>,
}

/// The manager.
pub struct Manager {
    /// Start flags (`kmodlab_ipc::mgr::flags`).
    pub flags: u64,
    /// TSC frequency in kHz (0: unknown).
    pub tsc_khz: u64,
    /// Every module and service.
    pub registry: Registry,
    /// The server runtime.
    pub runtime: RuntimeImage<'static>,
    /// Every module server.
    pub servers: Vec<Server>,
    /// `request_module` jobs in progress.
    pub jobs: Vec<Job>,
    /// The next job id.
    pub next_job: u64,
    /// Whether the kernel's call is pending (answered when a load or unload completes).
    pub kernel_waits: bool,
    /// Answers to send once the current request is handled.
    pub outbox: Vec<Answer>,
    /// Restarts in progress (servers re-running their init for the restart policy).
    pub restarting: Vec<ModuleId>,
    /// The key module signatures are checked against (the build's; `None`: none usable).
    pub signing_key: Option<kmod_sig::TrustedKey>,
    /// Whether the notice about a module without a valid signature was logged (once).
    pub warned_unsigned: bool,
    /// A request of the kernel that arrived during a restart, handled once it is over: the
    /// kernel runs tasks only while it waits for a call, so a restart that nobody waits for
    /// would not progress; and whoever asks the kernel about modules then sees the outcome.
    pub deferred: Option<(Received, Vec<u8>)>,
}

impl Manager {
    /// Reads and checks the server runtime.
    pub fn new(flags: u64, tsc_khz: u64) -> Result<Manager, String> {
        let image = kmodlab_user::read_file(RUNTIME_PATH)
            .map_err(|e| format!("{RUNTIME_PATH}: cannot read it (errno {e})"))?;
        // The runtime image lives as long as the manager: every server gets a copy of it.
        let image: &'static [u8] = Vec::leak(image);
        let runtime = runtime::parse(image, kmod_api::KERNEL_API_SYMBOLS)
            .map_err(|e| format!("{RUNTIME_PATH}: {e}"))?;
        let key = kmodlab_user::MODULE_SIGNING_KEY;
        let signing_key = if key.is_empty() {
            None
        } else {
            match kmod_sig::TrustedKey::from_spki_der(key) {
                Ok(k) => Some(k),
                Err(e) => {
                    log(&format!(
                        "module: the embedded signing key is unusable: {e}\n"
                    ));
                    None
                }
            }
        };
        if flags & mgr::flags::SIG_ENFORCE != 0 {
            log("module: signatures enforced (module.sig_enforce=1)\n");
        }
        Ok(Manager {
            flags,
            tsc_khz,
            registry: Registry::new(),
            runtime,
            servers: Vec::new(),
            jobs: Vec::new(),
            next_job: 1,
            kernel_waits: false,
            outbox: Vec::new(),
            restarting: Vec::new(),
            signing_key,
            warned_unsigned: false,
            deferred: None,
        })
    }

    /// Queues an answer.
    pub fn answer(&mut self, token: u64, status: i64, words: [u64; MSG_WORDS], payload: Vec<u8>) {
        let a = Answer {
            token,
            status: status as u64,
            words,
            payload,
        };
        // The kernel's answer goes last: once it has it, the kernel stops running tasks for
        // its call, and the other answers would wait for the next one.
        if token == KERNEL_TOKEN {
            self.outbox.push(a);
        } else {
            self.outbox.insert(0, a);
        }
    }

    /// Answers the kernel's pending call with an encoded reply.
    pub fn answer_kernel<T: serde::Serialize>(&mut self, reply: &T) {
        if !self.kernel_waits {
            return;
        }
        self.kernel_waits = false;
        match mgr::encode(reply) {
            Ok(bytes) => self.answer(KERNEL_TOKEN, 0, [0; MSG_WORDS], bytes),
            Err(_) => self.answer(
                KERNEL_TOKEN,
                -(errno::EIO as i64),
                [0; MSG_WORDS],
                Vec::new(),
            ),
        }
    }

    /// The server of module `id`.
    pub fn server(&self, id: ModuleId) -> Option<&Server> {
        self.servers.iter().find(|s| s.module == id)
    }

    /// The server of module `id`, for changing.
    pub fn server_mut(&mut self, id: ModuleId) -> Option<&mut Server> {
        self.servers.iter_mut().find(|s| s.module == id)
    }

    /// Handles one received message (or notification).
    pub fn handle(&mut self, msg: &Received, payload: &[u8]) {
        if msg.sender == 0 {
            if msg.notifications & notify::CHILD_FAULTED != 0 {
                self.reap();
            }
            return;
        }
        if msg.badge == KERNEL_BADGE {
            if !self.restarting.is_empty() && self.deferred.is_none() && !self.kernel_waits {
                self.deferred = Some((*msg, payload.to_vec()));
                return;
            }
            self.kernel_request(msg, payload);
        } else {
            self.server_request(msg.badge, msg, payload);
        }
    }

    // ---- the kernel's requests --------------------------------------------------------

    fn kernel_request(&mut self, msg: &Received, payload: &[u8]) {
        if self.kernel_waits {
            // The kernel makes one call at a time; a second one means its state is broken.
            self.answer(
                msg.sender,
                -(errno::EBUSY as i64),
                [0; MSG_WORDS],
                Vec::new(),
            );
            return;
        }
        self.kernel_waits = msg.sender == KERNEL_TOKEN;
        let start = guest_rt::rdtsc_ordered();
        match msg.op {
            mgr::op::INSMOD => match mgr::decode::<mgr::Insmod>(payload) {
                Ok(req) => {
                    let r = self.insmod_leased(msg, &req, start);
                    self.finish_kernel_load(r);
                }
                Err(_) => self.refuse_kernel(errno::EINVAL),
            },
            mgr::op::INSMOD_ARCHIVE => match mgr::decode::<mgr::InsmodArchive>(payload) {
                Ok(req) => {
                    let r = self.insmod_archive(&req.name, &req.params, start);
                    self.finish_kernel_load(r);
                }
                Err(_) => self.refuse_kernel(errno::EINVAL),
            },
            mgr::op::RMMOD => match mgr::decode::<mgr::Rmmod>(payload) {
                Ok(req) => {
                    if let Err(e) = self.rmmod(&req.name, req.may_manage_modules) {
                        let reply: mgr::DoneReply = Err(Failure::from(&e));
                        self.answer_kernel(&reply);
                    }
                }
                Err(_) => self.refuse_kernel(errno::EINVAL),
            },
            mgr::op::LIST => {
                self.refresh_footprints();
                let reply = mgr::ListReply {
                    modules: self.registry.records(),
                    transitions: self.registry.transitions(),
                };
                self.answer_kernel(&reply);
            }
            mgr::op::SERVICE_LOOKUP => match mgr::decode::<mgr::ServiceLookup>(payload) {
                Ok(req) => {
                    let reply: mgr::ServiceLookupReply = match self
                        .registry
                        .lookup_service(&req.service)
                        .and_then(|s| Some((s.id, self.server(s.owner)?.task)))
                    {
                        Some((index, task)) => Ok(mgr::ServiceAddress { task, index }),
                        None => Err(Failure {
                            errno: errno::ENOENT,
                            message: format!("no service {}", req.service),
                        }),
                    };
                    self.answer_kernel(&reply);
                }
                Err(_) => self.refuse_kernel(errno::EINVAL),
            },
            mgr::op::LOCATE => match mgr::decode::<mgr::Locate>(payload) {
                Ok(req) => {
                    let reply: mgr::LocateReply = self.locate(req.task, req.addr);
                    self.answer_kernel(&reply);
                }
                Err(_) => self.refuse_kernel(errno::EINVAL),
            },
            _ => self.refuse_kernel(errno::ENOSYS),
        }
    }

    /// A restart of module `id` ended (LIVE or not): a kernel request held meanwhile runs.
    pub fn restart_over(&mut self, id: ModuleId) {
        self.restarting.retain(|&m| m != id);
        if self.restarting.is_empty()
            && let Some((msg, payload)) = self.deferred.take()
        {
            self.kernel_request(&msg, &payload);
        }
    }

    fn refuse_kernel(&mut self, e: u64) {
        self.kernel_waits = false;
        self.answer(KERNEL_TOKEN, -(e as i64), [0; MSG_WORDS], Vec::new());
    }

    /// A load the kernel asked for: answered now if it failed before its server started,
    /// else when the server reports its init.
    fn finish_kernel_load(&mut self, r: Result<ModuleId, ModError>) {
        if let Err(e) = r {
            self.fail_waiter(Waiter::Kernel, &e);
        }
    }

    /// `INSMOD`: the image is lease 0 of the kernel's call.
    fn insmod_leased(
        &mut self,
        msg: &Received,
        req: &mgr::Insmod,
        start: u64,
    ) -> Result<ModuleId, ModError> {
        if !req.may_manage_modules {
            return Err(ModError::Permission);
        }
        if msg.lease_count < 1 || msg.lease_flags[0] & kmodlab_ipc::msg::LEASE_READ == 0 {
            return Err(ModError::BadImage);
        }
        let len = usize::try_from(msg.lease_len[0]).map_err(|_| ModError::BadImage)?;
        let mut image: Vec<u8> = Vec::new();
        image
            .try_reserve_exact(len)
            .map_err(|_| ModError::NoMemory {
                module: String::from("the module image"),
            })?;
        image.resize(len, 0);
        // Copy the whole image out of the caller once: the loader must not read memory the
        // caller could change between checks and use.
        let mut done = 0usize;
        while done < len {
            let n = ipc::lease_read(msg.sender, 0, done as u64, &mut image[done..])
                .map_err(|_| ModError::BadImage)? as usize;
            if n == 0 {
                return Err(ModError::BadImage);
            }
            done += n;
        }
        self.load(image, &req.params, Waiter::Kernel, start)
    }

    /// `INSMOD_ARCHIVE`: `lib/modules/NAME.ko`.
    fn insmod_archive(
        &mut self,
        name: &str,
        params: &str,
        start: u64,
    ) -> Result<ModuleId, ModError> {
        let image = kmodlab_user::read_file(&format!("lib/modules/{name}.ko"))
            .map_err(|_| ModError::NotInArchive(name.into()))?;
        self.load(image, params, Waiter::Kernel, start)
    }

    /// `delete_module`: answered when the server's exit has run (or now, if refused).
    fn rmmod(&mut self, name: &str, may_manage: bool) -> Result<(), ModError> {
        if !may_manage {
            return Err(ModError::Permission);
        }
        if self.flags & mgr::flags::UNLOAD == 0 {
            return Err(ModError::NotSupported);
        }
        match self.registry.begin_unload(name)? {
            kmod_manager::registry::Unload::Forget(id) => {
                // Its server is gone already: only the record remains.
                self.discard(id);
                let reply: mgr::DoneReply = Ok(());
                self.answer_kernel(&reply);
            }
            kmod_manager::registry::Unload::RunExit(id) => {
                self.notify_state(id, kmodlab_abi::channel::ModuleState::Going);
                let slot = match self.server_mut(id) {
                    Some(s) => {
                        s.phase = Phase::Exiting;
                        s.waiter = Waiter::Kernel;
                        s.slot
                    }
                    None => {
                        self.discard(id);
                        let reply: mgr::DoneReply = Ok(());
                        self.answer_kernel(&reply);
                        return Ok(());
                    }
                };
                // The server runs its exit when it next waits for a request.
                if ipc::notify(slot, notify::EXIT_REQUESTED).is_err() {
                    // It died meanwhile: the fault notification finishes the unload.
                    self.reap();
                }
            }
        }
        Ok(())
    }

    /// Tells whoever waits for a load or unload that it failed.
    pub fn fail_waiter(&mut self, waiter: Waiter, e: &ModError) {
        match waiter {
            Waiter::Nobody => log(&format!("module: {e}\n")),
            Waiter::Kernel => {
                // A load's and an unload's replies encode alike on failure.
                let reply: mgr::DoneReply = Err(Failure::from(e));
                self.answer_kernel(&reply);
            }
            Waiter::Job(job) => self.fail_job(job, e),
        }
    }

    /// Tells whoever waits for a load that module `id` is LIVE.
    pub fn succeed_load(&mut self, waiter: Waiter, id: ModuleId) {
        match waiter {
            Waiter::Nobody => {}
            Waiter::Kernel => {
                self.refresh_footprints();
                let record: Option<ModuleRecord> =
                    self.registry.get(id).map(|m| self.registry.record(m));
                let reply: mgr::LoadReply = record.ok_or_else(|| Failure {
                    errno: errno::EIO,
                    message: String::from("the module vanished"),
                });
                self.answer_kernel(&reply);
            }
            Waiter::Job(job) => self.step_job(job),
        }
    }

    /// Logs a lifecycle transition, as the monolithic kernel's notifier chain does.
    pub fn notify_state(&self, id: ModuleId, state: kmodlab_abi::channel::ModuleState) {
        let name = self.registry.get(id).map_or("?", |m| m.name.as_str());
        let what = match state {
            kmodlab_abi::channel::ModuleState::Coming => "COMING",
            kmodlab_abi::channel::ModuleState::Live => "LIVE",
            kmodlab_abi::channel::ModuleState::Going => "GOING",
        };
        log(&format!("module {name} (#{id}): {what}\n"));
    }

    /// The module (and offset) of `addr` in task `task`.
    fn locate(&self, task: TaskId, addr: u64) -> Option<(String, u64)> {
        let s = self.servers.iter().find(|s| s.task == task)?;
        let (_, offset) = s.plan.locate(addr, s.init_mapped)?;
        Some((self.registry.get(s.module)?.name.clone(), offset))
    }

    /// Updates every server's memory accounting from what the kernel holds for it.
    pub fn refresh_footprints(&mut self) {
        for s in &self.servers {
            let Ok(info) = ipc::task_info(s.slot) else {
                continue;
            };
            if let Some(m) = self.registry.get_mut(s.module) {
                let f = &mut m.footprint;
                f.page_table_pages = info.page_table_pages;
                f.kernel_object_bytes = info.kernel_bytes;
                f.heap_bytes = s.heap_end - kmodlab_ipc::layout::HEAP_BASE;
            }
        }
    }

    // ---- servers' requests ------------------------------------------------------------

    fn server_request(&mut self, id: ModuleId, msg: &Received, payload: &[u8]) {
        let token = msg.sender;
        if self.server(id).is_none() {
            self.answer(token, -(errno::ESRCH as i64), [0; MSG_WORDS], Vec::new());
            return;
        }
        let err = |e: u64| -(e as i64);
        let request = match server::Request::decode(msg.op, &msg.words, payload) {
            Ok(r) => r,
            Err(e) => {
                let errno = match e {
                    server::RequestError::UnknownOp(_) => errno::ENOSYS,
                    server::RequestError::BadName => errno::EINVAL,
                };
                self.answer(token, err(errno), [0; MSG_WORDS], Vec::new());
                return;
            }
        };
        match request {
            server::Request::Hello { reply_cap } => self.hello(id, token, reply_cap),
            server::Request::InitDone { status } => self.init_done(id, token, status),
            server::Request::ExitDone { blocks, bytes } => self.exit_done(id, token, blocks, bytes),
            server::Request::HeapGrow { bytes } => {
                let (status, words) = match self.grow_heap(id, bytes) {
                    Ok((start, len)) => (0, [start, len, 0, 0, 0, 0]),
                    Err(e) => (err(e), [0; MSG_WORDS]),
                };
                self.answer(token, status, words, Vec::new());
            }
            server::Request::RequestModule { name } => {
                let n = String::from(name);
                self.request_module(id, token, &n);
            }
            server::Request::ServiceRegister { name } => {
                let owned = self.registry.services_of(id);
                let (status, words) = match if owned >= MAX_SERVICES_PER_MODULE {
                    Err(kmod_manager::registry::ServiceError::TooMany)
                } else {
                    self.registry.register_service(id, name)
                } {
                    Ok(sid) => (0, [sid, 0, 0, 0, 0, 0]),
                    Err(e) => (err(e.errno()), [0; MSG_WORDS]),
                };
                self.answer(token, status, words, Vec::new());
            }
            server::Request::ServiceUnregister { name } => {
                let (status, words) = match self.registry.unregister_service(id, name) {
                    Ok(sid) => (0, [sid, 0, 0, 0, 0, 0]),
                    Err(e) => (err(e.errno()), [0; MSG_WORDS]),
                };
                self.answer(token, status, words, Vec::new());
            }
            server::Request::ServiceLookup { name } => {
                let (status, words) = match self.lookup_for(id, name) {
                    Ok((slot, sid)) => (0, [slot, sid, 0, 0, 0, 0]),
                    Err(e) => (err(e), [0; MSG_WORDS]),
                };
                self.answer(token, status, words, Vec::new());
            }
        }
    }

    /// Maps more heap for server `id`: at least what it asked, in 64 KiB steps.
    fn grow_heap(&mut self, id: ModuleId, bytes: u64) -> Result<(u64, u64), u64> {
        let step = kmod_manager::plan::HEAP_PAGES * kmodlab_ipc::layout::PAGE_SIZE;
        let len = bytes
            .checked_add(step - 1)
            .map(|b| b / step * step)
            .ok_or(errno::ENOMEM)?;
        let s = self.server_mut(id).ok_or(errno::ESRCH)?;
        let end = s.heap_end.checked_add(len).ok_or(errno::ENOMEM)?;
        if end > kmodlab_ipc::layout::HEAP_END {
            return Err(errno::ENOMEM);
        }
        ipc::task_map(
            s.slot,
            s.heap_end,
            len / kmodlab_ipc::layout::PAGE_SIZE,
            kmodlab_ipc::task::Perm::ReadWrite,
        )
        .map_err(|_| errno::ENOMEM)?;
        let start = s.heap_end;
        s.heap_end = end;
        Ok((start, len))
    }

    /// A lookup of service `name` by server `id`: the slot (in `id`) of the owner's endpoint
    /// and the service id. The endpoint is granted once per pair of servers.
    fn lookup_for(&mut self, id: ModuleId, name: &str) -> Result<(u64, u64), u64> {
        let (owner, sid) = self
            .registry
            .lookup_service(name)
            .map(|s| (s.owner, s.id))
            .ok_or(errno::ENOENT)?;
        if owner == id {
            return Ok((SELF_SLOT, sid));
        }
        let slot = self.grant(id, owner)?;
        Ok((slot, sid))
    }

    /// The slot, in server `client`, of a send capability to server `provider`'s endpoint
    /// (badged with the client's id), granting it if the client has none yet.
    pub fn grant(&mut self, client: ModuleId, provider: ModuleId) -> Result<u64, u64> {
        let provider_slot = self.server(provider).ok_or(errno::ENOENT)?.slot;
        let c = self.server_mut(client).ok_or(errno::ESRCH)?;
        if let Some(&(_, slot)) = c.grants.iter().find(|(p, _)| *p == provider) {
            return Ok(slot);
        }
        let slot = ipc::cap_grant(
            c.slot,
            provider_slot,
            client,
            kmodlab_ipc::cap::rights::SEND,
        )?;
        c.grants.push((provider, slot));
        Ok(slot)
    }

    /// Destroys module `id`'s server (if it has one) and takes back every capability to it
    /// that other servers hold, so that their handles and stubs fail cleanly.
    pub fn destroy_server(&mut self, id: ModuleId) {
        if let Some(i) = self.servers.iter().position(|s| s.module == id) {
            let s = self.servers.remove(i);
            let _ = ipc::task_destroy(s.slot);
        }
        for other in &mut self.servers {
            other.grants.retain(|&(p, slot)| {
                if p == id {
                    let _ = ipc::cap_delete(other.slot, slot);
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Undoes a module: GOING (if it was not), its services, its server, its record; as
    /// the monolithic kernel's `free_module`.
    pub fn discard(&mut self, id: ModuleId) {
        if self.registry.set_going(id) {
            self.notify_state(id, kmodlab_abi::channel::ModuleState::Going);
        }
        let name = self
            .registry
            .get(id)
            .map_or_else(String::new, |m| m.name.clone());
        let services = self.registry.drop_services_of(id);
        if services > 0 {
            log(&format!(
                "module {name}: dropped {services} service(s) it left registered\n"
            ));
        }
        self.destroy_server(id);
        self.registry.remove(id);
    }
}

/// Most services one module may register (the manager's memory is finite; a module
/// registering without end gets `-ENOSPC`).
pub const MAX_SERVICES_PER_MODULE: usize = 64;

/// The slot a lookup answers for a service of the asking server itself (the runtime calls
/// its own handler directly; `kmodrt`'s `services::SELF_SLOT`).
pub const SELF_SLOT: u64 = u64::MAX;
