//! A load, step by step: the monolithic kernel's `load_module` steps (validate, parameters,
//! layout, resolve, copy, relocate, protect, init), each timed with the TSC, plus the steps
//! only a module server has — creating its address space, transferring the image into it,
//! starting it. The synchronous part ends with `task_start`; the rest happens when the
//! server reports (HELLO, INIT_DONE), because the manager never waits for a server.
//!
//! Once the module is announced COMING, every failure goes through [`Manager::discard`],
//! which undoes all steps that ran (the server, with everything the kernel gave it, goes as
//! one task), so memory is as before the load.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

use guest_rt::rdtsc_ordered;
use kmod_loader::{Loaded, Permission, ProvidedSymbol, ProviderId, RegionMemory, Regions};
use kmod_manager::ModError;
use kmod_manager::plan::{self, HEAP_PAGES, PlanError, STACK_PAGES};
use kmod_manager::registry::{Export, ModuleId};
use kmodlab_abi::channel::{FaultPhase, ModuleState};
use kmodlab_ipc::layout::{self, PAGE_SIZE};
use kmodlab_ipc::msg::MSG_WORDS;
use kmodlab_ipc::server::{self, Import, ServedExport, ServerConfig};
use kmodlab_ipc::task::Perm;
use kmodlab_user::ipc;

use crate::log;
use crate::manager::{Manager, Phase, Restart, Server, Waiter};

/// The option a user adds to insmod's parameters to have a faulted module re-run up to N
/// times (`server.restart=N`). Taken out before the module's own parameters are parsed; a
/// dotted name can never be a module's parameter.
pub const RESTART_OPTION: &str = "server.restart=";
/// Most restarts one load may ask for.
pub const MAX_RESTARTS: u32 = 8;

/// An import of another module's export, given a stub while resolving.
struct PlannedImport {
    name: String,
    provider: ModuleId,
    index: usize,
    signature: Option<Vec<u8>>,
}

/// What the module's undefined symbols resolve to in its server: kernel API functions to the
/// runtime's, exports of LIVE modules to call stubs (numbered in resolution order).
struct ServerSymbols<'a> {
    manager: &'a Manager,
    me: ModuleId,
    imports: RefCell<Vec<PlannedImport>>,
}

impl kmod_loader::SymbolProvider for ServerSymbols<'_> {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        if let Some(address) = self.manager.runtime.api_address(name) {
            return Some(ProvidedSymbol {
                address,
                provider: ProviderId(0),
            });
        }
        let (provider, index, export) = self.manager.registry.export(name, self.me)?;
        let mut imports = self.imports.borrow_mut();
        let stub = match imports.iter().position(|i| i.name == name) {
            Some(i) => i,
            None => {
                imports.push(PlannedImport {
                    name: name.into(),
                    provider,
                    index,
                    signature: export.signature.clone(),
                });
                imports.len() - 1
            }
        };
        Some(ProvidedSymbol {
            address: layout::STUB_BASE + stub as u64 * server::STUB_SIZE,
            provider: ProviderId(provider),
        })
    }
}

fn perm(p: Permission) -> Perm {
    match p {
        Permission::ReadExecute => Perm::ReadExecute,
        Permission::ReadOnly => Perm::ReadOnly,
        Permission::ReadWrite => Perm::ReadWrite,
    }
}

/// Takes the manager's own options out of insmod's parameter string.
fn split_options(params: &str) -> Result<(Option<u32>, String), String> {
    let mut restart = None;
    let mut rest: Vec<&str> = Vec::new();
    for word in params.split_whitespace() {
        match word.strip_prefix(RESTART_OPTION) {
            Some(n) => match n.parse::<u32>() {
                Ok(n) if n <= MAX_RESTARTS => restart = Some(n),
                _ => return Err(n.into()),
            },
            None => rest.push(word),
        }
    }
    Ok((restart, rest.join(" ")))
}

impl Manager {
    /// Starts loading `image`: everything up to the server's start. Returns the module's id;
    /// `waiter` hears the outcome when the server reports its init.
    pub fn load(
        &mut self,
        image: Vec<u8>,
        params: &str,
        waiter: Waiter,
        start: u64,
    ) -> Result<ModuleId, ModError> {
        self.load_with(image, params, waiter, start, None)
    }

    /// [`Manager::load`], continuing a restart (`restart`: what the policy kept).
    pub fn load_with(
        &mut self,
        image: Vec<u8>,
        params: &str,
        waiter: Waiter,
        start: u64,
        restart: Option<Box<Restart>>,
    ) -> Result<ModuleId, ModError> {
        let mut cycles = kmodlab_abi::channel::LoadCycles {
            copy: rdtsc_ordered() - start,
            ..Default::default()
        };
        let mut t = rdtsc_ordered();
        let mut lap = |slot: &mut u64| {
            let now = rdtsc_ordered();
            *slot = now - t;
            t = now;
        };
        // module_sig_check: before anything parses the image; the loader sees the ELF part.
        let enforce = self.flags & kmodlab_ipc::mgr::flags::SIG_ENFORCE != 0;
        let signed = kmod_manager::signature::check(&image, self.signing_key.as_ref(), enforce)
            .inspect_err(|e| {
                if let ModError::SignatureRequired { reason, .. } = e {
                    log(&format!("Loading of {reason} is rejected\n"));
                }
            })?;
        lap(&mut cycles.verify);
        let module = kmod_loader::validate(signed.image).map_err(ModError::Invalid)?;
        let name = module.name().to_string();
        if name.is_empty() {
            return Err(ModError::NoName);
        }
        if !signed.sig_ok && !self.warned_unsigned {
            self.warned_unsigned = true;
            log(&kmod_manager::signature::unverified_notice(&name));
        }
        lap(&mut cycles.validate);
        let (restarts, module_params) = split_options(params).map_err(|_| ModError::Param {
            module: name.clone(),
            error: kmodlab_abi::params::ParamError::BadValue {
                param: "server.restart".into(),
                why: "not a number of restarts (0..=8)",
            },
        })?;
        let values = kmodlab_abi::params::parse(module.modinfo(), &module_params).map_err(|e| {
            ModError::Param {
                module: name.clone(),
                error: e,
            }
        })?;
        lap(&mut cycles.params);
        let layout = kmod_loader::layout(&module).map_err(ModError::Invalid)?;
        lap(&mut cycles.layout);

        let id = self.registry.announce(&name)?;
        self.notify_state(id, ModuleState::Coming);
        let restart = restart.or_else(|| {
            restarts.filter(|&n| n > 0).map(|n| {
                Box::new(Restart {
                    image: image.clone(),
                    params: module_params.clone(),
                    left: n,
                    allowed: n,
                    since: 0,
                })
            })
        });
        // The COMING line (console output costs VM exits) belongs to no step.
        let t = rdtsc_ordered();
        match self.build(
            id,
            &name,
            &module,
            signed.image,
            &layout,
            &values,
            &mut cycles,
            t,
        ) {
            Ok(mut server) => {
                server.waiter = waiter;
                server.tsc_load = start;
                server.restart = restart;
                self.servers.push(server);
                Ok(id)
            }
            Err(e) => {
                self.discard(id);
                Err(e)
            }
        }
    }

    /// The steps from COMING to the server's start. On error the caller discards the module;
    /// a task created here is destroyed here.
    #[allow(clippy::too_many_arguments)]
    fn build(
        &mut self,
        id: ModuleId,
        name: &str,
        module: &kmod_loader::Module<'_>,
        file: &[u8],
        layout: &kmod_loader::Layout,
        values: &[(String, kmodlab_abi::params::Value)],
        cycles: &mut kmodlab_abi::channel::LoadCycles,
        mut t: u64,
    ) -> Result<Server, ModError> {
        let mut lap = |slot: &mut u64| {
            let now = rdtsc_ordered();
            *slot = now - t;
            t = now;
        };
        let no_memory = || ModError::NoMemory {
            module: name.to_string(),
        };

        // Resolve: kernel API → runtime, LIVE modules' exports → stubs, refusing exports
        // that would clash with the kernel API or a LIVE module's.
        for e in module.exports() {
            let existing = if self.runtime.api_address(e.name).is_some() {
                Some(ProviderId(0))
            } else {
                self.registry
                    .export(e.name, id)
                    .map(|(owner, _, _)| ProviderId(owner))
            };
            if let Some(existing) = existing {
                return Err(ModError::Invalid(kmod_loader::Error::DuplicateExport {
                    symbol: e.name.into(),
                    existing,
                    new: ProviderId(id),
                }));
            }
        }
        let symbols = ServerSymbols {
            manager: self,
            me: id,
            imports: RefCell::new(Vec::new()),
        };
        let resolution = kmod_loader::resolve(module, &symbols).map_err(ModError::Invalid)?;
        let planned = symbols.imports.into_inner();

        for i in &planned {
            if i.signature.is_none() {
                return Err(ModError::NoSignature {
                    module: name.into(),
                    symbol: i.name.clone(),
                    provider: self
                        .registry
                        .get(i.provider)
                        .map_or_else(String::new, |m| m.name.clone()),
                });
            }
        }
        lap(&mut cycles.resolve);

        // The server's address space: task, runtime, module regions, stubs, heap, stack.
        let strings_size = kmod_manager::params::strings_size(values);
        let plan = plan::plan(
            layout.core.size,
            strings_size,
            layout.init.size,
            planned.len() as u64,
        )
        .map_err(|e| match e {
            PlanError::ModuleTooLarge { .. } | PlanError::TooManyImports(_) => no_memory(),
        })?;
        let sys = |step: &'static str| {
            move |errno: u64| ModError::Server {
                module: name.to_string(),
                step,
                errno,
            }
        };
        let slot =
            ipc::task_create(kmodlab_ipc::cap::FACTORY, name, id).map_err(sys("task_create"))?;
        let built = (|| {
            let task = ipc::task_info(slot).map_err(sys("task_info"))?.id;
            let map = |vaddr: u64, pages: u64, p: Perm| -> Result<(), ModError> {
                if pages == 0 {
                    return Ok(());
                }
                ipc::task_map(slot, vaddr, pages, p).map_err(|e| {
                    if e == guest_rt::errno::ENOMEM {
                        no_memory()
                    } else {
                        sys("task_map")(e)
                    }
                })
            };
            for seg in &self.runtime.segments {
                map(seg.vaddr, seg.pages, seg.perm)?;
            }
            // Module pages are writable until their contents are in (protect, below).
            map(plan.core_base, plan.core_pages, Perm::ReadWrite)?;
            map(plan.params_base, plan.params_pages, Perm::ReadWrite)?;
            map(plan.init_base, plan.init_pages, Perm::ReadWrite)?;
            map(layout::STUB_BASE, plan.stub_pages, Perm::ReadExecute)?;
            map(layout::HEAP_BASE, HEAP_PAGES, Perm::ReadWrite)?;
            map(plan.stack_bottom, STACK_PAGES, Perm::ReadWrite)?;
            lap(&mut cycles.aspace);

            // Copy the sections into the manager's buffers for the regions, at the server's
            // addresses.
            let mut core = Vec::new();
            core.try_reserve_exact((plan.core_pages * PAGE_SIZE) as usize)
                .map_err(|_| no_memory())?;
            core.resize((plan.core_pages * PAGE_SIZE) as usize, 0u8);
            let mut init = Vec::new();
            init.try_reserve_exact(layout.init.size as usize)
                .map_err(|_| no_memory())?;
            init.resize(layout.init.size as usize, 0u8);
            let mut regions = Regions {
                core: RegionMemory {
                    base: plan.core_base,
                    bytes: &mut core,
                },
                init: RegionMemory {
                    base: plan.init_base,
                    bytes: &mut init,
                },
            };
            let copy_counts = kmod_loader::copy_sections(module, layout, &mut regions)
                .map_err(ModError::Invalid)?;
            lap(&mut cycles.allocate);

            let before = rdtsc_ordered();
            let relocate_counts = kmod_loader::relocate(module, layout, &resolution, &mut regions)
                .map_err(ModError::Invalid)?;
            let relocate_cold = rdtsc_ordered() - before;
            // Relocation once more, over the pages the first pass touched, as the monolithic
            // kernel measures it (on kvm_pvm the first pass pays the shadow MMU's first-touch
            // faults, the second runs the loader alone); the same bytes, before the
            // parameters are written. It belongs to no step.
            let warm_start = rdtsc_ordered();
            kmod_loader::relocate(module, layout, &resolution, &mut regions)
                .map_err(ModError::Invalid)?;
            let relocate_warm = rdtsc_ordered() - warm_start;
            let counts = kmod_loader::LoadCounts {
                validate: *module.counts(),
                layout: *layout.counts(),
                resolve: *resolution.counts(),
                copy: copy_counts,
                relocate: relocate_counts,
            };
            let loaded = Loaded::new(module, layout, &resolution, regions.bases(), counts);
            let mut strings = Vec::new();
            kmod_manager::params::apply(
                name,
                &loaded,
                values,
                regions.core.bytes,
                &mut strings,
                plan.params_base,
            )?;
            // Publishing the exports to other servers needs every export's declared
            // signature (modules/ABI.md, "Export signatures"): a module whose exports lack
            // one cannot run as a server. Checked where the monolithic kernel would next
            // fail a load: once the module is relocated.
            let signature_error = |e: &dyn core::fmt::Display| ModError::ExportSignatures {
                module: name.into(),
                reason: format!("{e}"),
            };
            let signatures =
                kmod_calls::ExportTable::from_module(file).map_err(|e| signature_error(&e))?;
            signatures
                .check_exports(module.exports().iter().map(|e| e.name))
                .map_err(|e| signature_error(&e))?;
            lap(&mut cycles.relocate);
            cycles.relocate -= relocate_warm;

            // Into the server: the runtime, the module, its parameter strings, the stubs.
            let write = |vaddr: u64, bytes: &[u8]| -> Result<(), ModError> {
                if bytes.is_empty() {
                    return Ok(());
                }
                ipc::task_write(slot, vaddr, bytes).map_err(sys("task_write"))
            };
            for seg in &self.runtime.segments {
                write(seg.vaddr, seg.data)?;
            }
            write(plan.core_base, &core)?;
            write(plan.params_base, &strings)?;
            write(plan.init_base, &init)?;
            let mut stubs = Vec::with_capacity(planned.len() * server::STUB_SIZE as usize);
            for i in 0..planned.len() as u64 {
                let at = plan.stub_address(i);
                let code =
                    server::stub_code(i, at, self.runtime.import_entry).ok_or_else(no_memory)?;
                stubs.extend_from_slice(&code);
            }
            write(layout::STUB_BASE, &stubs)?;
            lap(&mut cycles.transfer);

            // W^X: text executable, everything else not; the parameter strings read-only.
            for (base, rl) in [
                (plan.core_base, &layout.core),
                (plan.init_base, &layout.init),
            ] {
                for range in &rl.ranges {
                    let pages = (range.end - range.start) / PAGE_SIZE;
                    if pages > 0 {
                        ipc::task_protect(slot, base + range.start, pages, perm(range.permission))
                            .map_err(sys("task_protect"))?;
                    }
                }
            }
            if plan.params_pages > 0 {
                ipc::task_protect(slot, plan.params_base, plan.params_pages, Perm::ReadOnly)
                    .map_err(sys("task_protect"))?;
            }
            lap(&mut cycles.protect);
            Ok((task, loaded, signatures, (relocate_cold, relocate_warm)))
        })();
        let (task, loaded, signatures, relocation) = match built {
            Ok(x) => x,
            Err(e) => {
                let _ = ipc::task_destroy(slot);
                return Err(e);
            }
        };

        let code = |sym: &str| {
            loaded
                .symbol(sym)
                .filter(|s| s.permission == Permission::ReadExecute)
                .map(|s| s.address)
        };
        // In signature-section order: an export's index is its call's op, and its
        // descriptor's (kmod_calls::Descriptor) export number.
        let exports: Vec<Export> = signatures
            .iter()
            .enumerate()
            .filter_map(|(i, sig)| {
                let address = loaded.exports.iter().find(|e| e.name == sig.name)?.address;
                Some(Export {
                    name: sig.name.into(),
                    address,
                    signature: Some(
                        kmod_calls::Descriptor::new(u32::try_from(i).ok()?, &sig)
                            .to_bytes()
                            .to_vec(),
                    ),
                })
            })
            .collect();
        let mut server = Server {
            module: id,
            slot,
            task,
            plan,
            config: ServerConfig {
                name: name.into(),
                init: code("init_module"),
                exit: code("cleanup_module"),
                heap_len: HEAP_PAGES * PAGE_SIZE,
                exports: exports
                    .iter()
                    .map(|e| ServedExport {
                        name: e.name.clone(),
                        address: e.address,
                        signature: e.signature.clone().unwrap_or_default(),
                    })
                    .collect(),
                imports: Vec::new(),
            },
            heap_end: layout::HEAP_BASE + HEAP_PAGES * PAGE_SIZE,
            init_mapped: plan.init_pages > 0,
            phase: Phase::Starting,
            waiter: Waiter::Nobody,
            grants: Vec::new(),
            tsc_load: 0,
            tsc_start: 0,
            tsc_init: 0,
            restart: None,
            relocation,
        };
        // Capabilities to the exporting servers, one per provider.
        let mut imports = Vec::with_capacity(planned.len());
        for i in &planned {
            let provider_slot = self
                .server(i.provider)
                .ok_or_else(|| ModError::NotLoaded(i.name.clone()))?
                .slot;
            let slot = match server.grants.iter().find(|(p, _)| *p == i.provider) {
                Some(&(_, s)) => s,
                None => {
                    let s = ipc::cap_grant(
                        server.slot,
                        provider_slot,
                        id,
                        kmodlab_ipc::cap::rights::SEND,
                    )
                    .map_err(|e| {
                        let _ = ipc::task_destroy(server.slot);
                        sys("cap_grant")(e)
                    })?;
                    server.grants.push((i.provider, s));
                    s
                }
            };
            imports.push(Import {
                name: i.name.clone(),
                slot,
                index: i.index as u64,
                signature: i.signature.clone().unwrap_or_default(),
            });
        }
        server.config.imports = imports;
        if mgr_encoded_len(&server.config) > kmodlab_ipc::msg::MAX_PAYLOAD as usize {
            let _ = ipc::task_destroy(server.slot);
            return Err(no_memory());
        }

        // Dependencies (both ways, a reference on each provider) and what the record keeps.
        let providers: Vec<ModuleId> = loaded
            .providers
            .iter()
            .map(|p| p.0)
            .filter(|&p| p != 0 && p != id)
            .collect();
        self.registry.add_uses(id, &providers);
        if let Some(m) = self.registry.get_mut(id) {
            m.exports = exports;
            m.modinfo = loaded.modinfo.clone();
            m.has_exit = server.config.exit.is_some();
            m.core_bytes = layout.core.size;
            m.init_bytes = layout.init.size;
            m.core_base = plan.core_base;
            m.pages = plan.core_pages + plan.init_pages;
            m.relocations = loaded.counts.relocate.applied.total();
            m.cycles = *cycles;
            m.footprint = kmodlab_abi::channel::Footprint {
                section_bytes: layout.core.size,
                section_pages: plan.core_pages + plan.init_pages,
                stack_bytes: STACK_PAGES * PAGE_SIZE,
                // The UTCB, and the runtime's request and reply buffers (in its heap).
                ipc_buffer_bytes: PAGE_SIZE + 16 * 1024,
                heap_bytes: HEAP_PAGES * PAGE_SIZE,
                runtime_bytes: (self.runtime.pages() + plan.stub_pages + plan.params_pages)
                    * PAGE_SIZE,
                ..Default::default()
            };
        }

        // Start it: its runtime asks for its configuration first.
        server.tsc_start = rdtsc_ordered();
        ipc::task_start(
            server.slot,
            self.runtime.entry,
            layout::STACK_TOP,
            HEAP_PAGES * PAGE_SIZE,
        )
        .map_err(|e| {
            let _ = ipc::task_destroy(server.slot);
            sys("task_start")(e)
        })?;
        Ok(server)
    }

    /// HELLO: the server's runtime is up and asks for its configuration.
    pub fn hello(&mut self, id: ModuleId, token: u64, cap: u64) {
        let now = rdtsc_ordered();
        let Some(s) = self.server_mut(id) else { return };
        let Ok(bytes) = kmodlab_ipc::mgr::encode(&s.config) else {
            self.answer(
                token,
                -(guest_rt::errno::EIO as i64),
                [0; MSG_WORDS],
                Vec::new(),
            );
            return;
        };
        if bytes.len() as u64 > cap {
            let len = bytes.len() as u64;
            self.answer(
                token,
                -(guest_rt::errno::EMSGSIZE as i64),
                [len, 0, 0, 0, 0, 0],
                Vec::new(),
            );
            return;
        }
        if s.phase == Phase::Starting {
            s.phase = Phase::Init;
            s.tsc_init = now;
            let start = now - s.tsc_start;
            if let Some(m) = self.registry.get_mut(id) {
                m.cycles.start = start;
            }
        }
        self.answer(token, 0, [0; MSG_WORDS], bytes);
    }

    /// INIT_DONE: the module's init returned `status`.
    pub fn init_done(&mut self, id: ModuleId, token: u64, status: i32) {
        let now = rdtsc_ordered();
        let Some(s) = self.server_mut(id) else { return };
        if s.phase != Phase::Init {
            self.answer(
                token,
                -(guest_rt::errno::EINVAL as i64),
                [0; MSG_WORDS],
                Vec::new(),
            );
            return;
        }
        let waiter = s.waiter;
        let init_cycles = now - s.tsc_init;
        let tsc_load = s.tsc_load;
        let name = self
            .registry
            .get(id)
            .map_or_else(String::new, |m| m.name.clone());
        if let Some(m) = self.registry.get_mut(id) {
            m.cycles.init = init_cycles;
        }
        if status != 0 {
            // The server is destroyed with the rest of the module; it is not answered.
            self.discard(id);
            self.fail_waiter(
                waiter,
                &ModError::InitFailed {
                    module: name,
                    code: status,
                },
            );
            if self.restarting.contains(&id) {
                self.restart_over(id);
            }
            return;
        }
        // LIVE: the exports become visible, the init region goes.
        let (slot, init_base, init_pages) = {
            let s = self.server_mut(id).expect("checked above");
            s.phase = Phase::Serving;
            s.waiter = Waiter::Nobody;
            (s.slot, s.plan.init_base, s.plan.init_pages)
        };
        self.registry.set_live(id);
        if init_pages > 0 && ipc::task_unmap(slot, init_base, init_pages).is_ok() {
            if let Some(s) = self.server_mut(id) {
                s.init_mapped = false;
            }
            if let Some(m) = self.registry.get_mut(id) {
                m.init_freed = true;
                m.pages -= init_pages;
                m.footprint.section_pages -= init_pages;
            }
            log(&format!(
                "module {name}: freed {} bytes of init memory\n",
                init_pages * PAGE_SIZE
            ));
        }
        self.notify_state(id, ModuleState::Live);
        if let Some(s) = self.server(id) {
            let (cold, warm) = s.relocation;
            let applied = self.registry.get(id).map_or(0, |m| m.relocations);
            log(&format!(
                "module {name}: relocation {cold} cycles, {warm} again over touched pages \
                 ({applied} relocations)\n"
            ));
        }
        if let Some(m) = self.registry.get_mut(id) {
            m.cycles.total = rdtsc_ordered() - tsc_load;
        }
        self.report_restart(id);
        self.answer(token, 0, [0; MSG_WORDS], Vec::new());
        self.succeed_load(waiter, id);
        if self.restarting.contains(&id) {
            self.restart_over(id);
        }
    }

    /// EXIT_DONE: the module's exit ran; `blocks`/`bytes` of its `kmod_alloc` memory were
    /// not freed (they go with the server).
    pub fn exit_done(&mut self, id: ModuleId, token: u64, blocks: u64, bytes: u64) {
        let Some(s) = self.server(id) else { return };
        if s.phase != Phase::Exiting {
            // Nobody asked it to go: a confused (or hostile) runtime gets an error, not a
            // destroyed server.
            self.answer(
                token,
                -(guest_rt::errno::EINVAL as i64),
                [0; MSG_WORDS],
                Vec::new(),
            );
            return;
        }
        let waiter = s.waiter;
        let name = self
            .registry
            .get(id)
            .map_or_else(String::new, |m| m.name.clone());
        // The order of the monolithic kernel's free_module: services, then allocations.
        let services = self.registry.drop_services_of(id);
        if services > 0 {
            log(&format!(
                "module {name}: dropped {services} service(s) it left registered\n"
            ));
        }
        if blocks > 0 {
            log(&format!(
                "module {name}: reclaiming {blocks} block(s), {bytes} bytes it did not free\n"
            ));
        }
        self.discard(id);
        if waiter == Waiter::Kernel {
            let reply: kmodlab_ipc::mgr::DoneReply = Ok(());
            self.answer_kernel(&reply);
        }
    }

    /// `request_module` from server `id` (its call is answered when the job ends).
    pub fn request_module(&mut self, id: ModuleId, token: u64, name: &str) {
        match self.registry.live(name) {
            Ok(true) => {
                self.answer(token, 0, [0; MSG_WORDS], Vec::new());
                return;
            }
            Ok(false) => {}
            Err(e) => {
                log(&format!("request_module {name}: {e}\n"));
                self.answer(token, -(e.errno() as i64), [0; MSG_WORDS], Vec::new());
                return;
            }
        }
        let order = match self.modules_dep_order(name) {
            Ok(order) => order,
            Err(e) => {
                log(&format!("request_module {name}: {e}\n"));
                self.answer(token, -(e.errno() as i64), [0; MSG_WORDS], Vec::new());
                return;
            }
        };
        let job = self.next_job;
        self.next_job += 1;
        self.jobs.push(crate::manager::Job {
            id: job,
            requester: id,
            token,
            name: name.into(),
            queue: order.into_iter().collect::<VecDeque<_>>(),
        });
        self.step_job(job);
    }

    /// The archive paths to load for `name`, in order (modules.dep).
    fn modules_dep_order(&self, name: &str) -> Result<Vec<String>, ModError> {
        let text = kmodlab_user::read_file("lib/modules/modules.dep")
            .map_err(|_| ModError::NotInArchive("modules.dep".into()))?;
        let text =
            String::from_utf8(text).map_err(|_| ModError::NotInArchive("modules.dep".into()))?;
        let order = kmodlab_abi::modules_dep::ModulesDep::parse(&text)
            .load_order(name)
            .ok_or_else(|| ModError::NotInArchive(name.into()))?
            .into_iter()
            .map(String::from)
            .collect();
        Ok(order)
    }

    /// Loads the next module of job `job`, or ends it when none is left.
    pub fn step_job(&mut self, job: u64) {
        loop {
            let Some(j) = self.jobs.iter_mut().find(|j| j.id == job) else {
                return;
            };
            let Some(path) = j.queue.pop_front() else {
                let j = self.take_job(job).expect("found above");
                self.answer(j.token, 0, [0; MSG_WORDS], Vec::new());
                return;
            };
            let modname = kmodlab_abi::modules_dep::module_name(&path);
            match self.registry.live(&modname) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    self.fail_job(job, &e);
                    return;
                }
            }
            let Ok(image) = kmodlab_user::read_file(&format!("lib/modules/{path}")) else {
                self.fail_job(job, &ModError::NotInArchive(modname));
                return;
            };
            log(&format!("request_module: loading {modname}\n"));
            let start = rdtsc_ordered();
            match self.load(image, "", Waiter::Job(job), start) {
                Ok(_) => return,
                Err(e) => {
                    self.fail_job(job, &e);
                    return;
                }
            }
        }
    }

    fn take_job(&mut self, job: u64) -> Option<crate::manager::Job> {
        let i = self.jobs.iter().position(|j| j.id == job)?;
        Some(self.jobs.remove(i))
    }

    /// Ends job `job` with `e` (logged as the monolithic kernel's `kmod_request_module`
    /// logs it).
    pub fn fail_job(&mut self, job: u64, e: &ModError) {
        let Some(j) = self.take_job(job) else { return };
        log(&format!("request_module {}: {e}\n", j.name));
        self.answer(j.token, -(e.errno() as i64), [0; MSG_WORDS], Vec::new());
    }

    /// The phase a fault interrupted, as the record keeps it.
    pub fn fault_phase(phase: Phase) -> FaultPhase {
        match phase {
            Phase::Starting | Phase::Init => FaultPhase::Init,
            Phase::Serving => FaultPhase::Call,
            Phase::Exiting => FaultPhase::Exit,
        }
    }
}

fn mgr_encoded_len(config: &ServerConfig) -> usize {
    kmodlab_ipc::mgr::encode(config).map_or(usize::MAX, |b| b.len())
}
