//! Loader core for kmodlab modules (placeholder; see issue 3).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
