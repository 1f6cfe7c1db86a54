//! The module manager's protocol, the part the kernel speaks.
//!
//! In the microkernel configuration the kernel has no module subsystem: its module
//! operations (the `init_module`/`delete_module` system calls of user programs, `/proc`
//! module texts, the VMM's control commands) become calls to the module manager, made by the
//! kernel itself with badge [`crate::cap::KERNEL_BADGE`]. Requests and replies are postcard
//! payloads; a module file travels as lease 0 (read-only) rather than as a copy.
//!
//! Op numbers are split by who sends them: `1..=31` the kernel, `32..=63` module servers to
//! the manager, `64..=127` calls into a module server. Only the kernel's are defined here;
//! the others belong to the manager and the server runtime.

use alloc::string::String;
use alloc::vec::Vec;

use kmodlab_abi::channel::ModuleRecord;
use serde::{Deserialize, Serialize};

/// Flags the kernel starts the manager with (`rdi` at its entry), from the kernel command
/// line. (`rsi` is the TSC frequency in kHz.)
pub mod flags {
    /// Modules may be unloaded (Linux's CONFIG_MODULE_UNLOAD; off with `module.unload=0`).
    pub const UNLOAD: u64 = 1 << 0;
    /// Unsigned or badly signed modules are refused (`module.sig_enforce=1`).
    pub const SIG_ENFORCE: u64 = 1 << 1;
}

/// Ops the kernel sends to the manager.
pub mod op {
    /// Load a module from lease 0 ([`super::Insmod`] payload); replies
    /// [`super::LoadReply`].
    pub const INSMOD: u64 = 1;
    /// Load `lib/modules/NAME.ko` from the module archive ([`super::InsmodArchive`]);
    /// replies [`super::LoadReply`].
    pub const INSMOD_ARCHIVE: u64 = 2;
    /// Unload a module ([`super::Rmmod`]); replies [`super::DoneReply`].
    pub const RMMOD: u64 = 3;
    /// Every module's record; replies [`super::ListReply`].
    pub const LIST: u64 = 4;
    /// Find a module's service by name ([`super::ServiceLookup`]); replies
    /// [`super::ServiceLookupReply`]. The kernel then calls the server itself
    /// ([`crate::srv::op::SERVICE_CALL`]), so that the manager never waits for a server.
    pub const SERVICE_LOOKUP: u64 = 5;
    /// The module (and offset) containing an address of a task, for fault reports
    /// ([`super::Locate`]); replies [`super::LocateReply`].
    pub const LOCATE: u64 = 6;
    /// Last op number the kernel may use.
    pub const LAST_KERNEL_OP: u64 = 31;
}

/// Why a module operation failed: the errno the system call returns and the manager's
/// explanation (what the monolithic kernel's `ModError` displays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Positive errno.
    pub errno: u64,
    /// What went wrong, naming the module and the culprit.
    pub message: String,
}

/// [`op::INSMOD`]: the image is lease 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Insmod {
    /// `key=value …`.
    pub params: String,
    /// Whether the program asking holds CAP_SYS_MODULE (the kernel knows; the manager
    /// decides, as the monolithic kernel does).
    pub may_manage_modules: bool,
}

/// [`op::INSMOD_ARCHIVE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsmodArchive {
    /// Module name.
    pub name: String,
    /// `key=value …`.
    pub params: String,
}

/// [`op::RMMOD`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rmmod {
    /// Module name.
    pub name: String,
    /// Whether the program asking holds CAP_SYS_MODULE.
    pub may_manage_modules: bool,
}

/// [`op::SERVICE_LOOKUP`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLookup {
    /// Service name.
    pub service: String,
}

/// Where a service is: the server task and the service's index in it (word 0 of a
/// [`crate::srv::op::SERVICE_CALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddress {
    /// The module server.
    pub task: crate::task::TaskId,
    /// The service's index in that server.
    pub index: u64,
}

/// [`op::LOCATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locate {
    /// The task.
    pub task: crate::task::TaskId,
    /// The address.
    pub addr: u64,
}

/// Reply to a load.
pub type LoadReply = Result<ModuleRecord, Failure>;
/// Reply to an operation with nothing to report.
pub type DoneReply = Result<(), Failure>;
/// Reply to [`op::LIST`]: every module's record in load order, and the lifecycle
/// transitions (COMING, LIVE, GOING) since boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    /// The records.
    pub modules: Vec<ModuleRecord>,
    /// COMING, LIVE and GOING transitions since the manager started.
    pub transitions: (u64, u64, u64),
}
/// Reply to [`op::SERVICE_LOOKUP`].
pub type ServiceLookupReply = Result<ServiceAddress, Failure>;
/// Reply to [`op::LOCATE`]: module name and offset in it.
pub type LocateReply = Option<(String, u64)>;

/// Encodes a request or reply payload.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// Decodes a payload (from an untrusted peer: any bytes give `Err`, never a panic).
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(postcard::Error::DeserializeUnexpectedEnd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let r = Insmod {
            params: "count=3".into(),
            may_manage_modules: true,
        };
        assert_eq!(decode::<Insmod>(&encode(&r).unwrap()).unwrap(), r);
        let f: DoneReply = Err(Failure {
            errno: 16,
            message: "Module kvstore is in use by: kvclient".into(),
        });
        assert_eq!(decode::<DoneReply>(&encode(&f).unwrap()).unwrap(), f);
        let s = ServiceLookup {
            service: "crc32".into(),
        };
        assert_eq!(decode::<ServiceLookup>(&encode(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&Rmmod {
            name: "hello".into(),
            may_manage_modules: false,
        })
        .unwrap();
        bytes.push(0);
        assert!(decode::<Rmmod>(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_replies_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<LoadReply>(&bytes);
            let _ = decode::<ListReply>(&bytes);
            let _ = decode::<ServiceLookupReply>(&bytes);
            let _ = decode::<DoneReply>(&bytes);
            let _ = decode::<LocateReply>(&bytes);
            let _ = decode::<Insmod>(&bytes);
            let _ = decode::<ServiceLookup>(&bytes);
        }
    }
}
