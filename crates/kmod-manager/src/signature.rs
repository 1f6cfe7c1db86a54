//! Module signatures, as the monolithic kernel checks them (`guest-kernel/src/module/
//! signature.rs`, Linux's `module_sig_check`): first, on the manager's copy of the image,
//! before anything parses the ELF. The manager trusts the build's key (embedded in it as in
//! the kernel). A module with a valid signature loads silently; an unsigned one, or one with
//! unsupported crypto or by another key, loads with a notice unless `module.sig_enforce=1`
//! (then `EKEYREJECTED`); a malformed or mismatching signature is refused whatever the
//! setting.

use kmod_sig::{Tolerance, TrustedKey};

use crate::error::ModError;

/// A module image whose signature has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The ELF part (the trailer cut off), what the loader sees.
    pub image: &'a [u8],
    /// Whether it carries a valid signature by the trusted key.
    pub sig_ok: bool,
}

/// Checks `buf`'s signature against `key` (`None`: no usable key, nothing verifies), with
/// signatures enforced or not.
pub fn check<'a>(
    buf: &'a [u8],
    key: Option<&TrustedKey>,
    enforce: bool,
) -> Result<Checked<'a>, ModError> {
    let checked = kmod_sig::check(buf, key);
    match checked.outcome {
        Ok(_) => Ok(Checked {
            image: checked.module,
            sig_ok: true,
        }),
        Err(cause) => match cause.class() {
            Tolerance::UnlessEnforced { reason } if enforce => {
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

/// The notice Linux's `load_module` prints (once per boot) for a module loaded without a
/// valid signature.
pub fn unverified_notice(name: &str) -> alloc::string::String {
    alloc::format!(
        "{name}: module verification failed: signature and/or required key missing - \
         tainting kernel\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const HELLO: &[u8] = include_bytes!("../../kmod-tools/tests/fixtures/kmodlab/hello.ko");

    #[test]
    fn unsigned_modules_load_unless_enforced_and_then_say_why() {
        let c = check(HELLO, None, false).unwrap();
        assert_eq!((c.image.len(), c.sig_ok), (HELLO.len(), false));
        let e = check(HELLO, None, true).unwrap_err();
        assert_eq!(e.errno(), 129);
        assert!(
            e.to_string()
                .starts_with("Loading of unsigned module is rejected (module.sig_enforce=1): "),
            "{e}"
        );
    }

    #[test]
    fn signed_modules_verify_and_tampered_ones_are_refused_whatever_the_setting() {
        let key = kmod_sig::SigningKey::generate();
        let signed = key.sign(HELLO).unwrap();
        let c = check(&signed, Some(key.trusted_key()), true).unwrap();
        assert_eq!((c.image, c.sig_ok), (HELLO, true));
        // Another key: tolerated unless enforced.
        let other = kmod_sig::SigningKey::generate();
        assert!(
            !check(&signed, Some(other.trusted_key()), false)
                .unwrap()
                .sig_ok
        );
        assert!(check(&signed, Some(other.trusted_key()), true).is_err());
        // A changed byte: the signature does not match.
        let mut tampered = signed.clone();
        tampered[100] ^= 1;
        for enforce in [false, true] {
            let e = check(&tampered, Some(key.trusted_key()), enforce).unwrap_err();
            assert!(matches!(e, ModError::BadSignature(_)), "{e:?}");
            assert!(
                e.to_string()
                    .starts_with("module signature verification failed: "),
                "{e}"
            );
        }
        assert_eq!(
            unverified_notice("hello"),
            "hello: module verification failed: signature and/or required key missing - \
             tainting kernel\n"
        );
    }
}
