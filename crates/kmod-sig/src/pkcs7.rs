//! The PKCS#7 (CMS) `SignedData` message of a module signature: decoding it, checking that
//! it is the shape `sign-file` produces, and (with `sign`) encoding one.

use alloc::string::ToString;

use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::Decode;
use der::asn1::ObjectIdentifier;
use spki::AlgorithmIdentifierOwned;

use crate::error::VerifyError;
use crate::key::KeyIdentity;

/// The object identifiers a module signature uses.
pub mod oid {
    use der::asn1::ObjectIdentifier;

    /// `id-signedData` (RFC 5652).
    pub const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
    /// `id-data` (RFC 5652): the content type of a module signature.
    pub const DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
    /// `id-sha256` (RFC 5754).
    pub const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
    /// `ecdsa-with-SHA256` (RFC 5758).
    pub const ECDSA_WITH_SHA256: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
    /// `id-at-commonName` (X.520).
    pub const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

    /// The digest algorithms kmod names (`pkey_hash_algo` in `libkmod-signature.c`), with
    /// their object identifiers, in kmod's order.
    pub const KMOD_HASH_ALGORITHMS: &[(&str, ObjectIdentifier)] = &[
        ("md4", ObjectIdentifier::new_unwrap("1.2.840.113549.2.4")),
        ("md5", ObjectIdentifier::new_unwrap("1.2.840.113549.2.5")),
        ("sha1", ObjectIdentifier::new_unwrap("1.3.14.3.2.26")),
        ("rmd160", ObjectIdentifier::new_unwrap("1.3.36.3.2.1")),
        ("sha256", SHA256),
        (
            "sha384",
            ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2"),
        ),
        (
            "sha512",
            ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3"),
        ),
        (
            "sha224",
            ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.4"),
        ),
        ("sm3", ObjectIdentifier::new_unwrap("1.2.156.10197.1.401")),
    ];
}

/// A decoded `SignedData`.
pub(crate) struct SignedMessage {
    pub(crate) data: SignedData,
}

/// Decodes DER `ContentInfo` bytes holding a `SignedData`. Bounded by the input: DER
/// lengths are checked against the bytes present before anything is allocated for them.
pub(crate) fn parse_signed_data(der: &[u8]) -> Result<SignedMessage, VerifyError> {
    let malformed = |e: der::Error| VerifyError::Malformed {
        reason: e.to_string(),
    };
    let info = ContentInfo::from_der(der).map_err(malformed)?;
    if info.content_type != oid::SIGNED_DATA {
        return Err(VerifyError::Shape {
            reason: "is not SignedData",
        });
    }
    let data: SignedData = info.content.decode_as().map_err(malformed)?;
    Ok(SignedMessage { data })
}

impl SignedMessage {
    /// The one signer of a module signature, after the checks Linux's PKCS#7 parser and
    /// `pkcs7_supply_detached_data` make of the message around it.
    pub(crate) fn only_signer(&self) -> Result<Signer<'_>, VerifyError> {
        let encap = &self.data.encap_content_info;
        if encap.econtent_type != oid::DATA {
            return Err(VerifyError::Shape {
                reason: "signs a content type other than data",
            });
        }
        if encap.econtent.is_some() {
            return Err(VerifyError::Shape {
                reason: "carries its content (a module signature's content is the module)",
            });
        }
        let [signer] = self.data.signer_infos.0.as_slice() else {
            return Err(VerifyError::Shape {
                reason: "does not have exactly one signer",
            });
        };
        // Fields no signature covers must still be what sign-file writes: a change to them is
        // tampering, even if harmless.
        if self.data.digest_algorithms.as_slice() != core::slice::from_ref(&signer.digest_alg) {
            return Err(VerifyError::Shape {
                reason: "lists digest algorithms other than its signer's",
            });
        }
        // RFC 5652: version 1 with issuer and serial number, 3 with a key identifier.
        let expected = match signer.sid {
            SignerIdentifier::IssuerAndSerialNumber(_) => CmsVersion::V1,
            SignerIdentifier::SubjectKeyIdentifier(_) => CmsVersion::V3,
        };
        if signer.version != expected || self.data.version != expected {
            return Err(VerifyError::Shape {
                reason: "has a version that does not match its signer identifier",
            });
        }
        if signer.unsigned_attrs.is_some() {
            return Err(VerifyError::Shape {
                reason: "has unsigned attributes",
            });
        }
        Ok(Signer { info: signer })
    }

    /// The first signer, unchecked (what kmod displays).
    pub(crate) fn first_signer(&self) -> Option<Signer<'_>> {
        self.data
            .signer_infos
            .0
            .as_slice()
            .first()
            .map(|info| Signer { info })
    }
}

/// One `SignerInfo`.
pub(crate) struct Signer<'a> {
    pub(crate) info: &'a SignerInfo,
}

fn is_absent_or_null(alg: &AlgorithmIdentifierOwned) -> bool {
    alg.parameters.as_ref().is_none_or(|p| p.is_null())
}

impl Signer<'_> {
    /// SHA-256 and ECDSA, no signed attributes: all this kernel verifies.
    pub(crate) fn check_algorithms(&self) -> Result<(), VerifyError> {
        let digest = &self.info.digest_alg;
        if digest.oid != oid::SHA256 || !is_absent_or_null(digest) {
            return Err(VerifyError::UnsupportedAlgorithm {
                role: "digest",
                oid: digest.oid.to_string(),
            });
        }
        let signature = &self.info.signature_algorithm;
        if signature.oid != oid::ECDSA_WITH_SHA256 || signature.parameters.is_some() {
            return Err(VerifyError::UnsupportedAlgorithm {
                role: "signature",
                oid: signature.oid.to_string(),
            });
        }
        if self.info.signed_attrs.is_some() {
            return Err(VerifyError::SignedAttributes);
        }
        Ok(())
    }

    /// Issuer and serial number of the signing key.
    pub(crate) fn identity(&self) -> Result<KeyIdentity, VerifyError> {
        match &self.info.sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => Ok(KeyIdentity::new(
                &id.issuer,
                id.serial_number.as_bytes().to_vec(),
            )),
            SignerIdentifier::SubjectKeyIdentifier(id) => Err(VerifyError::UnknownKeyId {
                key_id: id.0.as_bytes().to_vec(),
            }),
        }
    }

    /// The signature value's bytes.
    pub(crate) fn signature(&self) -> &[u8] {
        self.info.signature.as_bytes()
    }

    /// The digest algorithm's object identifier.
    pub(crate) fn digest_oid(&self) -> ObjectIdentifier {
        self.info.digest_alg.oid
    }
}

/// Encodes the `SignedData` of a module signature: `signature` (a DER ECDSA signature) by
/// the key named `identity`, over detached content, as `sign-file` lays it out.
#[cfg(any(test, feature = "sign"))]
pub(crate) fn encode(
    identity: &KeyIdentity,
    signature: &[u8],
) -> Result<alloc::vec::Vec<u8>, der::Error> {
    use cms::cert::IssuerAndSerialNumber;
    use cms::signed_data::{EncapsulatedContentInfo, SignerInfos};
    use der::asn1::{OctetString, SetOfVec};
    use der::{Any, Encode};
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;

    let sha256 = AlgorithmIdentifierOwned {
        oid: oid::SHA256,
        parameters: None,
    };
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: Name::from_der(&identity.issuer_der)?,
            serial_number: SerialNumber::new(&identity.serial)?,
        }),
        digest_alg: sha256.clone(),
        signed_attrs: None,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: oid::ECDSA_WITH_SHA256,
            parameters: None,
        },
        signature: OctetString::new(signature)?,
        unsigned_attrs: None,
    };
    let mut digest_algorithms = SetOfVec::new();
    digest_algorithms.insert(sha256)?;
    let mut signer_infos = SetOfVec::new();
    signer_infos.insert(signer)?;
    let data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: oid::DATA,
            econtent: None,
        },
        certificates: None,
        crls: None,
        signer_infos: SignerInfos(signer_infos),
    };
    ContentInfo {
        content_type: oid::SIGNED_DATA,
        content: Any::encode_from(&data)?,
    }
    .to_der()
}
