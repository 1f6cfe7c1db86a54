//! Architecture-specific boot state.
pub mod x86_64;
