//! The client side of an `https://` upstream: whom to trust (the Mozilla
//! roots compiled in, as for `jwt.jwks_url`, or a route's `ca_file`), the
//! name to send as SNI and to verify, and the connection's handshake.

use crate::config::ConfigError;
use hyper_rustls::ConfigBuilderExt;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;

/// The pool speaks HTTP/1.1 to upstreams; ALPN says so.
const ALPN: &[u8] = b"http/1.1";

/// TLS to one upstream: the server name it must prove and the client
/// configuration (trust anchors, protocol versions, session cache).
#[derive(Clone)]
pub struct UpstreamTls {
    /// Sent as SNI and verified against the certificate (a DNS name or an
    /// IP address).
    pub server_name: ServerName<'static>,
    /// `None`: the compiled-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    config: Arc<ClientConfig>,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// For an upstream at `host` (an authority's host, IPv6 brackets
    /// included), trusting `ca_file`'s certificates or else the webpki
    /// roots. `key` names the route in errors.
    pub fn new(key: &str, host: &str, ca_file: Option<&Path>) -> Result<Self, ConfigError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(bare.to_owned()).map_err(|_| {
            ConfigError::invalid(
                format!("{key}.upstream"),
                format!("{host:?} is not a DNS name or IP address a certificate can name"),
            )
        })?;
        let unusable =
            |e: rustls::Error| ConfigError::invalid(format!("{key}.upstream"), e.to_string());
        let config = match ca_file {
            None => system().map_err(unusable)?,
            Some(path) => {
                let roots = super::files::roots(&format!("{key}.ca_file"), path)?;
                let builder = builder().map_err(unusable)?;
                finish(builder.with_root_certificates(roots).with_no_client_auth())
            }
        };
        Ok(UpstreamTls {
            server_name,
            ca_file: ca_file.map(Path::to_path_buf),
            config,
        })
    }

    /// The TLS handshake on a connected socket: SNI, certificate chain and
    /// name verified. Its error says why (`invalid peer certificate:
    /// UnknownIssuer`, `NotValidForName`, `Expired`, ...).
    pub async fn connect(
        &self,
        socket: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), socket)
            .await
    }
}

type Builder = rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>;

fn builder() -> Result<Builder, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
}

fn finish(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![ALPN.to_vec()];
    Arc::new(config)
}

/// One client configuration over the webpki roots, shared by every
/// upstream that has no `ca_file` (and so one session-resumption cache).
fn system() -> Result<Arc<ClientConfig>, rustls::Error> {
    static SYSTEM: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = SYSTEM.get() {
        return Ok(config.clone());
    }
    let config = finish(builder()?.with_webpki_roots().with_no_client_auth());
    Ok(SYSTEM.get_or_init(|| config).clone())
}
