//! Module signature checking, Linux's `CONFIG_MODULE_SIG`: `module_sig_check` runs first in
//! `init_module`, on the kernel's copy of the image, before anything parses the ELF.
//!
//! The kernel trusts one key, the build's (its DER SubjectPublicKeyInfo embedded at build
//! time, see `build.rs`). A module with a valid signature by it loads silently. One that is
//! unsigned, signed with unsupported crypto or by another key loads with a warning (once per
//! boot, as Linux's `pr_notice_once`) unless `module.sig_enforce=1` is on the command line,
//! which makes it `EKEYREJECTED`. A signature that is malformed or does not match refuses the
//! module whatever the setting, as in Linux.

use core::sync::atomic::{AtomicBool, Ordering};

use kmod_sig::{Tolerance, TrustedKey};

use super::ModError;

/// The public key the build signed the modules with (empty: built without one).
static MODULE_SIGNING_KEY: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/module_signing_key.der"));

static TRUSTED: spin::Once<Option<TrustedKey>> = spin::Once::new();
/// `module.sig_enforce` (Linux's `sig_enforce`, `CONFIG_MODULE_SIG_FORCE` at boot).
static ENFORCE: AtomicBool = AtomicBool::new(false);
/// Whether the "verification failed" notice was printed (it is printed once per boot).
static WARNED: AtomicBool = AtomicBool::new(false);

/// Applies the kernel command line: `module.sig_enforce` (alone, or `=1`, `=y`, `=Y`, `=on`,
/// `=true`) enforces signatures. Linux's parameter can only be turned on.
pub fn configure(cmdline: &str) {
    let on = cmdline.split_whitespace().any(|w| {
        matches!(
            w.strip_prefix("module.sig_enforce"),
            Some("" | "=1" | "=y" | "=Y" | "=on" | "=true")
        )
    });
    if on {
        ENFORCE.store(true, Ordering::Relaxed);
        kprintln!("module: signatures enforced (module.sig_enforce=1)");
    }
}

/// Whether signatures are enforced.
pub fn enforced() -> bool {
    ENFORCE.load(Ordering::Relaxed)
}

fn trusted_key() -> Option<&'static TrustedKey> {
    TRUSTED
        .call_once(|| {
            if MODULE_SIGNING_KEY.is_empty() {
                return None;
            }
            match TrustedKey::from_spki_der(MODULE_SIGNING_KEY) {
                Ok(key) => Some(key),
                Err(e) => {
                    kprintln!("module: the embedded signing key is unusable: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// A module image whose signature has been checked.
pub struct Checked<'a> {
    /// The ELF part (the trailer cut off), what the loader sees.
    pub image: &'a [u8],
    /// Whether it carries a valid signature by the trusted key.
    pub sig_ok: bool,
}

/// Linux's `module_sig_check`: checks `buf`'s signature and returns the part the loader is
/// to see, or the error that refuses the module.
pub fn check(buf: &[u8]) -> Result<Checked<'_>, ModError> {
    let checked = kmod_sig::check(buf, trusted_key());
    match checked.outcome {
        Ok(_) => Ok(Checked {
            image: checked.module,
            sig_ok: true,
        }),
        Err(cause) => match cause.class() {
            Tolerance::UnlessEnforced { reason } if enforced() => {
                kprintln!("Loading of {reason} is rejected");
                Err(ModError::SignatureRequired { reason, cause })
            }
            Tolerance::UnlessEnforced { .. } => Ok(Checked {
                image: checked.module,
                sig_ok: false,
            }),
            Tolerance::Fatal => Err(ModError::BadSignature(cause)),
        },
    }
}

/// What Linux's `load_module` does once the name is known: a module without a valid
/// signature gets a notice (the first time since boot; Linux also taints the kernel).
pub fn note_loaded(name: &str, sig_ok: bool) {
    if sig_ok {
        return;
    }
    if !WARNED.swap(true, Ordering::Relaxed) {
        kprintln!(
            "{name}: module verification failed: signature and/or required key missing - \
             tainting kernel"
        );
    }
}
