//! Shared VMM/guest ABI (being written).
#![cfg_attr(not(test), no_std)]
