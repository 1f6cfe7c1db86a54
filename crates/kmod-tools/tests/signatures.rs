//! Signed modules: `modinfo` shows the signature fields exactly as kmod's modinfo does, and
//! the PKCS#7 message is one OpenSSL verifies (an implementation independent of ours).
//!
//! Keys: `fixtures/signing/test-key.pem`, a P-256 key made with
//! `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`, for these tests only
//! (no build trusts it). Signatures are deterministic, so the expected text
//! (`fixtures/signing/params.ko.modinfo`, what Debian 12's `/sbin/modinfo`, kmod 30 with
//! OpenSSL, printed for the signed file) stays valid.

use std::path::{Path, PathBuf};
use std::process::Command;

use kmod_tools::{ModuleFile, ToolError, modinfo, sign};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn test_key() -> kmod_sig::SigningKey {
    sign::read_key(&fixtures().join("signing/test-key.pem")).unwrap()
}

/// Signs the `params` fixture into `dir`; returns the signed file.
fn signed_params(dir: &Path) -> PathBuf {
    let out = dir.join("params.ko");
    let replaced =
        sign::sign_file(&test_key(), &fixtures().join("kmodlab/params.ko"), &out).unwrap();
    assert_eq!(replaced, None);
    out
}

/// `program` if it can be run here; otherwise says that the comparison is skipped.
fn tool(program: &str) -> Option<Command> {
    match Command::new(program).arg("--version").output() {
        Ok(o) if o.status.success() => Some(Command::new(program)),
        _ => {
            eprintln!("{program} is not installed: comparison against it SKIPPED");
            None
        }
    }
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn signed_module_modinfo_matches_kmod() {
    let dir = scratch("sig-modinfo");
    let path = signed_params(&dir);
    let module = ModuleFile::open(&path).unwrap();
    let ours = modinfo::render(
        &module.modinfo,
        module.signature.as_ref(),
        "/lib/modules/params.ko",
        None,
        '\n',
    );
    let expected = std::fs::read_to_string(fixtures().join("signing/params.ko.modinfo")).unwrap();
    assert_eq!(ours, expected);
    assert!(
        ours.contains(
            "sig_id:         PKCS#7\nsigner:         kmodlab module signing key\nsig_key:        "
        ),
        "{ours}"
    );

    // Live, where kmod is installed: every form of output, byte for byte.
    let Some(_) = tool("/sbin/modinfo") else {
        return;
    };
    let name = path.to_str().unwrap();
    for args in [
        vec![],
        vec!["-0"],
        vec!["-F", "signature"],
        vec!["-F", "sig_key"],
        vec!["-F", "signer"],
        vec!["-F", "sig_hashalgo"],
        vec!["-F", "sig_id"],
    ] {
        let kmod = stdout(Command::new("/sbin/modinfo").args(&args).arg(name));
        let field = args.iter().position(|a| *a == "-F").map(|i| args[i + 1]);
        let separator = if args.contains(&"-0") { '\0' } else { '\n' };
        assert_eq!(
            modinfo::render(
                &module.modinfo,
                module.signature.as_ref(),
                name,
                field,
                separator
            ),
            kmod,
            "modinfo {args:?}"
        );
    }
}

#[test]
fn unsigned_and_signed_modules_differ_only_in_the_signature_fields() {
    let dir = scratch("sig-fields");
    let signed = ModuleFile::open(&signed_params(&dir)).unwrap();
    let unsigned = ModuleFile::open(&fixtures().join("kmodlab/params.ko")).unwrap();
    assert!(unsigned.signature.is_none());
    assert_eq!(signed.modinfo, unsigned.modinfo);
    let text = modinfo::render(&signed.modinfo, signed.signature.as_ref(), "f", None, '\n');
    let plain = modinfo::render(
        &unsigned.modinfo,
        unsigned.signature.as_ref(),
        "f",
        None,
        '\n',
    );
    let extra: Vec<&str> = text.lines().filter(|l| !plain.contains(*l)).collect();
    let keys: Vec<&str> = extra
        .iter()
        .filter(|l| !l.starts_with('\t'))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["sig_id", "signer", "sig_key", "sig_hashalgo", "signature"]
    );
}

#[test]
fn openssl_verifies_the_signature() {
    let Some(_) = tool("openssl") else {
        return;
    };
    let dir = scratch("sig-openssl");
    let path = signed_params(&dir);
    let file = std::fs::read(&path).unwrap();
    let trailer = kmod_sig::split(&file).unwrap().unwrap();
    let elf = dir.join("params.elf");
    let p7 = dir.join("params.p7s");
    std::fs::write(&elf, trailer.module).unwrap();
    std::fs::write(&p7, trailer.signature).unwrap();
    assert_eq!(
        trailer.module,
        std::fs::read(fixtures().join("kmodlab/params.ko")).unwrap()
    );

    // A certificate for the test key with the identity kmodlab derives: OpenSSL finds the
    // signer by issuer and serial number, as Linux does in its keyring.
    let key = fixtures().join("signing/test-key.pem");
    let serial: String = test_key()
        .identity()
        .serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cert = dir.join("cert.pem");
    stdout(
        Command::new("openssl")
            .args(["req", "-x509", "-new", "-days", "1", "-subj"])
            .arg(format!("/CN={}", kmod_sig::SIGNER_NAME))
            .arg("-set_serial")
            .arg(format!("0x{serial}"))
            .arg("-key")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let verify = |content: &Path| {
        Command::new("openssl")
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-noverify"])
            .arg("-in")
            .arg(&p7)
            .arg("-content")
            .arg(content)
            .arg("-certfile")
            .arg(&cert)
            .args(["-out", "/dev/null"])
            .output()
            .unwrap()
    };
    let ok = verify(&elf);
    assert!(
        ok.status.success(),
        "openssl cms -verify: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // And it notices a change.
    let mut tampered = trailer.module.to_vec();
    tampered[100] ^= 1;
    let bad = dir.join("tampered.elf");
    std::fs::write(&bad, tampered).unwrap();
    assert!(!verify(&bad).status.success());

    // The structure is sign-file's: detached data, SHA-256, ecdsa-with-SHA256, no
    // certificates, no signed attributes.
    let dump = stdout(
        Command::new("openssl")
            .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
            .arg(&p7),
    );
    for needle in [
        "contentType: pkcs7-signedData",
        "eContentType: pkcs7-data",
        "eContent: <ABSENT>",
        "certificates:\n      <ABSENT>",
        "algorithm: sha256",
        "signedAttrs:\n          <ABSENT>",
        "algorithm: ecdsa-with-SHA256",
        "unsignedAttrs:\n          <ABSENT>",
    ] {
        assert!(dump.contains(needle), "no {needle:?} in\n{dump}");
    }
}

#[test]
fn signing_replaces_an_existing_signature_and_refuses_broken_ones() {
    let dir = scratch("sig-resign");
    let path = signed_params(&dir);
    let once = std::fs::read(&path).unwrap();
    let replaced = sign::sign_file(&test_key(), &path, &path).unwrap();
    assert_eq!(
        replaced.as_deref(),
        Some(
            format!(
                "signer \"kmodlab module signing key\", key {}",
                kmodlab_abi::modinfo::kmod_hex(&test_key().identity().serial)
            )
            .as_str()
        )
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        once,
        "re-signing is idempotent"
    );

    // A trailer whose lengths are wrong.
    let mut broken = once.clone();
    let at = broken.len() - kmod_sig::MAGIC.len() - 1;
    broken[at] = broken[at].wrapping_add(1);
    let broken_path = dir.join("broken.ko");
    std::fs::write(&broken_path, &broken).unwrap();
    let err = sign::sign_file(&test_key(), &broken_path, &dir.join("out.ko")).unwrap_err();
    assert!(matches!(err, ToolError::Sign { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("ends in the signature marker, but"),
        "{err}"
    );

    // Not a module at all.
    let text = dir.join("notes.ko");
    std::fs::write(&text, b"not an ELF file").unwrap();
    let err = sign::sign_file(&test_key(), &text, &dir.join("out.ko")).unwrap_err();
    assert!(matches!(err, ToolError::NotModule { .. }), "{err}");
    // Compressed modules are signed before compression.
    let err = sign::sign_file(
        &test_key(),
        &fixtures().join("compressed/stp.ko.xz"),
        &dir.join("out.ko"),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("sign the uncompressed .ko"),
        "{err}"
    );
}

#[test]
fn new_keys_are_private_and_never_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("sig-newkey");
    let path = dir.join("my.pem");
    let key = sign::new_key(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = std::fs::read(sign::public_key_path(&path)).unwrap();
    let trusted = kmod_sig::TrustedKey::from_spki_der(&public).unwrap();
    assert_eq!(trusted.identity(), key.identity());
    assert_eq!(sign::read_key(&path).unwrap().identity(), key.identity());
    let err = sign::new_key(&path).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = sign::read_key(&fixtures().join("kmodlab/hello.ko")).unwrap_err();
    assert!(matches!(err, ToolError::Key { .. }), "{err}");
    assert!(err.to_string().ends_with(": not text"), "{err}");
    let err = sign::read_key(Path::new("/dev/zero")).unwrap_err();
    assert!(err.to_string().ends_with(": not a regular file"), "{err}");
    let big = dir.join("big.pem");
    std::fs::write(&big, vec![b'A'; 70_000]).unwrap();
    let err = sign::read_key(&big).unwrap_err();
    assert!(
        err.to_string().ends_with("larger than 65536 bytes"),
        "{err}"
    );
}

#[test]
fn linux_modules_signed_by_debian_are_read_and_classified() {
    // Debian's modules carry a PKCS#7 signature by an RSA build-time key: kmod shows it (the
    // expected text is in tools.rs); kmodlab's kernel, which verifies ECDSA P-256 only,
    // classifies it as Linux would a key type it lacks: unsupported crypto, tolerated unless
    // signatures are enforced.
    let data = std::fs::read(fixtures().join("linux/kernel/net/802/stp.ko")).unwrap();
    let info = kmod_sig::SignatureInfo::of(&data).unwrap();
    assert_eq!(info.id_type, "PKCS#7");
    assert_eq!(info.signer, b"Build time autogenerated kernel key");
    assert_eq!(info.hash_algo, "sha256");
    assert_eq!(info.signature.len(), 512, "RSA-4096");
    let checked = kmod_sig::check(&data, Some(test_key().trusted_key()));
    assert_eq!(
        checked.outcome,
        Err(kmod_sig::VerifyError::UnsupportedAlgorithm {
            role: "signature",
            oid: "1.2.840.113549.1.1.1".into()
        })
    );
    assert_eq!(
        checked.outcome.unwrap_err().class(),
        kmod_sig::Tolerance::UnlessEnforced {
            reason: "module with unsupported crypto"
        }
    );
    assert_eq!(checked.module.len(), kmod_sig::strip(&data).len());
    assert!(checked.module.len() < data.len());
    assert!(ModuleFile::parse(Path::new("stp.ko"), checked.module).is_ok());
}
