//! The raw configuration: a serde mirror of `gateway.toml`.
//!
//! Every struct denies unknown keys, so a typo is an error rather than a
//! silently ignored setting. Nothing here is validated; see [`super::Config`].

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub admin: Option<RawAdmin>,
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub revocation: RawRevocation,
    #[serde(default)]
    pub endpoints: RawEndpoints,
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub access_log: RawAccessLog,
    pub events: Option<RawEvents>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub request_timeout: Option<String>,
    pub max_header_bytes: Option<u64>,
    pub shutdown_grace: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub underscores_in_headers: Option<String>,
    pub max_connections: Option<u64>,
    pub workers: Option<u64>,
    pub upstream_idle_per_host: Option<u64>,
    pub upstream_idle_timeout: Option<String>,
    pub tls: Option<RawTls>,
}

/// `[server.tls]`, `[admin.tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub token_env: Option<String>,
    pub tls: Option<RawTls>,
}

/// `[jwt]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub algorithms: Option<Vec<String>>,
    pub hmac_secret: Option<String>,
    pub hmac_secret_file: Option<String>,
    pub hmac_secret_env: Option<String>,
    pub public_key_file: Option<String>,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub signing_key_file: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    pub leeway: Option<String>,
    pub max_token_lifetime: Option<String>,
    pub sources: Option<Vec<String>>,
    pub cache_capacity: Option<u64>,
    pub backchannel_audience: Option<String>,
    pub cache_max_bytes: Option<u64>,
    pub cache_max_token_bytes: Option<u64>,
}

/// `[revocation]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    pub store: Option<String>,
    pub path: Option<String>,
    pub capacity: Option<u64>,
    pub redis_url: Option<String>,
    pub redis_prefix: Option<String>,
    pub on_store_down: Option<String>,
    pub max_staleness: Option<String>,
}

/// `[endpoints]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoints {
    pub logout: Option<String>,
    pub logout_all: Option<String>,
    pub revoke: Option<String>,
    pub logout_revokes: Option<String>,
    pub backchannel_logout: Option<String>,
    pub security_events: Option<String>,
}

/// `[events]`: Security Event Tokens pushed by the identity provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    pub issuer: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub public_key_file: Option<String>,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub push_token: Option<String>,
    pub push_token_file: Option<String>,
    pub push_token_env: Option<String>,
}

/// One `[[route]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub format: Option<String>,
    pub buffer: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub prefix: Option<String>,
    pub upstream: Option<String>,
    pub auth: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub strip_prefix: Option<bool>,
    pub pass_authorization: Option<bool>,
    pub forward_claims: Option<BTreeMap<String, String>>,
    pub timeout: Option<String>,
    pub ca_file: Option<String>,
}
