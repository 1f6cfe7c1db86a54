//! Why a module's signature did not verify, and what Linux does about each reason.

use alloc::string::String;
use core::fmt;

use crate::key::KeyIdentity;
use crate::trailer::TrailerError;

/// How Linux's `module_sig_check` treats a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tolerance {
    /// Loaded with a warning (and the kernel tainted) unless signatures are enforced; refused
    /// with `EKEYREJECTED` when they are. Linux's "unsigned module", "module with unsupported
    /// crypto" and "module with unavailable key".
    UnlessEnforced {
        /// Linux's words for the case, as in "Loading of {reason} is rejected".
        reason: &'static str,
    },
    /// Refused whatever the setting: the module carries a signature that is malformed or
    /// does not match.
    Fatal,
}

/// Why a module's signature did not verify. Each variant says what is wrong with the file
/// (or the kernel's key); [`VerifyError::errno`] is the number Linux returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The file does not end in the signature marker.
    Unsigned,
    /// It ends in the marker, but the trailer in front of it is unusable.
    Trailer(TrailerError),
    /// The signature data is not a DER PKCS#7 message.
    Malformed {
        /// What the DER decoder or the structure check found.
        reason: String,
    },
    /// The PKCS#7 message is not the shape a module signature has (not `SignedData`, content
    /// attached, not exactly one signer, signer named by key identifier).
    Shape {
        /// What is wrong.
        reason: &'static str,
    },
    /// The signer used a digest or signature algorithm this kernel does not implement.
    UnsupportedAlgorithm {
        /// `digest` or `signature`.
        role: &'static str,
        /// The algorithm's object identifier.
        oid: String,
    },
    /// The signer info carries signed attributes, which this kernel does not implement.
    SignedAttributes,
    /// The kernel was built without a trusted key.
    NoTrustedKey,
    /// Signed by a key the kernel does not hold.
    UnknownKey {
        /// Who signed it.
        signer: KeyIdentity,
    },
    /// Signed by a key named by subject key identifier (`sign-file -k`); kmodlab's key is
    /// named by issuer and serial number, so this is a key the kernel does not hold.
    UnknownKeyId {
        /// The subject key identifier.
        key_id: alloc::vec::Vec<u8>,
    },
    /// The signature value is not a DER ECDSA signature.
    BadSignatureEncoding,
    /// The signature does not match the module: the module (or the signature) was changed
    /// after signing.
    Rejected,
}

/// Linux's errno values for signature failures, from the one errno table (`kmod_api::errno`).
pub mod errno {
    use kmod_api::Errno;

    /// No data available: the module is unsigned.
    pub const ENODATA: i32 = Errno::ENODATA.get();
    /// Package not installed: unsupported crypto.
    pub const ENOPKG: i32 = Errno::ENOPKG.get();
    /// Bad message: a malformed trailer or PKCS#7 message.
    pub const EBADMSG: i32 = Errno::EBADMSG.get();
    /// Required key not available.
    pub const ENOKEY: i32 = Errno::ENOKEY.get();
    /// Key was rejected by service: a signature that does not match, or any module that is
    /// not validly signed while signatures are enforced.
    pub const EKEYREJECTED: i32 = Errno::EKEYREJECTED.get();
}

impl VerifyError {
    /// The errno Linux's `mod_verify_sig` returns for this failure (before enforcement turns
    /// the tolerated ones into `EKEYREJECTED`).
    pub fn errno(&self) -> i32 {
        match self {
            VerifyError::Unsigned => errno::ENODATA,
            VerifyError::Trailer(TrailerError::NotPkcs7 { .. })
            | VerifyError::UnsupportedAlgorithm { .. }
            | VerifyError::SignedAttributes => errno::ENOPKG,
            VerifyError::Trailer(_)
            | VerifyError::Malformed { .. }
            | VerifyError::Shape { .. }
            | VerifyError::BadSignatureEncoding => errno::EBADMSG,
            VerifyError::NoTrustedKey
            | VerifyError::UnknownKey { .. }
            | VerifyError::UnknownKeyId { .. } => errno::ENOKEY,
            VerifyError::Rejected => errno::EKEYREJECTED,
        }
    }

    /// Whether the module may still load when signatures are not enforced.
    pub fn class(&self) -> Tolerance {
        match self.errno() {
            errno::ENODATA => Tolerance::UnlessEnforced {
                reason: "unsigned module",
            },
            errno::ENOPKG => Tolerance::UnlessEnforced {
                reason: "module with unsupported crypto",
            },
            errno::ENOKEY => Tolerance::UnlessEnforced {
                reason: "module with unavailable key",
            },
            _ => Tolerance::Fatal,
        }
    }
}

impl core::error::Error for VerifyError {}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Unsigned => write!(f, "the module is not signed"),
            VerifyError::Trailer(e) => write!(f, "{e}"),
            VerifyError::Malformed { reason } => {
                write!(
                    f,
                    "the module signature is not a valid PKCS#7 message: {reason}"
                )
            }
            VerifyError::Shape { reason } => {
                write!(f, "the module signature's PKCS#7 message {reason}")
            }
            VerifyError::UnsupportedAlgorithm { role, oid } => write!(
                f,
                "the module is signed with an unsupported {role} algorithm ({oid}; this kernel \
                 verifies ECDSA P-256 with SHA-256)"
            ),
            VerifyError::SignedAttributes => write!(
                f,
                "the module signature has signed attributes, which this kernel does not verify"
            ),
            VerifyError::NoTrustedKey => write!(
                f,
                "the module is signed, but this kernel was built without a trusted key"
            ),
            VerifyError::UnknownKey { signer } => write!(
                f,
                "the module is signed by a key this kernel does not trust ({signer})"
            ),
            VerifyError::UnknownKeyId { key_id } => {
                write!(
                    f,
                    "the module is signed by a key this kernel does not trust (subject key \
                     identifier "
                )?;
                for (i, b) in key_id.iter().enumerate() {
                    if i > 0 {
                        f.write_str(":")?;
                    }
                    write!(f, "{b:02X}")?;
                }
                f.write_str(")")
            }
            VerifyError::BadSignatureEncoding => {
                write!(
                    f,
                    "the module's signature value is not a DER ECDSA signature"
                )
            }
            VerifyError::Rejected => write!(
                f,
                "the module's signature does not match its contents (changed after signing)"
            ),
        }
    }
}

impl From<TrailerError> for VerifyError {
    fn from(e: TrailerError) -> VerifyError {
        VerifyError::Trailer(e)
    }
}
