//! The module registry of the microkernel's module manager: every module's record (state
//! COMING → LIVE → GOING, dependencies both ways, references), the exports other modules
//! may resolve against, and the service registry. The same rules as the monolithic kernel's
//! registry (`guest-kernel/src/module/`), without any memory of its own: the servers are the
//! manager's business.

use alloc::string::String;
use alloc::vec::Vec;

use kmodlab_abi::channel::{Footprint, LoadCycles, ModuleFault, ModuleRecord, ModuleState};

use crate::error::ModError;

/// A module's id: announced in the notifier's `module NAME (#ID)` lines, and the badge of its
/// server's capability to the manager. Never 0 and never reused.
pub type ModuleId = u64;

/// An export of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Exported name.
    pub name: String,
    /// Address in the exporting server.
    pub address: u64,
    /// The signature the module file declares for it, if any (in the module file's
    /// encoding). Without one no other server can call it.
    pub signature: Option<Vec<u8>>,
}

/// One module.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its id.
    pub id: ModuleId,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: ModuleState,
    /// How its server died, if it did.
    pub fault: Option<ModuleFault>,
    /// Its exports (visible to others while it is LIVE and running).
    pub exports: Vec<Export>,
    /// Its `.modinfo`.
    pub modinfo: Vec<(String, String)>,
    /// Modules it resolved symbols from.
    pub uses: Vec<ModuleId>,
    /// Modules that resolved symbols from it.
    pub used_by: Vec<ModuleId>,
    /// References held on it (one per user).
    pub refcount: u32,
    /// Bytes of its core region.
    pub core_bytes: u64,
    /// Bytes of its init region.
    pub init_bytes: u64,
    /// Whether the init region was freed.
    pub init_freed: bool,
    /// Where its core region starts.
    pub core_base: u64,
    /// Pages of its regions mapped now.
    pub pages: u64,
    /// Relocations applied when it was loaded.
    pub relocations: u64,
    /// Cycles of each load step.
    pub cycles: LoadCycles,
    /// Memory by kind.
    pub footprint: Footprint,
    /// Whether it has a `cleanup_module`.
    pub has_exit: bool,
}

impl Entry {
    /// Whether its code can run (it has a server that did not die).
    pub fn running(&self) -> bool {
        self.fault.is_none()
    }

    /// Bytes of this record and what hangs off it in the manager's heap (what `lsmod -v`
    /// calls metadata), counted as the monolithic kernel counts its own records.
    pub fn metadata_bytes(&self) -> u64 {
        let strings: usize = self.name.len()
            + self
                .exports
                .iter()
                .map(|e| e.name.len() + 16 + e.signature.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
            + self
                .modinfo
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>();
        (core::mem::size_of::<Entry>() + strings + (self.uses.len() + self.used_by.len()) * 8)
            as u64
    }
}

/// A registered service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its name (global).
    pub name: String,
    /// The module whose server handles it.
    pub owner: ModuleId,
    /// Its id: the server's handler index, unique for the manager's life.
    pub id: u64,
}

/// Longest service name, as in the monolithic kernel.
pub const MAX_SERVICE_NAME: usize = 64;

/// Why a service request failed (an errno for the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceError {
    /// Empty or longer than [`MAX_SERVICE_NAME`].
    BadName,
    /// The name is taken.
    Exists,
    /// No such service (of this owner, for unregister).
    NotFound,
    /// The owner has as many services as it may.
    TooMany,
}

impl ServiceError {
    /// The errno.
    pub fn errno(self) -> u64 {
        match self {
            ServiceError::BadName => crate::error::errno::EINVAL,
            ServiceError::Exists => crate::error::errno::EEXIST,
            ServiceError::NotFound => crate::error::errno::ENOENT,
            ServiceError::TooMany => crate::error::errno::ENOSPC,
        }
    }
}

/// What `begin_unload` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unload {
    /// The module is GOING now: run its exit, then discard it.
    RunExit(ModuleId),
    /// Its server is gone already (it faulted): only the record remains to discard.
    Forget(ModuleId),
}

/// All modules and services.
#[derive(Debug, Default)]
pub struct Registry {
    modules: Vec<Entry>,
    services: Vec<Service>,
    next_id: ModuleId,
    next_service: u64,
    transitions: (u64, u64, u64),
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry {
            next_id: 1,
            next_service: 1,
            ..Registry::default()
        }
    }

    /// Every module, in load order.
    pub fn modules(&self) -> &[Entry] {
        &self.modules
    }

    /// Module `id`.
    pub fn get(&self, id: ModuleId) -> Option<&Entry> {
        self.modules.iter().find(|m| m.id == id)
    }

    /// Module `id`, for changing.
    pub fn get_mut(&mut self, id: ModuleId) -> Option<&mut Entry> {
        self.modules.iter_mut().find(|m| m.id == id)
    }

    /// The module named `name`.
    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.modules.iter().find(|m| m.name == name)
    }

    fn name_of(&self, id: ModuleId) -> String {
        self.get(id)
            .map_or_else(|| alloc::format!("#{id}"), |m| m.name.clone())
    }

    /// COMING, LIVE and GOING transitions counted so far.
    pub fn transitions(&self) -> (u64, u64, u64) {
        self.transitions
    }

    /// Counts a transition to `state` (the notifier's count listener).
    pub fn count_transition(&mut self, state: ModuleState) {
        let t = &mut self.transitions;
        match state {
            ModuleState::Coming => t.0 += 1,
            ModuleState::Live => t.1 += 1,
            ModuleState::Going => t.2 += 1,
        }
    }

    /// Registers `name` as COMING (and counts it), unless a module of that name exists.
    pub fn announce(&mut self, name: &str) -> Result<ModuleId, ModError> {
        if let Some(m) = self.find(name) {
            return Err(if !m.running() {
                ModError::Faulted(name.into())
            } else if m.state == ModuleState::Live {
                ModError::AlreadyLoaded(name.into())
            } else {
                ModError::Busy {
                    name: name.into(),
                    state: m.state,
                }
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        self.modules.push(Entry {
            id,
            name: name.into(),
            state: ModuleState::Coming,
            fault: None,
            exports: Vec::new(),
            modinfo: Vec::new(),
            uses: Vec::new(),
            used_by: Vec::new(),
            refcount: 0,
            core_bytes: 0,
            init_bytes: 0,
            init_freed: false,
            core_base: 0,
            pages: 0,
            relocations: 0,
            cycles: LoadCycles::default(),
            footprint: Footprint::default(),
            has_exit: false,
        });
        self.count_transition(ModuleState::Coming);
        Ok(id)
    }

    /// Whether module `name` is LIVE and running; `Err` if it exists otherwise (busy, or
    /// faulted).
    pub fn live(&self, name: &str) -> Result<bool, ModError> {
        match self.find(name) {
            None => Ok(false),
            Some(m) if !m.running() => Err(ModError::Faulted(name.into())),
            Some(m) if m.state == ModuleState::Live => Ok(true),
            Some(m) => Err(ModError::Busy {
                name: name.into(),
                state: m.state,
            }),
        }
    }

    /// The export `name` of a LIVE, running module other than `except`: its module, its index
    /// in that module's export list, and the export.
    pub fn export(&self, name: &str, except: ModuleId) -> Option<(ModuleId, usize, &Export)> {
        self.modules
            .iter()
            .filter(|m| m.id != except && m.state == ModuleState::Live && m.running())
            .find_map(|m| {
                m.exports
                    .iter()
                    .enumerate()
                    .find(|(_, e)| e.name == name)
                    .map(|(i, e)| (m.id, i, e))
            })
    }

    /// The module (LIVE and running, not `except`) that already exports one of `names`, for
    /// the duplicate-export refusal: the first such name and its exporter.
    pub fn clashing_export<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        except: ModuleId,
    ) -> Option<(&'a str, ModuleId)> {
        names
            .into_iter()
            .find_map(|n| self.export(n, except).map(|(owner, _, _)| (n, owner)))
    }

    /// Records that `user` resolved symbols from `providers` (both directions, one reference
    /// on each provider).
    pub fn add_uses(&mut self, user: ModuleId, providers: &[ModuleId]) {
        for &p in providers {
            if p == user {
                continue;
            }
            if let Some(pm) = self.get_mut(p)
                && !pm.used_by.contains(&user)
            {
                pm.used_by.push(user);
                pm.refcount += 1;
            }
            if let Some(um) = self.get_mut(user)
                && !um.uses.contains(&p)
            {
                um.uses.push(p);
            }
        }
    }

    /// Marks `id` LIVE (and counts it).
    pub fn set_live(&mut self, id: ModuleId) {
        if let Some(m) = self.get_mut(id) {
            m.state = ModuleState::Live;
            self.count_transition(ModuleState::Live);
        }
    }

    /// Marks `id` GOING unless it is already (and counts it); returns whether it changed.
    pub fn set_going(&mut self, id: ModuleId) -> bool {
        match self.get_mut(id) {
            Some(m) if m.state != ModuleState::Going => {
                m.state = ModuleState::Going;
                self.count_transition(ModuleState::Going);
                true
            }
            _ => false,
        }
    }

    /// The checks of `delete_module`, in the monolithic kernel's order: loaded, no users,
    /// LIVE, has an exit; then GOING. A module whose server died skips the last two: there is
    /// nothing left to run, only the record to forget.
    pub fn begin_unload(&mut self, name: &str) -> Result<Unload, ModError> {
        let m = self
            .find(name)
            .ok_or_else(|| ModError::NotLoaded(name.into()))?;
        if !m.used_by.is_empty() {
            let users = m.used_by.iter().map(|&u| self.name_of(u)).collect();
            return Err(ModError::InUse {
                name: name.into(),
                users,
            });
        }
        let id = m.id;
        if !m.running() {
            return Ok(Unload::Forget(id));
        }
        if m.state != ModuleState::Live {
            return Err(ModError::Busy {
                name: name.into(),
                state: m.state,
            });
        }
        if !m.has_exit {
            return Err(ModError::NoExit(name.into()));
        }
        self.set_going(id);
        Ok(Unload::RunExit(id))
    }

    /// Removes module `id` and its dependency edges (its references on its providers go);
    /// returns its record.
    pub fn remove(&mut self, id: ModuleId) -> Option<Entry> {
        let index = self.modules.iter().position(|m| m.id == id)?;
        let m = self.modules.remove(index);
        for &p in &m.uses {
            if let Some(pm) = self.get_mut(p) {
                pm.used_by.retain(|&u| u != id);
                pm.refcount = pm.refcount.saturating_sub(1);
            }
        }
        // Users of a removed module (only possible for a faulted one being forgotten with
        // users, which begin_unload refuses) would dangle; drop the edges too.
        for other in &mut self.modules {
            other.uses.retain(|&u| u != id);
        }
        Some(m)
    }

    /// What the kernel reports for module `m`.
    pub fn record(&self, m: &Entry) -> ModuleRecord {
        let mut footprint = m.footprint;
        footprint.metadata_bytes = m.metadata_bytes();
        ModuleRecord {
            name: m.name.clone(),
            state: m.state,
            refcount: m.refcount,
            used_by: m.used_by.iter().map(|&id| self.name_of(id)).collect(),
            uses: m.uses.iter().map(|&id| self.name_of(id)).collect(),
            core_base: m.core_base,
            core_bytes: m.core_bytes,
            init_bytes: m.init_bytes,
            init_freed: m.init_freed,
            metadata_bytes: m.metadata_bytes(),
            pages: m.pages,
            relocations: m.relocations,
            load_cycles: m.cycles,
            footprint,
            fault: m.fault,
        }
    }

    /// Every module's record, in load order.
    pub fn records(&self) -> Vec<ModuleRecord> {
        self.modules.iter().map(|m| self.record(m)).collect()
    }

    // ---- services ---------------------------------------------------------------------

    /// Registers service `name` for `owner`; returns its new id.
    pub fn register_service(&mut self, owner: ModuleId, name: &str) -> Result<u64, ServiceError> {
        if name.is_empty() || name.len() > MAX_SERVICE_NAME {
            return Err(ServiceError::BadName);
        }
        if self.services.iter().any(|s| s.name == name) {
            return Err(ServiceError::Exists);
        }
        let id = self.next_service;
        self.next_service += 1;
        self.services.push(Service {
            name: name.into(),
            owner,
            id,
        });
        Ok(id)
    }

    /// Removes `owner`'s service `name`; returns the id it had.
    pub fn unregister_service(&mut self, owner: ModuleId, name: &str) -> Result<u64, ServiceError> {
        let i = self
            .services
            .iter()
            .position(|s| s.name == name && s.owner == owner)
            .ok_or(ServiceError::NotFound)?;
        Ok(self.services.remove(i).id)
    }

    /// The service named `name` (of a running module).
    pub fn lookup_service(&self, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.name == name && self.get(s.owner).is_some_and(Entry::running))
    }

    /// How many services `owner` has registered.
    pub fn services_of(&self, owner: ModuleId) -> usize {
        self.services.iter().filter(|s| s.owner == owner).count()
    }

    /// Drops the services `owner` left registered; returns how many.
    pub fn drop_services_of(&mut self, owner: ModuleId) -> usize {
        let before = self.services.len();
        self.services.retain(|s| s.owner != owner);
        before - self.services.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(r: &mut Registry, name: &str, exports: &[&str]) -> ModuleId {
        let id = r.announce(name).unwrap();
        let m = r.get_mut(id).unwrap();
        m.has_exit = true;
        m.exports = exports
            .iter()
            .map(|e| Export {
                name: (*e).into(),
                address: 0x4000_0000,
                signature: None,
            })
            .collect();
        r.set_live(id);
        id
    }

    #[test]
    fn names_are_unique_and_busy_modules_say_so() {
        let mut r = Registry::new();
        let hello = loaded(&mut r, "hello", &[]);
        assert_eq!(hello, 1);
        assert_eq!(
            r.announce("hello"),
            Err(ModError::AlreadyLoaded("hello".into()))
        );
        let coming = r.announce("autoload").unwrap();
        assert_eq!(
            r.live("autoload"),
            Err(ModError::Busy {
                name: "autoload".into(),
                state: ModuleState::Coming
            })
        );
        assert_eq!(r.live("hello"), Ok(true));
        assert_eq!(r.live("nosuch"), Ok(false));
        r.get_mut(coming).unwrap().fault = Some(ModuleFault {
            during: kmodlab_abi::channel::FaultPhase::Init,
            vector: 6,
            rip: 0,
            cr2: 0,
            error_code: 0,
            offset: None,
        });
        assert_eq!(
            r.announce("autoload"),
            Err(ModError::Faulted("autoload".into()))
        );
        assert_eq!(r.transitions(), (2, 1, 0));
    }

    #[test]
    fn dependencies_refcounts_and_the_unload_checks() {
        let mut r = Registry::new();
        let crc = loaded(&mut r, "crc32", &["crc32_compute"]);
        let ram = loaded(&mut r, "ramblk", &["ramblk_read"]);
        let kv = loaded(&mut r, "kvstore", &["kvstore_put"]);
        r.add_uses(kv, &[ram, crc, kv]);
        let client = loaded(&mut r, "kvclient", &[]);
        r.add_uses(client, &[kv]);
        assert_eq!(r.get(kv).unwrap().uses, [ram, crc]);
        assert_eq!(r.get(crc).unwrap().refcount, 1);
        assert_eq!(
            r.begin_unload("kvstore"),
            Err(ModError::InUse {
                name: "kvstore".into(),
                users: vec!["kvclient".into()]
            })
        );
        assert_eq!(
            r.begin_unload("nosuch"),
            Err(ModError::NotLoaded("nosuch".into()))
        );
        assert_eq!(r.begin_unload("kvclient"), Ok(Unload::RunExit(client)));
        assert_eq!(r.get(client).unwrap().state, ModuleState::Going);
        assert_eq!(
            r.begin_unload("kvclient"),
            Err(ModError::Busy {
                name: "kvclient".into(),
                state: ModuleState::Going
            })
        );
        r.remove(client);
        assert_eq!(r.get(kv).unwrap().refcount, 0);
        assert!(r.get(kv).unwrap().used_by.is_empty());
        let rec = r.record(r.get(kv).unwrap());
        assert_eq!(rec.uses, ["ramblk", "crc32"]);
        assert_eq!(r.transitions(), (4, 4, 1));
        // No exit: cannot go.
        r.get_mut(kv).unwrap().has_exit = false;
        assert_eq!(
            r.begin_unload("kvstore"),
            Err(ModError::NoExit("kvstore".into()))
        );
    }

    #[test]
    fn exports_of_modules_not_live_or_not_running_are_invisible() {
        let mut r = Registry::new();
        let ram = loaded(&mut r, "ramblk", &["ramblk_read", "ramblk_write"]);
        assert_eq!(
            r.export("ramblk_write", 0).map(|e| (e.0, e.1)),
            Some((ram, 1))
        );
        assert_eq!(r.export("ramblk_write", ram), None);
        assert_eq!(
            r.clashing_export(["x", "ramblk_read"], 0),
            Some(("ramblk_read", ram))
        );
        r.set_going(ram);
        assert_eq!(r.export("ramblk_read", 0), None);
        let other = loaded(&mut r, "other", &["f"]);
        r.get_mut(other).unwrap().fault = Some(ModuleFault {
            during: kmodlab_abi::channel::FaultPhase::Call,
            vector: 14,
            rip: 0,
            cr2: 0,
            error_code: 0,
            offset: Some(0),
        });
        assert_eq!(r.export("f", 0), None);
        // A faulted module is only forgotten by rmmod, without running anything.
        assert_eq!(r.begin_unload("other"), Ok(Unload::Forget(other)));
    }

    #[test]
    fn services_have_unique_names_and_never_reused_ids() {
        let mut r = Registry::new();
        let a = loaded(&mut r, "a", &[]);
        let b = loaded(&mut r, "b", &[]);
        assert_eq!(r.register_service(a, "crc32"), Ok(1));
        assert_eq!(r.register_service(b, "crc32"), Err(ServiceError::Exists));
        assert_eq!(r.register_service(b, ""), Err(ServiceError::BadName));
        let long = "x".repeat(MAX_SERVICE_NAME + 1);
        assert_eq!(r.register_service(b, &long), Err(ServiceError::BadName));
        assert_eq!(
            r.unregister_service(b, "crc32"),
            Err(ServiceError::NotFound)
        );
        assert_eq!(r.lookup_service("crc32").map(|s| s.id), Some(1));
        assert_eq!(r.unregister_service(a, "crc32"), Ok(1));
        assert_eq!(r.register_service(a, "crc32"), Ok(2));
        assert_eq!(r.register_service(a, "other"), Ok(3));
        assert_eq!(r.drop_services_of(a), 2);
        assert_eq!(r.lookup_service("crc32"), None);
        assert_eq!(ServiceError::Exists.errno(), 17);
    }
}
