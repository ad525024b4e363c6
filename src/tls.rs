//! TLS at both ends, with rustls on the ring provider: the listeners'
//! certificates and handshakes, and the client side for `https://`
//! upstreams.
//!
//! - [`ListenerTls`] is `[server.tls]` / `[admin.tls]` loaded: the chain and
//!   key read and checked against each other when the config is loaded (so
//!   a bad file is a config error naming its key, at start and on reload).
//! - [`Acceptor`] is one listener's rustls server: TLS 1.3 and 1.2, ALPN
//!   `h2` and `http/1.1`, and the certificate a reload swaps
//!   ([`Acceptor::reload`]): new handshakes present the new one, open
//!   connections keep theirs.
//! - [`Stream`] is what the accept loop hands hyper: a plain socket, or one
//!   whose handshake runs on the connection's own task when hyper first
//!   reads it. The accept loop never waits for a handshake, and the
//!   connection's `header_read_timeout` bound (from accept) covers it, so a
//!   client that connects and sends nothing is closed like a plain one.
//! - [`upstream`]: the client configuration of an `https://` upstream.

mod files;
mod stream;
pub mod upstream;

pub use stream::Stream;
pub use upstream::UpstreamTls;

use crate::config::ConfigError;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// The ALPN protocols a listener offers, preferred first: HTTP/2, then
/// HTTP/1.1 (a client offering neither gets HTTP/1.1 or the h2 preface it
/// sends).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A listener's `[*.tls]` section, loaded: the certificate chain and its
/// private key, checked to match.
#[derive(Clone)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    key: Arc<CertifiedKey>,
}

impl fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl ListenerTls {
    /// Reads `cert_file` (PEM: the certificate, then its intermediates) and
    /// `key_file` (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC; RSA, ECDSA P-256 and
    /// P-384, Ed25519). `section` is `server` or `admin`, for error keys.
    pub fn load(section: &str, cert_file: PathBuf, key_file: PathBuf) -> Result<Self, ConfigError> {
        let key = files::certified_key(section, &cert_file, &key_file)?;
        Ok(ListenerTls {
            cert_file,
            key_file,
            key: Arc::new(key),
        })
    }

    /// The certificate chain, leaf first (DER).
    pub fn chain(&self) -> &[rustls::pki_types::CertificateDer<'static>] {
        &self.key.cert
    }
}

/// The certificate a listener presents; a reload stores a new one.
#[derive(Debug)]
struct CurrentCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// One TLS listener's server side.
pub struct Acceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    cert: Arc<CurrentCert>,
}

impl Acceptor {
    /// A rustls server presenting `tls`'s certificate: TLS 1.3 and 1.2 with
    /// rustls's default (safe) cipher suites, ALPN `h2` and `http/1.1`.
    pub fn new(tls: &ListenerTls) -> Result<Arc<Self>, rustls::Error> {
        let cert = Arc::new(CurrentCert(ArcSwap::new(tls.key.clone())));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(Acceptor {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            cert,
        }))
    }

    /// New handshakes present `tls`'s certificate from now on.
    pub fn reload(&self, tls: &ListenerTls) {
        self.cert.0.store(tls.key.clone());
    }

    /// The certificate chain presented now, leaf first.
    pub fn current_chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.cert.0.load().cert.clone()
    }
}

/// The TLS servers of both listeners, built once at start; a reload
/// re-reads their certificates.
#[derive(Clone, Default)]
pub struct Listeners {
    pub main: Option<Arc<Acceptor>>,
    pub admin: Option<Arc<Acceptor>>,
}

impl Listeners {
    /// The acceptors `config` asks for.
    pub fn new(config: &crate::config::Config) -> Result<Self, ConfigError> {
        let build = |key: &str, tls: Option<&ListenerTls>| {
            tls.map(|t| Acceptor::new(t).map_err(|e| ConfigError::invalid(key, e.to_string())))
                .transpose()
        };
        Ok(Listeners {
            main: build("server.tls", config.server.tls.as_ref())?,
            admin: build(
                "admin.tls",
                config.admin.as_ref().and_then(|a| a.tls.as_ref()),
            )?,
        })
    }

    /// Presents the certificates of a reloaded `config` (whose sections
    /// were checked to be present where they were).
    pub fn reload(&self, config: &crate::config::Config) {
        if let (Some(acceptor), Some(tls)) = (&self.main, &config.server.tls) {
            acceptor.reload(tls);
        }
        let admin = config.admin.as_ref().and_then(|a| a.tls.as_ref());
        if let (Some(acceptor), Some(tls)) = (&self.admin, admin) {
            acceptor.reload(tls);
        }
    }
}

#[cfg(test)]
mod tests;
