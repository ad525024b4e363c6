//! Configuration: `gateway.toml` parsed into [`raw::RawConfig`], then checked
//! and converted into the typed [`Config`] that the rest of the gateway uses.
//!
//! The hot path only ever sees typed values (socket addresses, durations,
//! header names, parsed URIs); every string is parsed once, here.

mod duration;
mod idp;
pub mod raw;

pub use duration::{format_duration, parse_duration};
pub use idp::{EventsConfig, IdpConfig, LogoutRevokes, DEFAULT_EVENTS_ALGORITHMS};

use crate::tls::{ListenerTls, UpstreamTls};
use hyper::header::HeaderName;
use hyper::http::uri::Authority;
use hyper::Uri;
use raw::{
    RawAccessLog, RawAdmin, RawConfig, RawEndpoints, RawJwt, RawRevocation, RawRoute, RawServer,
    RawTls,
};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the gateway listens when `server.listen` is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Where the admin listener binds when `admin.listen` is not set: loopback,
/// because `/metrics` and the health endpoints need no token.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// A whole request, upstream included, gets this long before a 504.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The request line plus all headers. 16 KiB fits every real browser request
/// with large cookies, yet keeps a hostile client from making us buffer much.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Time given to in-flight requests after SIGTERM before connections are cut.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A client must send its whole header section within this time; stops
/// slowloris-style clients from pinning connections.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request in flight is closed after this
/// long (nginx's `keepalive_timeout` is 75 s; most clients give up sooner).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait between two reads of a request body: a body trickled slower
/// than this holds a client and an upstream connection for nothing (nginx's
/// `client_body_timeout` is 60 s).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; further clients wait in the kernel's accept
/// backlog. Each connection costs a few KiB, so 10k is about 100 MiB at most.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Idle keep-alive connections kept per upstream host: enough for a busy
/// route to reuse connections without piling up sockets.
pub const DEFAULT_UPSTREAM_IDLE_PER_HOST: usize = 256;
/// An idle upstream connection is closed after this long (below the 60 s
/// keep-alive most servers use, so we close first and never race them).
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Longest lifetime a token of the issuer may have; a logout-all watermark
/// lives this long, after which every token it covers has expired anyway.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Verified tokens whose claims are cached (0 turns the cache off).
pub const DEFAULT_TOKEN_CACHE_CAPACITY: u64 = 100_000;
/// Bytes the verified-token cache may hold, by its estimate of each entry
/// (token, parsed claims, bookkeeping). An ordinary 1 KB token weighs about
/// 3 KB: 64 MiB holds some 20,000 of them, where the entry count alone let
/// 100,000 large tokens take 1.7 GiB.
pub const DEFAULT_TOKEN_CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Longer tokens are verified every time, never cached (Envoy's
/// `jwt_max_token_size` default): a few huge tokens cannot push out many
/// ordinary ones.
pub const DEFAULT_TOKEN_CACHE_MAX_TOKEN_BYTES: u64 = 4096;
/// Revocation entries held in memory. At 10M a full cache costs on the order
/// of 1-2 GiB; past it, new revocations are refused (503), never evicted.
pub const DEFAULT_REVOCATION_CAPACITY: u64 = 10_000_000;
/// Key prefix in a shared Redis.
pub const DEFAULT_REDIS_PREFIX: &str = "revgate:";
/// How stale a `deny` replica may be (`store = "redis"`): past this without
/// confirming it has every change, it answers 503. One second is ten times
/// the propagation contract (100 ms) and costs two idle round trips a
/// second per replica.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(1);
/// Shortest `revocation.max_staleness`: below it the heartbeat would cost
/// more round trips than it saves and flap on a loaded machine.
pub const MIN_MAX_STALENESS: Duration = Duration::from_millis(100);
/// Longest `revocation.max_staleness`.
pub const MAX_MAX_STALENESS: Duration = Duration::from_secs(60);
/// Default paths of the endpoints the gateway serves itself.
pub const DEFAULT_LOGOUT_PATH: &str = "/auth/logout";
pub const DEFAULT_LOGOUT_ALL_PATH: &str = "/auth/logout-all";
pub const DEFAULT_REVOKE_PATH: &str = "/auth/revoke";
/// The path shown in errors for `endpoints.backchannel_logout` (not served
/// unless set: it needs the identity provider's settings).
pub const DEFAULT_BACKCHANNEL_LOGOUT_PATH: &str = "/auth/backchannel-logout";
/// The path shown in errors for `endpoints.security_events` (not served
/// unless set).
pub const DEFAULT_SECURITY_EVENTS_PATH: &str = "/auth/events";
/// Access-log lines held for the writer thread: at about 250 bytes a
/// record that is 2 MB, a few seconds of a slow disk at 10k requests/s
/// before lines are dropped (and counted) rather than a request waiting.
pub const DEFAULT_ACCESS_LOG_BUFFER: usize = 8192;

/// A configuration problem: the key it concerns and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    /// TOML syntax or type error, with its position.
    #[error("{origin}:{line}:{column}: {key}{message}")]
    Parse {
        origin: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    /// A value that parsed but is not acceptable.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// An invalid value at `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key the error names, when it names one (`server.listen`,
    /// `route[2].timeout`).
    pub fn key(&self) -> Option<String> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Parse { key, .. } => {
                Some(key.trim_end_matches(": ").trim().to_owned()).filter(|k| !k.is_empty())
            }
            ConfigError::Invalid { key, .. } => Some(key.clone()),
        }
    }
}

/// A secret value (HMAC key, admin token). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps bytes as a secret.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }
    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// `None` when there is no `[admin]` section: no admin listener.
    pub admin: Option<AdminConfig>,
    /// `None` when there is no `[jwt]` section: only `auth = "none"` routes.
    pub jwt: Option<JwtConfig>,
    pub revocation: RevocationConfig,
    pub endpoints: EndpointsConfig,
    pub routes: Vec<RouteConfig>,
    pub access_log: AccessLogConfig,
    /// Revocations pushed by the identity provider: the audience its
    /// logout tokens and SETs name, and `[events]`.
    pub idp: IdpConfig,
}

/// `[access_log]`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Off: no record is built at all.
    pub enabled: bool,
    /// `None`: standard output.
    pub path: Option<PathBuf>,
    pub format: AccessLogFormat,
    /// Lines queued for the writer thread; more are dropped and counted.
    pub buffer: usize,
}

/// One access-log line as text (nginx-like, `key=value`) or as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Text,
    Json,
}

/// `[server]`, typed.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Main listener address.
    pub listen: SocketAddr,
    /// Whole-request deadline (upstream response headers included) -> 504.
    pub request_timeout: Duration,
    /// Bytes of request line plus headers; more -> 431.
    pub max_header_bytes: usize,
    /// Drain time on shutdown.
    pub shutdown_grace: Duration,
    /// Deadline for receiving a request's header section, from accept and
    /// from the end of the previous response.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Longest wait between two reads of a request body.
    pub body_read_timeout: Duration,
    /// What to do with client header names containing `_`.
    pub underscores_in_headers: Underscores,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Tokio worker threads; 0 means one per core.
    pub workers: usize,
    /// Idle pooled connections kept per upstream host.
    pub upstream_idle_per_host: usize,
    /// How long an idle pooled upstream connection is kept.
    pub upstream_idle_timeout: Duration,
    /// `[server.tls]`: `None` serves cleartext HTTP/1.1 and h2c.
    pub tls: Option<ListenerTls>,
}

/// `server.underscores_in_headers`: client header names with `_`, which a
/// CGI/WSGI upstream cannot tell from their `-` twin (`X_Auth_Subject` and
/// `X-Auth-Subject` both become `HTTP_X_AUTH_SUBJECT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underscores {
    /// Removed before forwarding (nginx's `underscores_in_headers off`,
    /// Envoy's `headers_with_underscores_action = DROP_HEADER`).
    Drop,
    /// The request is refused with 400.
    Reject,
    /// Forwarded as sent.
    Allow,
}

/// `[admin]`, typed.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// `None`: `/admin/*` answers 404.
    pub token: Option<Secret>,
    /// `[admin.tls]`: `None` serves cleartext.
    pub tls: Option<ListenerTls>,
}

/// Algorithms a token may be signed with.
pub use jsonwebtoken::Algorithm;

/// Where a bearer token may be found, tried in configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Authorization,
    /// Any other header carrying the token (optionally prefixed `Bearer `).
    Header(HeaderName),
    /// A cookie of that name.
    Cookie(String),
    /// A query parameter of that name.
    Query(String),
}

/// `[jwt]`, typed. Keys are loaded by the `auth` module from these settings.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub algorithms: Vec<Algorithm>,
    pub hmac_secret: Option<Secret>,
    pub public_key_file: Option<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<Uri>,
    pub signing_key_file: Option<PathBuf>,
    pub issuer: Option<String>,
    /// Empty: `aud` is not checked.
    pub audience: Vec<String>,
    pub leeway: Duration,
    pub max_token_lifetime: Duration,
    pub sources: Vec<TokenSource>,
    /// Verified-token cache entries; 0 disables the cache.
    pub cache_capacity: u64,
    /// Estimated bytes the verified-token cache may hold.
    pub cache_max_bytes: u64,
    /// Tokens longer than this (bytes) are never cached.
    pub cache_max_token_bytes: usize,
    /// Some route forwards claims (`forward_claims`): verification then
    /// builds each token's claims map before caching it, so the cache
    /// weighs it. Derived from the routes, not a key of its own.
    pub forward_claims: bool,
}

/// Which revocation store backs the in-memory blocklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded, optionally durable on disk.
    Local,
    /// Shared by replicas through Redis.
    Redis,
}

/// What authenticated routes do while the shared store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreDown {
    /// 503 until the replica has caught up again.
    Deny,
    /// Serve from the local cache, which may miss recent revocations.
    Allow,
}

/// `[revocation]`, typed.
#[derive(Debug, Clone)]
pub struct RevocationConfig {
    pub store: StoreKind,
    /// Local store directory; `None` keeps revocations in memory only.
    pub path: Option<PathBuf>,
    pub capacity: u64,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub on_store_down: OnStoreDown,
    /// `store = "redis"`: the longest a replica goes without confirming it
    /// has every change before it counts as stale (not ready; `deny` answers
    /// 503). Default [`DEFAULT_MAX_STALENESS`].
    pub max_staleness: Duration,
}

/// `[endpoints]`, typed: paths on the main listener.
#[derive(Debug, Clone)]
pub struct EndpointsConfig {
    pub logout: String,
    pub logout_all: String,
    pub revoke: String,
    /// What `logout` revokes for a token with a `sid` (default: the token).
    pub logout_revokes: LogoutRevokes,
    /// OpenID Connect Back-Channel Logout; `None`: not served.
    pub backchannel_logout: Option<String>,
    /// RFC 8935 push delivery of Security Event Tokens; `None`: not served.
    pub security_events: Option<String>,
}

/// Whether a route needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Optional,
    None,
}

/// The upstream of a route: `http://host:port[/base]` or `https://...`.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub authority: Authority,
    /// `Some` for `https://`: the server name to verify and whom to trust
    /// (the route's `ca_file`, else the webpki roots).
    pub tls: Option<UpstreamTls>,
    /// Path prepended to the forwarded path, without trailing `/` ("" for none).
    pub base_path: String,
}

/// One `[[route]]`, typed.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub prefix: String,
    pub upstream: Upstream,
    pub auth: AuthMode,
    pub scopes: Vec<String>,
    pub strip_prefix: bool,
    pub pass_authorization: bool,
    /// (claim name, upstream header), in key order.
    pub forward_claims: Vec<(String, HeaderName)>,
    /// Deadline for the upstream's response headers (at most `request_timeout`).
    pub timeout: Duration,
}

/// Which secrets loading resolves: each command needs only what it uses, so
/// `revgate mint` runs without the admin token and `revgate revoke` without
/// the HMAC secret (their `*_env` variables may be unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Every secret: running the gateway, `check-config`, `demo`.
    All,
    /// The token-signing secret only (`revgate mint`): `admin.token*` is
    /// not read.
    Signing,
    /// The admin token only (`revgate revoke`): `jwt.hmac_secret*` is not
    /// read.
    Admin,
}

impl Secrets {
    fn admin(self) -> bool {
        self != Secrets::Signing
    }

    fn signing(self) -> bool {
        self != Secrets::Admin
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::All)
    }

    /// [`Config::load`], resolving only the given secrets.
    pub fn load_with(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Config::from_toml_with(&text, &path.display().to_string(), secrets)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with(text, origin, Secrets::All)
    }

    /// [`Config::from_toml`], resolving only the given secrets.
    pub fn from_toml_with(
        text: &str,
        origin: &str,
        secrets: Secrets,
    ) -> Result<Config, ConfigError> {
        let raw = parse_raw(text, origin)?;
        Config::from_raw(raw, secrets)
    }

    /// Every header named in any route's `forward_claims`: deleted from every
    /// client request, on every route.
    pub fn claim_headers(&self) -> Vec<HeaderName> {
        let mut names: Vec<HeaderName> = Vec::new();
        for route in &self.routes {
            for (_, header) in &route.forward_claims {
                if !names.contains(header) {
                    names.push(header.clone());
                }
            }
        }
        names
    }
}

fn parse_raw(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    let position = |span: Option<std::ops::Range<usize>>| {
        let offset = span.map(|s| s.start).unwrap_or(0).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    };
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let (line, column) = position(e.span());
        ConfigError::Parse {
            origin: origin.to_string(),
            line,
            column,
            key: String::new(),
            message: e.message().trim().to_string(),
        }
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = position(inner.span());
        ConfigError::Parse {
            origin: origin.to_string(),
            line,
            column,
            key: if path == "." || path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            },
            message: inner.message().trim().to_string(),
        }
    })
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        Config::from_raw(raw, Secrets::All)
    }
}

impl Config {
    fn from_raw(mut raw: RawConfig, secrets: Secrets) -> Result<Config, ConfigError> {
        let server = server(raw.server)?;
        let admin = raw.admin.map(|a| admin(a, secrets)).transpose()?;
        let backchannel_audience = idp::backchannel_audience(
            raw.jwt.as_mut().and_then(|j| j.backchannel_audience.take()),
        )?;
        let mut jwt = raw.jwt.map(|j| jwt(j, secrets)).transpose()?;
        let events = raw
            .events
            .map(|e| idp::events(e, jwt.as_ref(), secrets))
            .transpose()?;
        let revocation = revocation(raw.revocation)?;
        let endpoints = endpoints(raw.endpoints)?;
        let access_log = access_log(raw.access_log)?;
        let routes = raw
            .routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| route(i, r, &server))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(jwt) = &mut jwt {
            jwt.forward_claims = routes.iter().any(|r| !r.forward_claims.is_empty());
        }
        let config = Config {
            server,
            admin,
            jwt,
            revocation,
            endpoints,
            routes,
            access_log,
            idp: IdpConfig {
                backchannel_audience,
                events,
            },
        };
        validate(&config)?;
        idp::validate(&config)?;
        Ok(config)
    }
}

/// Cross-field checks, each with its own test.
fn validate(config: &Config) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        if !seen.insert(route.prefix.as_str()) {
            return Err(ConfigError::invalid(
                format!("route[{i}].prefix"),
                format!(
                    "{:?} is used by an earlier route; each prefix may appear once",
                    route.prefix
                ),
            ));
        }
        if route.auth != AuthMode::None && config.jwt.is_none() {
            return Err(ConfigError::invalid(
                format!("route[{i}].auth"),
                "needs a [jwt] section to verify tokens; add one or set auth = \"none\"",
            ));
        }
        if route.auth != AuthMode::Required && !route.scopes.is_empty() {
            return Err(ConfigError::invalid(
                format!("route[{i}].scopes"),
                "scopes need auth = \"required\" (a request without a token cannot carry them)",
            ));
        }
    }
    let eps = &config.endpoints;
    let mut paths = vec![
        ("endpoints.logout", &eps.logout),
        ("endpoints.logout_all", &eps.logout_all),
        ("endpoints.revoke", &eps.revoke),
    ];
    if let Some(p) = &eps.backchannel_logout {
        paths.push(("endpoints.backchannel_logout", p));
    }
    if let Some(p) = &eps.security_events {
        paths.push(("endpoints.security_events", p));
    }
    for (i, (key, path)) in paths.iter().enumerate() {
        if paths[..i].iter().any(|(_, other)| other == path) {
            return Err(ConfigError::invalid(
                *key,
                format!("{path:?} is already used by another endpoint"),
            ));
        }
    }
    if config.revocation.store == StoreKind::Redis && config.revocation.redis_url.is_none() {
        return Err(ConfigError::invalid(
            "revocation.redis_url",
            "is required when store = \"redis\" (e.g. \"redis://127.0.0.1:6379/0\")",
        ));
    }
    if let Some(jwt) = &config.jwt {
        let underscored = jwt.sources.iter().find_map(|s| match s {
            TokenSource::Header(name) if name.as_str().contains('_') => Some(name),
            _ => None,
        });
        if let Some(name) = underscored {
            if config.server.underscores_in_headers != Underscores::Allow {
                return Err(ConfigError::invalid(
                    "jwt.sources",
                    format!(
                        "\"header:{name}\" contains '_', and such headers are dropped or refused (server.underscores_in_headers); use '-'"
                    ),
                ));
            }
        }
        if jwt.leeway > jwt.max_token_lifetime {
            return Err(ConfigError::invalid(
                "jwt.leeway",
                "must not be longer than jwt.max_token_lifetime",
            ));
        }
    }
    Ok(())
}

fn duration(key: &str, value: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => parse_duration(&v).map_err(|m| ConfigError::invalid(key, m)),
    }
}

fn socket_addr(key: &str, value: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
    let v = value.unwrap_or_else(|| default.to_string());
    v.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{v:?} is not an address; write IP:PORT, e.g. \"127.0.0.1:8080\""),
        )
    })
}

fn bounded(
    key: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(ConfigError::invalid(
            key,
            format!("{v} is out of range; use a value from {min} to {max}"),
        ));
    }
    Ok(v)
}

fn server(raw: RawServer) -> Result<ServerConfig, ConfigError> {
    let request_timeout = duration(
        "server.request_timeout",
        raw.request_timeout,
        DEFAULT_REQUEST_TIMEOUT,
    )?;
    if request_timeout.is_zero() {
        return Err(ConfigError::invalid(
            "server.request_timeout",
            "must be more than 0",
        ));
    }
    let header_read_timeout = duration(
        "server.header_read_timeout",
        raw.header_read_timeout,
        DEFAULT_HEADER_READ_TIMEOUT,
    )?;
    if header_read_timeout.is_zero() {
        return Err(ConfigError::invalid(
            "server.header_read_timeout",
            "must be more than 0",
        ));
    }
    let positive = |key: &str, value: Option<String>, default: Duration| {
        let d = duration(key, value, default)?;
        if d.is_zero() {
            return Err(ConfigError::invalid(key, "must be more than 0"));
        }
        Ok(d)
    };
    let idle_timeout = positive(
        "server.idle_timeout",
        raw.idle_timeout,
        DEFAULT_IDLE_TIMEOUT,
    )?;
    let body_read_timeout = positive(
        "server.body_read_timeout",
        raw.body_read_timeout,
        DEFAULT_BODY_READ_TIMEOUT,
    )?;
    let underscores_in_headers = match raw.underscores_in_headers.as_deref().unwrap_or("drop") {
        "drop" => Underscores::Drop,
        "reject" => Underscores::Reject,
        "allow" => Underscores::Allow,
        other => {
            return Err(ConfigError::invalid(
                "server.underscores_in_headers",
                format!("{other:?} is not a mode; use \"drop\", \"reject\" or \"allow\""),
            ))
        }
    };
    Ok(ServerConfig {
        listen: socket_addr("server.listen", raw.listen, DEFAULT_LISTEN)?,
        idle_timeout,
        body_read_timeout,
        underscores_in_headers,
        request_timeout,
        max_header_bytes: bounded(
            "server.max_header_bytes",
            raw.max_header_bytes,
            DEFAULT_MAX_HEADER_BYTES as u64,
            1024,
            1 << 20,
        )? as usize,
        shutdown_grace: duration(
            "server.shutdown_grace",
            raw.shutdown_grace,
            DEFAULT_SHUTDOWN_GRACE,
        )?,
        header_read_timeout,
        max_connections: bounded(
            "server.max_connections",
            raw.max_connections,
            DEFAULT_MAX_CONNECTIONS as u64,
            1,
            1_000_000,
        )? as usize,
        workers: bounded("server.workers", raw.workers, 0, 0, 1024)? as usize,
        upstream_idle_per_host: bounded(
            "server.upstream_idle_per_host",
            raw.upstream_idle_per_host,
            DEFAULT_UPSTREAM_IDLE_PER_HOST as u64,
            0,
            100_000,
        )? as usize,
        upstream_idle_timeout: duration(
            "server.upstream_idle_timeout",
            raw.upstream_idle_timeout,
            DEFAULT_UPSTREAM_IDLE_TIMEOUT,
        )?,
        tls: raw.tls.map(|t| listener_tls("server", t)).transpose()?,
    })
}

/// `[server.tls]` or `[admin.tls]`: both files are required; they are read
/// and checked now, so a bad one is a config error at start and on reload.
fn listener_tls(section: &str, raw: RawTls) -> Result<ListenerTls, ConfigError> {
    let required = |name: &str, value: Option<String>| {
        value.map(PathBuf::from).ok_or_else(|| {
            ConfigError::invalid(
                format!("{section}.tls.{name}"),
                "is required in a tls section (a PEM file)",
            )
        })
    };
    let cert_file = required("cert_file", raw.cert_file)?;
    let key_file = required("key_file", raw.key_file)?;
    ListenerTls::load(section, cert_file, key_file)
}

/// Resolves one secret given inline, by file or by environment variable.
/// At most one of the three may be set; `Ok(None)` when none is.
pub(crate) fn secret(
    section: &str,
    name: &str,
    inline: Option<String>,
    file: Option<String>,
    env: Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    let given = [inline.is_some(), file.is_some(), env.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given > 1 {
        return Err(ConfigError::invalid(
            format!("{section}.{name}"),
            format!("set only one of {name}, {name}_file and {name}_env"),
        ));
    }
    let secret = if let Some(v) = inline {
        v.into_bytes()
    } else if let Some(path) = file {
        let key = format!("{section}.{name}_file");
        let bytes = std::fs::read(&path)
            .map_err(|e| ConfigError::invalid(&key, format!("cannot read {path:?}: {e}")))?;
        // A trailing newline from `echo secret > file` is not part of the secret.
        let trimmed = bytes.trim_ascii_end();
        trimmed.to_vec()
    } else if let Some(var) = env {
        let key = format!("{section}.{name}_env");
        match std::env::var_os(&var) {
            Some(v) => v.into_encoded_bytes(),
            None => {
                return Err(ConfigError::invalid(
                    key,
                    format!("environment variable {var} is not set"),
                ))
            }
        }
    } else {
        return Ok(None);
    };
    if secret.is_empty() {
        return Err(ConfigError::invalid(
            format!("{section}.{name}"),
            "is empty",
        ));
    }
    Ok(Some(Secret(secret)))
}

fn admin(raw: RawAdmin, secrets: Secrets) -> Result<AdminConfig, ConfigError> {
    let token = if secrets.admin() {
        secret("admin", "token", raw.token, raw.token_file, raw.token_env)?
    } else {
        None
    };
    if let Some(t) = &token {
        if t.expose().len() < 16 {
            return Err(ConfigError::invalid(
                "admin.token",
                "is shorter than 16 bytes; use a long random value (e.g. `openssl rand -hex 32`)",
            ));
        }
    }
    Ok(AdminConfig {
        listen: socket_addr("admin.listen", raw.listen, DEFAULT_ADMIN_LISTEN)?,
        token,
        tls: raw.tls.map(|t| listener_tls("admin", t)).transpose()?,
    })
}

/// Parses an algorithm name as written in a JOSE header.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Whether an algorithm is an HMAC (shared secret) one.
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn jwt(raw: RawJwt, secrets: Secrets) -> Result<JwtConfig, ConfigError> {
    let names = raw.algorithms.unwrap_or_else(|| vec!["HS256".to_string()]);
    if names.is_empty() {
        return Err(ConfigError::invalid(
            "jwt.algorithms",
            "is empty; list at least one, e.g. [\"HS256\"]",
        ));
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for name in &names {
        match parse_algorithm(name) {
            Some(a) if !algorithms.contains(&a) => algorithms.push(a),
            Some(_) => {}
            None if name.eq_ignore_ascii_case("none") => {
                return Err(ConfigError::invalid(
                    "jwt.algorithms",
                    "\"none\" is never accepted: unsigned tokens would bypass verification",
                ))
            }
            None => {
                return Err(ConfigError::invalid(
                    "jwt.algorithms",
                    format!(
                        "unknown algorithm {name:?}; use HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA"
                    ),
                ))
            }
        }
    }
    let hmac_secret = if secrets.signing() {
        secret(
            "jwt",
            "hmac_secret",
            raw.hmac_secret,
            raw.hmac_secret_file,
            raw.hmac_secret_env,
        )?
    } else {
        None
    };
    let wants_hmac = algorithms.iter().any(|a| is_hmac(*a));
    let wants_asym = algorithms.iter().any(|a| !is_hmac(*a));
    if wants_hmac && hmac_secret.is_none() && secrets.signing() {
        return Err(ConfigError::invalid(
            "jwt.hmac_secret",
            "an HMAC algorithm is allowed but no secret is set (hmac_secret, hmac_secret_file or hmac_secret_env)",
        ));
    }
    if let Some(s) = &hmac_secret {
        if !wants_hmac {
            return Err(ConfigError::invalid(
                "jwt.hmac_secret",
                "is set but jwt.algorithms lists no HMAC algorithm",
            ));
        }
        if s.expose().len() < 32 {
            return Err(ConfigError::invalid(
                "jwt.hmac_secret",
                "is shorter than 32 bytes; use a long random value (e.g. `openssl rand -hex 32`)",
            ));
        }
    }
    let jwks_url = raw
        .jwks_url
        .map(|u| {
            let uri: Uri = u
                .parse()
                .map_err(|_| ConfigError::invalid("jwt.jwks_url", format!("{u:?} is not a URL")))?;
            match uri.scheme_str() {
                Some("http") | Some("https") if uri.authority().is_some() => Ok(uri),
                _ => Err(ConfigError::invalid(
                    "jwt.jwks_url",
                    format!("{u:?} must be an absolute http:// or https:// URL"),
                )),
            }
        })
        .transpose()?;
    let public_key_file = raw.public_key_file.map(PathBuf::from);
    let jwks_file = raw.jwks_file.map(PathBuf::from);
    let key_sources = [
        public_key_file.is_some(),
        jwks_file.is_some(),
        jwks_url.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if key_sources > 1 {
        return Err(ConfigError::invalid(
            "jwt.public_key_file",
            "set only one of public_key_file, jwks_file and jwks_url",
        ));
    }
    if wants_asym && key_sources == 0 {
        return Err(ConfigError::invalid(
            "jwt.algorithms",
            "an asymmetric algorithm is allowed but no key is set (public_key_file, jwks_file or jwks_url)",
        ));
    }
    if !wants_asym && key_sources > 0 {
        return Err(ConfigError::invalid(
            "jwt.algorithms",
            "a public key is configured but no asymmetric algorithm is allowed",
        ));
    }
    let issuer = raw.issuer.filter(|s| !s.is_empty());
    let audience = raw.audience.unwrap_or_default();
    if audience.iter().any(String::is_empty) {
        return Err(ConfigError::invalid(
            "jwt.audience",
            "contains an empty string",
        ));
    }
    let leeway = duration("jwt.leeway", raw.leeway, DEFAULT_LEEWAY)?;
    let max_token_lifetime = duration(
        "jwt.max_token_lifetime",
        raw.max_token_lifetime,
        DEFAULT_MAX_TOKEN_LIFETIME,
    )?;
    if max_token_lifetime.is_zero() {
        return Err(ConfigError::invalid(
            "jwt.max_token_lifetime",
            "must be more than 0",
        ));
    }
    let source_names = raw
        .sources
        .unwrap_or_else(|| vec!["header:authorization".to_string()]);
    if source_names.is_empty() {
        return Err(ConfigError::invalid(
            "jwt.sources",
            "is empty; e.g. [\"header:authorization\"]",
        ));
    }
    if source_names.len() > crate::auth::MAX_SOURCES {
        return Err(ConfigError::invalid(
            "jwt.sources",
            format!(
                "lists {} sources; at most {} are allowed",
                source_names.len(),
                crate::auth::MAX_SOURCES
            ),
        ));
    }
    let sources = source_names
        .iter()
        .map(|s| token_source(s))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_max_bytes = bounded(
        "jwt.cache_max_bytes",
        raw.cache_max_bytes,
        DEFAULT_TOKEN_CACHE_MAX_BYTES,
        64 * 1024,
        1 << 40,
    )?;
    let cache_max_token_bytes = bounded(
        "jwt.cache_max_token_bytes",
        raw.cache_max_token_bytes,
        DEFAULT_TOKEN_CACHE_MAX_TOKEN_BYTES,
        256,
        1 << 20,
    )?;
    if cache_max_token_bytes > cache_max_bytes / 16 {
        return Err(ConfigError::invalid(
            "jwt.cache_max_token_bytes",
            format!(
                "{cache_max_token_bytes} is over a 16th of jwt.cache_max_bytes \
                 ({cache_max_bytes}); raise cache_max_bytes or lower this"
            ),
        ));
    }
    Ok(JwtConfig {
        algorithms,
        hmac_secret,
        public_key_file,
        jwks_file,
        jwks_url,
        signing_key_file: raw.signing_key_file.map(PathBuf::from),
        issuer,
        audience,
        leeway,
        max_token_lifetime,
        sources,
        cache_capacity: raw.cache_capacity.unwrap_or(DEFAULT_TOKEN_CACHE_CAPACITY),
        cache_max_bytes,
        cache_max_token_bytes: usize::try_from(cache_max_token_bytes).unwrap_or(usize::MAX),
        forward_claims: false,
    })
}

fn token_source(spec: &str) -> Result<TokenSource, ConfigError> {
    let bad = || {
        ConfigError::invalid(
            "jwt.sources",
            format!("{spec:?} is not a token source; use \"header:NAME\", \"cookie:NAME\" or \"query:NAME\""),
        )
    };
    let (kind, name) = spec.split_once(':').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    match kind {
        "header" => {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            if header == hyper::header::AUTHORIZATION {
                Ok(TokenSource::Authorization)
            } else {
                Ok(TokenSource::Header(header))
            }
        }
        "cookie" => Ok(TokenSource::Cookie(name.to_string())),
        "query" => Ok(TokenSource::Query(name.to_string())),
        _ => Err(bad()),
    }
}

fn revocation(raw: RawRevocation) -> Result<RevocationConfig, ConfigError> {
    let store = match raw.store.as_deref().unwrap_or("local") {
        "local" => StoreKind::Local,
        "redis" => StoreKind::Redis,
        other => {
            return Err(ConfigError::invalid(
                "revocation.store",
                format!("{other:?} is not a store; use \"local\" or \"redis\""),
            ))
        }
    };
    let on_store_down = match raw.on_store_down.as_deref().unwrap_or("deny") {
        "deny" => OnStoreDown::Deny,
        "allow" => OnStoreDown::Allow,
        other => {
            return Err(ConfigError::invalid(
                "revocation.on_store_down",
                format!("{other:?} is not a mode; use \"deny\" or \"allow\""),
            ))
        }
    };
    if let Some(url) = &raw.redis_url {
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://")
            || url.starts_with("unix://"))
        {
            return Err(ConfigError::invalid(
                "revocation.redis_url",
                format!(
                    "{:?} must start with redis:// or rediss://",
                    redact_url(url)
                ),
            ));
        }
    }
    let redis_prefix = raw
        .redis_prefix
        .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_string());
    let max_staleness = duration(
        "revocation.max_staleness",
        raw.max_staleness,
        DEFAULT_MAX_STALENESS,
    )?;
    if !(MIN_MAX_STALENESS..=MAX_MAX_STALENESS).contains(&max_staleness) {
        return Err(ConfigError::invalid(
            "revocation.max_staleness",
            format!("{max_staleness:?} is out of range; use \"100ms\" to \"60s\" (default \"1s\")"),
        ));
    }
    Ok(RevocationConfig {
        store,
        path: raw.path.filter(|p| !p.is_empty()).map(PathBuf::from),
        capacity: bounded(
            "revocation.capacity",
            raw.capacity,
            DEFAULT_REVOCATION_CAPACITY,
            1,
            1 << 32,
        )?,
        redis_url: raw.redis_url,
        redis_prefix,
        on_store_down,
        max_staleness,
    })
}

/// Hides the password of a `redis://user:pass@host` URL for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn endpoint_path(key: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let v = value.unwrap_or_else(|| default.to_string());
    if !v.starts_with('/') || v.contains(['?', '#', ' ']) {
        return Err(ConfigError::invalid(
            key,
            format!("{v:?} must be a path starting with '/', e.g. {default:?}"),
        ));
    }
    normal_form(key, &v)?;
    Ok(v)
}

/// Requests are matched by their normalised path, so a route prefix or an
/// endpoint path in any other form could never match: refused, naming the
/// form to write.
fn normal_form(key: &str, path: &str) -> Result<(), ConfigError> {
    match crate::path::normalize(path) {
        Ok(std::borrow::Cow::Borrowed(_)) => Ok(()),
        Ok(std::borrow::Cow::Owned(normal)) => Err(ConfigError::invalid(
            key,
            format!("{path:?} is not in normal form; write {normal:?}"),
        )),
        Err(why) => Err(ConfigError::invalid(key, format!("{path:?}: {why}"))),
    }
}

fn endpoints(raw: RawEndpoints) -> Result<EndpointsConfig, ConfigError> {
    Ok(EndpointsConfig {
        logout: endpoint_path("endpoints.logout", raw.logout, DEFAULT_LOGOUT_PATH)?,
        logout_all: endpoint_path(
            "endpoints.logout_all",
            raw.logout_all,
            DEFAULT_LOGOUT_ALL_PATH,
        )?,
        revoke: endpoint_path("endpoints.revoke", raw.revoke, DEFAULT_REVOKE_PATH)?,
        logout_revokes: idp::logout_revokes(raw.logout_revokes.as_deref())?,
        backchannel_logout: raw
            .backchannel_logout
            .map(|p| {
                endpoint_path(
                    "endpoints.backchannel_logout",
                    Some(p),
                    DEFAULT_BACKCHANNEL_LOGOUT_PATH,
                )
            })
            .transpose()?,
        security_events: raw
            .security_events
            .map(|p| {
                endpoint_path(
                    "endpoints.security_events",
                    Some(p),
                    DEFAULT_SECURITY_EVENTS_PATH,
                )
            })
            .transpose()?,
    })
}

fn access_log(raw: RawAccessLog) -> Result<AccessLogConfig, ConfigError> {
    let format = match raw.format.as_deref() {
        None | Some("text") => AccessLogFormat::Text,
        Some("json") => AccessLogFormat::Json,
        Some(other) => {
            return Err(ConfigError::invalid(
                "access_log.format",
                format!("{other:?} is not a format; use \"text\" or \"json\""),
            ))
        }
    };
    let path = match raw.path {
        Some(p) if p.is_empty() => {
            return Err(ConfigError::invalid(
                "access_log.path",
                "is empty; omit it to log to standard output",
            ))
        }
        p => p.map(PathBuf::from),
    };
    Ok(AccessLogConfig {
        enabled: raw.enabled.unwrap_or(true),
        path,
        format,
        buffer: bounded(
            "access_log.buffer",
            raw.buffer,
            DEFAULT_ACCESS_LOG_BUFFER as u64,
            1,
            1 << 20,
        )? as usize,
    })
}

/// Headers that describe one connection and never travel past a proxy
/// (RFC 9110 §7.6.1); a claim header may not use one of these names.
const RESERVED_CLAIM_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "content-length",
    "content-type",
    "cookie",
];

fn route(i: usize, raw: RawRoute, server: &ServerConfig) -> Result<RouteConfig, ConfigError> {
    let key = |field: &str| format!("route[{i}].{field}");
    let prefix = raw
        .prefix
        .ok_or_else(|| ConfigError::invalid(key("prefix"), "is required, e.g. \"/api/\""))?;
    if !prefix.starts_with('/') || prefix.contains(['?', '#']) {
        return Err(ConfigError::invalid(
            key("prefix"),
            format!("{prefix:?} must be a path starting with '/'"),
        ));
    }
    normal_form(&key("prefix"), &prefix)?;
    let upstream_str = raw.upstream.ok_or_else(|| {
        ConfigError::invalid(
            key("upstream"),
            "is required, e.g. \"http://127.0.0.1:9000\"",
        )
    })?;
    let ca_file = raw.ca_file.map(PathBuf::from);
    let upstream = upstream(&format!("route[{i}]"), &upstream_str, ca_file.as_deref())?;
    let auth = match raw.auth.as_deref().unwrap_or("required") {
        "required" => AuthMode::Required,
        "optional" => AuthMode::Optional,
        "none" => AuthMode::None,
        other => {
            return Err(ConfigError::invalid(
                key("auth"),
                format!("{other:?} is not a mode; use \"required\", \"optional\" or \"none\""),
            ))
        }
    };
    let scopes = raw.scopes.unwrap_or_default();
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.is_empty() || s.contains([' ', '"', '\\']))
    {
        return Err(ConfigError::invalid(
            key("scopes"),
            format!("{bad:?} is not a scope token (no spaces, quotes or backslashes)"),
        ));
    }
    let mut forward_claims = Vec::new();
    for (claim, header) in raw.forward_claims.unwrap_or_default() {
        let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
            ConfigError::invalid(
                key("forward_claims"),
                format!("{header:?} (for claim {claim:?}) is not a valid header name"),
            )
        })?;
        if name.as_str().contains('_') {
            return Err(ConfigError::invalid(
                key("forward_claims"),
                format!(
                    "{header:?} (for claim {claim:?}) contains '_': CGI/WSGI upstreams read it like its '-' twin, and client headers with '_' are dropped; use '-'"
                ),
            ));
        }
        if RESERVED_CLAIM_HEADERS.contains(&name.as_str()) {
            return Err(ConfigError::invalid(
                key("forward_claims"),
                format!(
                    "{header:?} cannot carry a claim; choose a header such as \"x-auth-{claim}\""
                ),
            ));
        }
        forward_claims.push((claim, name));
    }
    let timeout = duration(&key("timeout"), raw.timeout, server.request_timeout)?;
    if timeout.is_zero() {
        return Err(ConfigError::invalid(key("timeout"), "must be more than 0"));
    }
    Ok(RouteConfig {
        prefix,
        upstream,
        auth,
        scopes,
        strip_prefix: raw.strip_prefix.unwrap_or(false),
        pass_authorization: raw.pass_authorization.unwrap_or(true),
        forward_claims,
        timeout: timeout.min(server.request_timeout),
    })
}

fn upstream(route: &str, value: &str, ca_file: Option<&Path>) -> Result<Upstream, ConfigError> {
    let key = format!("{route}.upstream");
    let key = key.as_str();
    let uri: Uri = value.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{value:?} is not a URL; write e.g. \"http://127.0.0.1:9000\""),
        )
    })?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(ConfigError::invalid(
                key,
                format!("{value:?} must start with http:// or https://"),
            ))
        }
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| ConfigError::invalid(key, format!("{value:?} has no host")))?;
    if authority.as_str().contains('@') {
        return Err(ConfigError::invalid(key, "must not contain user info"));
    }
    if uri.query().is_some() {
        return Err(ConfigError::invalid(
            key,
            format!("{value:?} must not have a query"),
        ));
    }
    let tls = match (https, ca_file) {
        (true, ca_file) => Some(UpstreamTls::new(route, authority.host(), ca_file)?),
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{route}.ca_file"),
                format!("is only for an https:// upstream, and {value:?} is http://"),
            ))
        }
    };
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(Upstream {
        authority,
        tls,
        base_path,
    })
}

#[cfg(test)]
mod tests;
