//! The scenario table: one row of the bench's output each.
//!
//! A scenario is a gateway config (or none: drive the upstream directly),
//! a request (path and headers, e.g. a bearer token), the status a correct
//! answer has, and an optional setup hook run against the started gateway
//! before the load (e.g. pre-load revoked entries). To add a row, add an
//! entry to [`all`].

use super::admin_client;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION};
use hyper::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

/// HMAC secret of the HS256 rows (bench only).
pub const HMAC_SECRET: &str = "revgate-bench-hmac-secret-not-for-production-0123456789";
/// Admin token of the in-process gateway (bench only).
pub const ADMIN_TOKEN: &str = "revgate-bench-admin-token-not-for-production";
/// Lifetime of the bench's tokens: longer than any run.
const TOKEN_TTL_SECS: u64 = 3600;
/// Revocations pre-loaded by the "1M revoked" row.
const MANY_REVOKED: u64 = 1_000_000;
/// The `jti` of the token that the "revoked token" row revokes and presents.
const REVOKED_JTI: &str = "bench-revoked-token";

/// What a scenario's builders may use.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    /// The in-process upstream.
    pub upstream: SocketAddr,
    /// UNIX time at start, for token claims.
    pub now: u64,
    /// Port of the bench's private redis-server, when one could be started.
    pub redis_port: Option<u16>,
}

impl Env {
    /// An environment for an upstream at `upstream`, timed now.
    pub fn new(upstream: SocketAddr) -> Env {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Env {
            upstream,
            now,
            redis_port: None,
        }
    }
}

/// The request a scenario sends, over and over.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// Origin-form path.
    pub path: String,
    /// Headers besides `Host`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// What a setup hook may reach: the running gateway's admin listener.
#[derive(Clone)]
pub struct SetupCtx {
    pub env: Env,
    pub admin: SocketAddr,
    /// The gateway's blocklist, for bulk pre-loading without HTTP.
    pub revocations: std::sync::Arc<revgate::revocation::Revocations>,
}

/// A future returned by a setup hook.
pub type SetupFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One row of the table.
pub struct Scenario {
    /// Row name, matched by the filter.
    pub name: &'static str,
    /// The gateway's config (TOML), or `None` to drive the upstream directly.
    pub gateway: Option<fn(&Env) -> String>,
    /// The request sent, built once per run.
    pub request: fn(&Env) -> Result<RequestSpec, String>,
    /// The status of a correct answer; anything else counts as an error.
    pub expect: StatusCode,
    /// Run against the started gateway before the warm-up.
    pub setup: Option<fn(SetupCtx) -> SetupFuture>,
    /// `Some(why)`: the library cannot serve this row yet; it is skipped with
    /// this note unless `--include-pending` is given.
    pub pending: Option<&'static str>,
}

/// Every scenario, in table order.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "upstream-direct",
            gateway: None,
            request: plain,
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "gateway auth=none",
            gateway: Some(|env| gateway_toml(env, "none", "")),
            request: plain,
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "HS256 0 revoked",
            gateway: Some(|env| gateway_toml(env, "required", &hs256_jwt())),
            request: |env| bearer(mint_hs256(env, "bench-hs256")?),
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "HS256 access log text",
            gateway: Some(|env| {
                with_access_log(gateway_toml(env, "required", &hs256_jwt()), "text")
            }),
            request: |env| bearer(mint_hs256(env, "bench-hs256")?),
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "HS256 access log json",
            gateway: Some(|env| {
                with_access_log(gateway_toml(env, "required", &hs256_jwt()), "json")
            }),
            request: |env| bearer(mint_hs256(env, "bench-hs256")?),
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "HS256 1M revoked",
            gateway: Some(|env| gateway_toml(env, "required", &hs256_jwt())),
            // A valid token that is not among the revoked ones: every request
            // pays a miss in a store of a million entries.
            request: |env| bearer(mint_hs256(env, "bench-hs256")?),
            expect: StatusCode::OK,
            setup: Some(preload_revoked),
            pending: None,
        },
        Scenario {
            name: "HS256 1M revoked redis",
            gateway: Some(|env| gateway_toml_redis(env, "required", &hs256_jwt())),
            // As "HS256 1M revoked", with the blocklist shared through Redis:
            // the per-request check is the same in-memory lookup.
            request: |env| bearer(mint_hs256(env, "bench-hs256")?),
            expect: StatusCode::OK,
            setup: Some(preload_revoked),
            pending: None,
        },
        Scenario {
            name: "RS256 cache on",
            gateway: Some(|env| gateway_toml(env, "required", &asym_jwt("RS256", "rs256", true))),
            request: |env| bearer(mint_pem(env, Algorithm::RS256, "rs256")?),
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "RS256 cache off",
            gateway: Some(|env| gateway_toml(env, "required", &asym_jwt("RS256", "rs256", false))),
            request: |env| bearer(mint_pem(env, Algorithm::RS256, "rs256")?),
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "ES256 cache on",
            gateway: Some(|env| gateway_toml(env, "required", &asym_jwt("ES256", "es256", true))),
            request: |env| bearer(mint_pem(env, Algorithm::ES256, "es256")?),
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "ES256 cache off",
            gateway: Some(|env| gateway_toml(env, "required", &asym_jwt("ES256", "es256", false))),
            request: |env| bearer(mint_pem(env, Algorithm::ES256, "es256")?),
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "revoked token (401)",
            gateway: Some(|env| gateway_toml(env, "required", &hs256_jwt())),
            request: |env| bearer(mint_hs256(env, REVOKED_JTI)?),
            expect: StatusCode::UNAUTHORIZED,
            setup: Some(|ctx| {
                Box::pin(async move {
                    let exp = ctx.env.now + TOKEN_TTL_SECS;
                    admin_client::revoke(ctx.admin, ADMIN_TOKEN, REVOKED_JTI, exp).await
                })
            }),
            pending: None,
        },
    ]
}

/// Loads [`MANY_REVOKED`] revocations straight into the blocklist: a million
/// admin API calls would take minutes and measure nothing these rows are
/// about. The request's token is not among them: every request pays a miss.
fn preload_revoked(ctx: SetupCtx) -> SetupFuture {
    Box::pin(async move {
        let expires_at = ctx.env.now + TOKEN_TTL_SECS;
        for i in 0..MANY_REVOKED {
            let key = revgate::revocation::RevocationKey::from_jti(&format!("bench-revoked-{i}"));
            ctx.revocations
                .apply(&revgate::revocation::Record::Revoke { key, expires_at });
        }
        ctx.revocations.run_pending_tasks();
        eprintln!("  setup: {} entries held", ctx.revocations.len());
        Ok(())
    })
}

/// The in-process gateway's config: one route `/` to the bench upstream.
/// `[server] listen` and `[admin] listen` are placeholders: the bench binds
/// `127.0.0.1:0` itself and hands the listeners to `App::run`.
fn gateway_toml(env: &Env, auth: &str, jwt: &str) -> String {
    gateway_toml_with_store(env, auth, jwt, "store = \"local\"")
}

/// [`gateway_toml`] with `store = "redis"` on the bench's redis-server.
fn gateway_toml_redis(env: &Env, auth: &str, jwt: &str) -> String {
    // Without a redis-server the row fails loudly (every request a 503).
    let port = env.redis_port.unwrap_or(1);
    gateway_toml_with_store(
        env,
        auth,
        jwt,
        &format!("store = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/0\""),
    )
}

fn gateway_toml_with_store(env: &Env, auth: &str, jwt: &str, store: &str) -> String {
    // Like for like with the other proxies measured: no access log, unless
    // a row asks for one (see `with_access_log`).
    format!(
        r#"[access_log]
enabled = false

[server]
listen = "127.0.0.1:0"
shutdown_grace = "1s"

[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

{jwt}
[revocation]
{store}

[[route]]
prefix = "/"
upstream = "http://{upstream}"
auth = "{auth}"
"#,
        upstream = env.upstream,
    )
}

/// `toml` with its access log on, written as `format` to a file in the
/// bench's temp dir: what logging costs on the request path.
fn with_access_log(toml: String, format: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "revgate-bench-access-{}-{format}.log",
        std::process::id()
    ));
    toml.replace(
        "[access_log]\nenabled = false\n",
        &format!(
            "[access_log]\nenabled = true\nformat = \"{format}\"\npath = {:?}\n",
            path.display().to_string()
        ),
    )
}

fn hs256_jwt() -> String {
    format!("[jwt]\nalgorithms = [\"HS256\"]\nhmac_secret = \"{HMAC_SECRET}\"\n")
}

/// `cache_capacity = 0` turns the verified-token cache off.
fn asym_jwt(alg: &str, key: &str, cache: bool) -> String {
    let public = key_path(&format!("{key}.pub.pem"));
    let cache = if cache { "" } else { "cache_capacity = 0\n" };
    format!(
        "[jwt]\nalgorithms = [\"{alg}\"]\npublic_key_file = \"{}\"\n{cache}",
        public.display()
    )
}

/// Bench-only keys, committed in `benches/keys/` (never use them elsewhere).
fn key_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/keys")
        .join(file)
}

fn plain(_env: &Env) -> Result<RequestSpec, String> {
    Ok(RequestSpec {
        path: "/bench".to_string(),
        headers: Vec::new(),
    })
}

fn bearer(token: String) -> Result<RequestSpec, String> {
    let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
    Ok(RequestSpec {
        path: "/bench".to_string(),
        headers: vec![(AUTHORIZATION, value)],
    })
}

fn claims(env: &Env, jti: &str) -> serde_json::Value {
    serde_json::json!({
        "sub": "bench-user",
        "jti": jti,
        "iat": env.now,
        "exp": env.now + TOKEN_TTL_SECS,
        "scope": "bench",
    })
}

fn mint_hs256(env: &Env, jti: &str) -> Result<String, String> {
    let key =
        EncodingKey::from_secret(HMAC_SECRET.as_bytes()).map_err(|e| format!("HS256 key: {e}"))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(env, jti), &key)
        .map_err(|e| format!("minting an HS256 token: {e}"))
}

fn mint_pem(env: &Env, alg: Algorithm, key: &str) -> Result<String, String> {
    let path = key_path(&format!("{key}.pem"));
    let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    jsonwebtoken::encode(&Header::new(alg), &claims(env, "bench-asym"), &key)
        .map_err(|e| format!("minting an {alg:?} token: {e}"))
}
