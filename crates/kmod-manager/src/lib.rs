//! The logic of the microkernel configuration's module manager (`sbin/modmgr`), kept apart
//! from its system calls so that it runs and is tested on the host.
//!
//! The manager is a user-space server that does what the monolithic kernel's module
//! subsystem does, with module servers instead of kernel memory: it validates and lays out a
//! module with `kmod-loader`, builds a server for it (its own address space: the server
//! runtime, the module, call stubs, heap and stack, [`plan`]), resolves the module's imports
//! (kernel API functions to the runtime's, [`runtime`]; other modules' exports to call
//! stubs), writes its parameters ([`params`]), starts it and records its lifecycle
//! ([`registry`]): COMING → LIVE → GOING, dependencies, services. Its errors are the
//! monolithic kernel's, case for case ([`error`]).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod error;
pub mod params;
pub mod plan;
pub mod registry;
pub mod runtime;
pub mod signature;

pub use error::ModError;
