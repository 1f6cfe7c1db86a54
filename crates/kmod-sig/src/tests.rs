use alloc::vec::Vec;
use std::sync::OnceLock;

use proptest::prelude::*;

use super::*;

/// A stand-in module: an ELF header's first bytes and some content.
fn module() -> Vec<u8> {
    let mut m = b"\x7fELF\x02\x01\x01".to_vec();
    m.extend((0..4000u32).map(|i| (i * 7 % 251) as u8));
    m
}

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(SigningKey::generate)
}

fn other_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(SigningKey::generate)
}

fn signed() -> Vec<u8> {
    key().sign(&module()).unwrap()
}

fn outcome(file: &[u8]) -> Result<Verified, VerifyError> {
    check(file, Some(key().trusted_key())).outcome
}

#[test]
fn sign_verify_round_trip() {
    let file = signed();
    let checked = check(&file, Some(key().trusted_key()));
    assert_eq!(checked.module, module().as_slice());
    assert_eq!(
        checked.outcome,
        Ok(Verified {
            identity: key().identity().clone()
        })
    );
    assert_eq!(strip(&file), module().as_slice());
    assert!(file.ends_with(MAGIC));
}

#[test]
fn trailer_has_linux_layout() {
    let file = signed();
    let rest = &file[..file.len() - MAGIC.len()];
    let info = &rest[rest.len() - SIGNATURE_INFO_SIZE..];
    let sig_len = u32::from_be_bytes(info[8..12].try_into().unwrap()) as usize;
    assert_eq!(&info[..8], &[0, 0, PKEY_ID_PKCS7, 0, 0, 0, 0, 0]);
    assert_eq!(
        module().len() + sig_len + SIGNATURE_INFO_SIZE + MAGIC.len(),
        file.len()
    );
    // A DER SEQUENCE (ContentInfo) starts the signature data.
    assert_eq!(file[module().len()], 0x30);
}

#[test]
fn signing_is_deterministic() {
    assert_eq!(signed(), signed());
}

#[test]
fn key_files_round_trip() {
    let pem = key().to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.identity(), key().identity());
    let public = TrustedKey::from_spki_der(&key().public_key_der().unwrap()).unwrap();
    assert_eq!(public.identity(), key().identity());
    assert!(matches!(
        SigningKey::from_pkcs8_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        ),
        Err(SignError::NotP256PrivateKey { .. })
    ));
    assert!(matches!(
        TrustedKey::from_spki_der(b"not a key"),
        Err(KeyError::NotP256PublicKey { .. })
    ));
}

#[test]
fn identity_is_derived_from_the_public_key() {
    let id = key().identity();
    assert_eq!(id.serial.len(), 16);
    assert_eq!(id.serial[0] & 0xc0, 0x40);
    assert_eq!(id.issuer, alloc::format!("CN={SIGNER_NAME}"));
    assert_ne!(id, other_key().identity());
}

#[test]
fn unsigned_module_is_reported_as_such() {
    let m = module();
    let checked = check(&m, Some(key().trusted_key()));
    assert_eq!(checked.module, m.as_slice());
    assert_eq!(checked.outcome, Err(VerifyError::Unsigned));
    assert_eq!(VerifyError::Unsigned.errno(), error::errno::ENODATA);
    assert_eq!(
        VerifyError::Unsigned.class(),
        Tolerance::UnlessEnforced {
            reason: "unsigned module"
        }
    );
}

#[test]
fn a_flipped_byte_in_the_module_is_rejected() {
    for at in [0, 1, 100, module().len() - 1] {
        let mut file = signed();
        file[at] ^= 0x01;
        assert_eq!(outcome(&file), Err(VerifyError::Rejected), "byte {at}");
    }
    assert_eq!(VerifyError::Rejected.errno(), error::errno::EKEYREJECTED);
    assert_eq!(VerifyError::Rejected.class(), Tolerance::Fatal);
}

#[test]
fn a_flipped_byte_in_the_signature_is_refused() {
    let file = signed();
    let sig_start = module().len();
    let sig_end = file.len() - MAGIC.len() - SIGNATURE_INFO_SIZE;
    // The ECDSA signature's r and s are the last bytes of the message: a change there is a
    // mismatch (or, rarely, an invalid scalar); anywhere else it breaks the DER structure or
    // changes the signer.
    let mut file2 = file.clone();
    file2[sig_end - 1] ^= 0x01;
    assert!(
        matches!(
            outcome(&file2),
            Err(VerifyError::Rejected | VerifyError::BadSignatureEncoding)
        ),
        "{:?}",
        outcome(&file2)
    );
    for at in sig_start..sig_end {
        let mut bad = file.clone();
        bad[at] ^= 0x40;
        let result = outcome(&bad);
        assert!(
            result.is_err(),
            "byte {at} of the signature flipped, still verifies"
        );
        assert_ne!(result, Err(VerifyError::Unsigned));
    }
}

#[test]
fn a_signature_by_another_key_is_an_unknown_key() {
    let file = other_key().sign(&module()).unwrap();
    assert_eq!(
        outcome(&file),
        Err(VerifyError::UnknownKey {
            signer: other_key().identity().clone()
        })
    );
    let e = VerifyError::UnknownKey {
        signer: other_key().identity().clone(),
    };
    assert_eq!(e.errno(), error::errno::ENOKEY);
    assert_eq!(
        e.class(),
        Tolerance::UnlessEnforced {
            reason: "module with unavailable key"
        }
    );
    assert_eq!(
        check(&file, None).outcome,
        Err(VerifyError::NoTrustedKey),
        "a kernel without a key"
    );
}

#[test]
fn a_signature_from_another_key_under_our_name_is_rejected() {
    // Same identity, different key: the signature must not verify.
    let sig = other_key().pkcs7_signature(&module()).unwrap();
    let forged_der = {
        let message = pkcs7::parse_signed_data(&sig).unwrap();
        let value = message.only_signer().unwrap().signature().to_vec();
        pkcs7::encode(key().identity(), &value).unwrap()
    };
    let mut file = module();
    append(&mut file, &forged_der).unwrap();
    assert_eq!(outcome(&file), Err(VerifyError::Rejected));
}

#[test]
fn truncated_trailers_are_typed() {
    let file = signed();
    // Cut bytes out of the signature data: the marker is intact, the lengths are not.
    let sig_start = module().len();
    let mut cut = file[..sig_start + 10].to_vec();
    cut.extend_from_slice(&file[file.len() - MAGIC.len() - SIGNATURE_INFO_SIZE..]);
    assert!(matches!(
        outcome(&cut),
        Err(VerifyError::Trailer(TrailerError::SignatureTooLong { .. })
            | VerifyError::Malformed { .. })
    ));
    // Nothing but the marker, or the marker and part of the structure.
    assert_eq!(
        outcome(MAGIC),
        Err(VerifyError::Trailer(TrailerError::TooShort { len: 0 }))
    );
    let mut short = vec![0u8; 5];
    short.extend_from_slice(MAGIC);
    assert_eq!(
        outcome(&short),
        Err(VerifyError::Trailer(TrailerError::TooShort { len: 5 }))
    );
    // The marker cut: no longer a signed file.
    assert_eq!(outcome(&file[..file.len() - 1]), Err(VerifyError::Unsigned));
}

fn with_info(info: ModuleSignature, signature: &[u8]) -> Vec<u8> {
    let mut file = module();
    file.extend_from_slice(signature);
    file.extend_from_slice(&info.to_bytes());
    file.extend_from_slice(MAGIC);
    file
}

#[test]
fn hostile_lengths_and_params_are_typed() {
    let sig = key().pkcs7_signature(&module()).unwrap();
    let total = module().len() + sig.len();
    for sig_len in [u32::MAX, total as u32, total as u32 + 1] {
        assert_eq!(
            outcome(&with_info(ModuleSignature::pkcs7(sig_len), &sig)),
            Err(VerifyError::Trailer(TrailerError::SignatureTooLong {
                sig_len,
                available: total
            }))
        );
    }
    // A length that fits but is wrong: the DER no longer parses (or trails).
    let wrong = outcome(&with_info(
        ModuleSignature::pkcs7(sig.len() as u32 + 3),
        &sig,
    ));
    assert!(
        matches!(wrong, Err(VerifyError::Malformed { .. })),
        "{wrong:?}"
    );
    let wrong = outcome(&with_info(
        ModuleSignature::pkcs7(sig.len() as u32 - 3),
        &sig,
    ));
    assert!(
        matches!(wrong, Err(VerifyError::Malformed { .. })),
        "{wrong:?}"
    );

    let legacy = ModuleSignature {
        id_type: 1,
        ..ModuleSignature::pkcs7(sig.len() as u32)
    };
    assert_eq!(
        outcome(&with_info(legacy, &sig)),
        Err(VerifyError::Trailer(TrailerError::NotPkcs7 { id_type: 1 }))
    );
    assert_eq!(
        VerifyError::Trailer(TrailerError::NotPkcs7 { id_type: 1 }).class(),
        Tolerance::UnlessEnforced {
            reason: "module with unsupported crypto"
        }
    );
    for info in [
        ModuleSignature {
            algo: 1,
            ..ModuleSignature::pkcs7(sig.len() as u32)
        },
        ModuleSignature {
            signer_len: 4,
            ..ModuleSignature::pkcs7(sig.len() as u32)
        },
        ModuleSignature {
            pad: [0, 0, 1],
            ..ModuleSignature::pkcs7(sig.len() as u32)
        },
    ] {
        assert_eq!(
            outcome(&with_info(info, &sig)),
            Err(VerifyError::Trailer(TrailerError::NonZeroParams { info }))
        );
        assert_eq!(
            VerifyError::Trailer(TrailerError::NonZeroParams { info }).class(),
            Tolerance::Fatal
        );
    }
}

#[test]
fn non_signed_data_messages_are_typed() {
    // A valid DER ContentInfo of type `data`.
    let data = [
        0x30, 0x0f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0xa0, 0x02,
        0x05, 0x00,
    ];
    let file = with_info(ModuleSignature::pkcs7(data.len() as u32), &data);
    assert_eq!(
        outcome(&file),
        Err(VerifyError::Shape {
            reason: "is not SignedData"
        })
    );
    let garbage = [0xffu8; 40];
    let file = with_info(ModuleSignature::pkcs7(garbage.len() as u32), &garbage);
    assert!(matches!(outcome(&file), Err(VerifyError::Malformed { .. })));
}

#[test]
fn messages_name_the_problem() {
    let e = VerifyError::UnknownKey {
        signer: key().identity().clone(),
    };
    let text = e.to_string();
    assert!(
        text.starts_with(
            "the module is signed by a key this kernel does not trust (issuer \"CN=kmodlab module signing key\", serial "
        ),
        "{text}"
    );
    assert_eq!(
        VerifyError::Rejected.to_string(),
        "the module's signature does not match its contents (changed after signing)"
    );
}

#[test]
fn kmod_info_of_a_signed_module() {
    let file = signed();
    let info = SignatureInfo::of(&file).unwrap();
    assert_eq!(info.id_type, "PKCS#7");
    assert_eq!(info.signer, SIGNER_NAME.as_bytes());
    assert_eq!(info.key_id, key().identity().serial);
    assert_eq!(info.hash_algo, "sha256");
    let message = pkcs7::parse_signed_data(split(&file).unwrap().unwrap().signature).unwrap();
    assert_eq!(info.signature, message.only_signer().unwrap().signature());
    assert_eq!(SignatureInfo::of(&module()), None);
}

#[test]
fn kmod_info_of_a_legacy_trailer() {
    // kmod's default layout: signer, key id and signature in front of the structure.
    let mut file = module();
    file.extend_from_slice(b"Signer");
    file.extend_from_slice(&[0xab, 0xcd]);
    file.extend_from_slice(&[1, 2, 3]);
    let info = ModuleSignature {
        algo: 1,
        hash: 4,
        id_type: 1,
        signer_len: 6,
        key_id_len: 2,
        pad: [0; 3],
        sig_len: 3,
    };
    file.extend_from_slice(&info.to_bytes());
    file.extend_from_slice(MAGIC);
    assert_eq!(
        SignatureInfo::of(&file),
        Some(SignatureInfo {
            id_type: "X509",
            signer: b"Signer".to_vec(),
            key_id: vec![0xab, 0xcd],
            hash_algo: "sha256",
            signature: vec![1, 2, 3],
        })
    );
    // kmod refuses algo beyond RSA.
    let mut bad = file.clone();
    let at = bad.len() - MAGIC.len() - SIGNATURE_INFO_SIZE;
    bad[at] = 2;
    assert_eq!(SignatureInfo::of(&bad), None);
}

fn arbitrary_trailer() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<[u8; 12]>(),
        any::<bool>(),
    )
        .prop_map(|(front, sig, mut info, plausible)| {
            if plausible {
                // Mostly well-formed headers, so the PKCS#7 decoder gets exercised.
                info[..8].copy_from_slice(&[0, 0, PKEY_ID_PKCS7, 0, 0, 0, 0, 0]);
                info[8..].copy_from_slice(&(sig.len() as u32).to_be_bytes());
            }
            let mut file = front;
            file.extend_from_slice(&sig);
            file.extend_from_slice(&info);
            file.extend_from_slice(MAGIC);
            file
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_files_never_panic(file in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = check(&file, Some(key().trusted_key()));
        let _ = SignatureInfo::of(&file);
        let _ = strip(&file);
    }

    #[test]
    fn arbitrary_trailers_never_panic_and_never_verify(file in arbitrary_trailer()) {
        let checked = check(&file, Some(key().trusted_key()));
        prop_assert!(checked.outcome.is_err());
        prop_assert!(checked.module.len() <= file.len());
        let _ = SignatureInfo::of(&file);
    }

    #[test]
    fn mutated_signed_modules_never_verify(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut file = signed();
        let i = at.index(file.len() - MAGIC.len());
        file[i] ^= 1 << bit;
        let checked = check(&file, Some(key().trusted_key()));
        prop_assert!(checked.outcome.is_err(), "bit {} of byte {} flipped", bit, i);
        let _ = SignatureInfo::of(&file);
    }

    #[test]
    fn truncated_signed_modules_never_verify(cut in 1usize..200) {
        let file = signed();
        let short = &file[..file.len().saturating_sub(cut)];
        prop_assert!(check(short, Some(key().trusted_key())).outcome.is_err());
        let _ = SignatureInfo::of(short);
    }
}

#[test]
fn hostile_der_lengths_are_malformed_not_allocated() {
    // A ContentInfo SEQUENCE claiming 4 GiB, and one whose inner OID claims more than the
    // sequence holds.
    for der in [
        &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x06, 0x09][..],
        &[0x30, 0x05, 0x06, 0x7f, 0x2a, 0x86, 0x48][..],
        &[0x30, 0x80, 0x00, 0x00][..], // BER indefinite length: not DER
    ] {
        let file = with_info(ModuleSignature::pkcs7(der.len() as u32), der);
        assert!(
            matches!(outcome(&file), Err(VerifyError::Malformed { .. })),
            "{der:02x?}: {:?}",
            outcome(&file)
        );
        assert_eq!(SignatureInfo::of(&file), None);
    }
}

#[test]
fn a_signer_named_by_key_identifier_is_an_unknown_key() {
    use cms::signed_data::{SignedData, SignerIdentifier};
    use der::{Decode, Encode};
    // Our message, re-encoded with the signer named by a subject key identifier (versions 3,
    // as RFC 5652 wants), as `sign-file -k` would name it.
    let der = key().pkcs7_signature(&module()).unwrap();
    let mut info = cms::content_info::ContentInfo::from_der(&der).unwrap();
    let mut data: SignedData = info.content.decode_as().unwrap();
    let mut signer = data.signer_infos.0.as_slice()[0].clone();
    signer.sid =
        SignerIdentifier::SubjectKeyIdentifier(x509_cert::ext::pkix::SubjectKeyIdentifier(
            der::asn1::OctetString::new(vec![0xab; 20]).unwrap(),
        ));
    signer.version = cms::content_info::CmsVersion::V3;
    data.version = cms::content_info::CmsVersion::V3;
    let mut signers = der::asn1::SetOfVec::new();
    signers.insert(signer).unwrap();
    data.signer_infos = cms::signed_data::SignerInfos(signers);
    info.content = der::Any::encode_from(&data).unwrap();
    let reencoded = info.to_der().unwrap();
    let file = with_info(ModuleSignature::pkcs7(reencoded.len() as u32), &reencoded);
    let e = outcome(&file).unwrap_err();
    assert_eq!(
        e,
        VerifyError::UnknownKeyId {
            key_id: vec![0xab; 20]
        }
    );
    assert_eq!(e.errno(), error::errno::ENOKEY);
    assert!(
        e.to_string().ends_with(
            "(subject key identifier AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB)"
        ),
        "{e}"
    );
}

/// The fuzz targets' trusted key (`fuzz/test-key.pub.der`) is the public half of the
/// committed test key, so that the seeds below, signed with it, verify in the targets.
fn fuzz_key() -> SigningKey {
    SigningKey::from_pkcs8_pem(include_str!(
        "../../kmod-tools/tests/fixtures/signing/test-key.pem"
    ))
    .unwrap()
}

#[test]
fn the_fuzz_targets_key_is_the_test_keys_public_half() {
    assert_eq!(
        fuzz_key().public_key_der().unwrap(),
        include_bytes!("../fuzz/test-key.pub.der")
    );
}

/// Writes the seeds of the fuzz targets (`fuzz/bodies.rs`) to
/// `$KMODLAB_FUZZ_SEEDS/{signed_file,pkcs7}/`.
#[test]
#[ignore = "writes fuzz seeds; set KMODLAB_FUZZ_SEEDS=DIR"]
fn write_fuzz_seeds() {
    let out = std::path::PathBuf::from(std::env::var_os("KMODLAB_FUZZ_SEEDS").unwrap());
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    // The fixed module of `fuzz/bodies.rs`.
    let module: &[u8] =
        b"\x7fELF\x02\x01\x01\0kmodlab fuzz module: the signature covers these bytes";
    let good = fuzz_key().pkcs7_signature(module).unwrap();
    let other = key().pkcs7_signature(module).unwrap();
    let of_other_module = fuzz_key().pkcs7_signature(b"\x7fELF another").unwrap();
    write("pkcs7", "valid", &good);
    write("pkcs7", "unknown-key", &other);
    write("pkcs7", "other-module", &of_other_module);
    write("pkcs7", "truncated", &good[..good.len() / 2]);
    let signed = fuzz_key().sign(module).unwrap();
    write("signed_file", "valid", &signed);
    write("signed_file", "unknown-key", &key().sign(module).unwrap());
    write("signed_file", "unsigned", module);
    write("signed_file", "marker-only", MAGIC);
    let mut long = signed.clone();
    let at = long.len() - MAGIC.len() - 4;
    long[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    write("signed_file", "sig-len-max", &long);
}
