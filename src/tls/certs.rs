//! A site's certificate files: a PEM chain and its private key, loaded and checked (both parse,
//! the key belongs to the certificate, the certificate is valid now and names the site's hosts).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;

/// What is wrong with a certificate or key file. Never includes key material.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {kind}")]
    Read {
        path: String,
        kind: std::io::ErrorKind,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key")]
    NoKey { path: String },
    #[error("{path}: the private key is not usable: {reason}")]
    BadKey { path: String, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: String, key: String },
    #[error("{path}: the certificate cannot be parsed")]
    Unparsable { path: String },
    #[error("{path}: the certificate expired at {not_after} (UTC)")]
    Expired { path: String, not_after: String },
    #[error("{path}: the certificate is not valid before {not_before} (UTC)")]
    NotYetValid { path: String, not_before: String },
}

impl CertError {
    /// Whether the problem is the key file's (else the certificate file's).
    pub fn is_about_key(&self, key_path: &str) -> bool {
        match self {
            CertError::NoKey { .. } | CertError::BadKey { .. } | CertError::Mismatch { .. } => true,
            CertError::Read { path, .. } => path == key_path,
            _ => false,
        }
    }
}

fn read(path: &str) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| CertError::Read {
        path: path.to_string(),
        kind: e.kind(),
    })
}

/// The certificate chain in a PEM file, leaf first.
fn chain(path: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(CertError::NoCertificate {
            path: path.to_string(),
        });
    }
    Ok(certs)
}

fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    let pem = read(path)?;
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(k)) => Ok(k),
        _ => Err(CertError::NoKey {
            path: path.to_string(),
        }),
    }
}

/// Loads a certificate chain and its key, checked to belong together and to be valid now.
pub fn load(cert_path: &str, key_path: &str) -> Result<Arc<CertifiedKey>, CertError> {
    let certs = chain(cert_path)?;
    let key = private_key(key_path)?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::BadKey {
            path: key_path.to_string(),
            reason: e.to_string(),
        })?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|_| CertError::Mismatch {
        cert: cert_path.to_string(),
        key: key_path.to_string(),
    })?;
    check_validity(cert_path, &ck.cert[0])?;
    Ok(Arc::new(ck))
}

/// The leaf certificate's validity period contains now.
fn check_validity(path: &str, leaf: &CertificateDer<'_>) -> Result<(), CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|_| CertError::Unparsable {
            path: path.to_string(),
        })?;
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        return Err(CertError::Expired {
            path: path.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    if now < validity.not_before {
        return Err(CertError::NotYetValid {
            path: path.to_string(),
            not_before: validity.not_before.to_string(),
        });
    }
    Ok(())
}

/// Whether the leaf certificate is valid for `host` (a DNS name, wildcards as browsers match them).
pub fn covers(ck: &CertifiedKey, host: &str) -> bool {
    let Ok(name) = ServerName::try_from(host.to_string()) else {
        return false;
    };
    let Some(leaf) = ck.cert.first() else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &std::path::Path, names: &[&str]) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cert = dir.join(format!("{}.crt", names[0]));
        let key = dir.join(format!("{}.key", names[0]));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        (
            cert.to_string_lossy().into_owned(),
            key.to_string_lossy().into_owned(),
        )
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "smproxy-certs-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_pair_loads_and_names_its_hosts() {
        let d = tempdir();
        let (c, k) = write_pair(&d, &["a.example", "*.b.example"]);
        let ck = load(&c, &k).unwrap();
        assert!(covers(&ck, "a.example"));
        assert!(covers(&ck, "x.b.example"));
        assert!(!covers(&ck, "b.example"));
        assert!(!covers(&ck, "c.example"));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch() {
        let d = tempdir();
        let (c1, _) = write_pair(&d, &["one.example"]);
        let (_, k2) = write_pair(&d, &["two.example"]);
        let e = load(&c1, &k2).unwrap_err();
        assert!(matches!(e, CertError::Mismatch { .. }), "{e}");
        assert!(e.is_about_key(&k2));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn swapped_or_missing_files_are_named() {
        let d = tempdir();
        let (c, k) = write_pair(&d, &["a.example"]);
        assert!(matches!(load(&k, &c), Err(CertError::NoCertificate { .. })));
        assert!(matches!(load(&c, &c), Err(CertError::NoKey { .. })));
        let missing = d.join("missing.crt").to_string_lossy().into_owned();
        let e = load(&missing, &k).unwrap_err();
        assert!(e.to_string().contains("missing.crt"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn an_expired_certificate_is_rejected() {
        let d = tempdir();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.example".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (d.join("old.crt"), d.join("old.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let e = load(c.to_str().unwrap(), k.to_str().unwrap()).unwrap_err();
        assert!(matches!(e, CertError::Expired { .. }), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }
}
