//! Reading PEM files: a listener's certificate chain and private key, an
//! upstream's CA bundle. Every error names the key of the file at fault and
//! quotes its path.

use crate::config::ConfigError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use std::path::Path;

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::invalid(key, format!("cannot read {path:?}: {e}")))
}

/// Every CERTIFICATE block of a PEM file, in order; at least one.
fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::invalid(key, format!("{path:?} is not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("{path:?} holds no CERTIFICATE block (PEM)"),
        ));
    }
    Ok(certs)
}

/// `[section.tls]`: the chain of `cert_file` (leaf first, then its
/// intermediates) with the private key of `key_file`, checked to belong to
/// the leaf.
pub(super) fn certified_key(
    section: &str,
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, ConfigError> {
    let cert_key = format!("{section}.tls.cert_file");
    let key_key = format!("{section}.tls.key_file");
    let chain = certificates(&cert_key, cert_file)?;
    let bytes = read(&key_key, key_file)?;
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        ConfigError::invalid(
            &key_key,
            format!("{key_file:?} holds no usable private key (PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY, unencrypted): {e}"),
        )
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| {
        ConfigError::invalid(
            &key_key,
            format!("{key_file:?}: unsupported private key ({e}); use RSA, ECDSA P-256/P-384 or Ed25519"),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(ConfigError::invalid(
                &key_key,
                format!(
                    "{key_file:?} is not the private key of the first certificate in {cert_file:?}"
                ),
            ))
        }
        Err(e) => Err(ConfigError::invalid(
            &cert_key,
            format!("{cert_file:?}: the first certificate cannot be used: {e}"),
        )),
    }
}

/// A CA bundle: every certificate of a PEM file becomes a trust anchor.
pub(super) fn roots(key: &str, path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut store = RootCertStore::empty();
    for (i, cert) in certificates(key, path)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| {
            ConfigError::invalid(
                key,
                format!("{path:?}: certificate {} is not a usable CA: {e}", i + 1),
            )
        })?;
    }
    Ok(store)
}
