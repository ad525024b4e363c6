//! The scenario table: one row of the bench's output each.
//!
//! A scenario is a gateway config (or none: drive the upstream directly),
//! a request (path and headers, e.g. a bearer token), the status a correct
//! answer has, and an optional setup hook run against the started gateway
//! before the load (e.g. pre-load revoked entries). To add a row, add an
//! entry to [`all`].

use super::admin_client;
use super::loadgen::{Rotation, Target};
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
/// Distinct RS256/ES256 tokens the "distinct tokens" rows cycle through.
/// Fewer than the requests of a run, so the cache is kept smaller still
/// ([`TINY_CACHE`]): every request is a miss, a verification and an insert.
const DISTINCT_ASYM: usize = 1_000;
/// `jwt.cache_capacity` of the "distinct tokens" rows: far below
/// [`DISTINCT_ASYM`], so a token has been evicted when it comes round again.
const TINY_CACHE: u64 = 16;
/// Distinct HS256 tokens of the "cache bound" row: twice the default
/// `jwt.cache_capacity`, each padded to [`PADDED_TOKEN_BYTES`].
const DISTINCT_HS256: usize = 200_000;
/// Length of each token of the "cache bound" row (a `pad` claim fills it).
const PADDED_TOKEN_BYTES: usize = 2048;

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
    /// A header whose value changes with every request, cycling through
    /// these values (distinct tokens); `None`: every request the same.
    pub rotate: Option<(HeaderName, Vec<HeaderValue>)>,
    /// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub h2: bool,
}

impl RequestSpec {
    /// The load generator's target for this request at `addr`.
    pub fn target(&self, addr: SocketAddr, expect: StatusCode) -> Result<Target, String> {
        let mut target = Target::new(addr, &self.path, &self.headers, expect)?;
        if let Some((name, values)) = &self.rotate {
            target.rotate = Rotation::new(name.clone(), values.clone());
        }
        if self.h2 {
            target = target.into_h2()?;
        }
        Ok(target)
    }
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
            name: "RS256 distinct tokens (miss)",
            gateway: Some(|env| {
                gateway_toml(
                    env,
                    "required",
                    &asym_jwt_capacity("RS256", "rs256", TINY_CACHE),
                )
            }),
            request: |env| distinct_pem(env, Algorithm::RS256, "rs256"),
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "ES256 distinct tokens (miss)",
            gateway: Some(|env| {
                gateway_toml(
                    env,
                    "required",
                    &asym_jwt_capacity("ES256", "es256", TINY_CACHE),
                )
            }),
            request: |env| distinct_pem(env, Algorithm::ES256, "es256"),
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "HS256 200k distinct 2KB tokens (cache bound)",
            gateway: Some(|env| gateway_toml(env, "required", &hs256_jwt())),
            request: distinct_hs256,
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "HS256 forged (401)",
            gateway: Some(|env| gateway_toml(env, "required", &hs256_jwt())),
            request: |env| bearer(forge(&mint_hs256(env, "bench-forged")?)?),
            expect: StatusCode::UNAUTHORIZED,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "RS256 forged (401)",
            gateway: Some(|env| gateway_toml(env, "required", &asym_jwt("RS256", "rs256", true))),
            request: |env| bearer(forge(&mint_pem(env, Algorithm::RS256, "rs256")?)?),
            expect: StatusCode::UNAUTHORIZED,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "ES256 forged (401)",
            gateway: Some(|env| gateway_toml(env, "required", &asym_jwt("ES256", "es256", true))),
            request: |env| bearer(forge(&mint_pem(env, Algorithm::ES256, "es256")?)?),
            expect: StatusCode::UNAUTHORIZED,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "h2c auth=none",
            gateway: Some(|env| gateway_toml(env, "none", "")),
            request: |env| plain(env).map(h2),
            expect: StatusCode::OK,
            setup: None,
            pending: None,
        },
        Scenario {
            name: "h2c HS256",
            gateway: Some(|env| gateway_toml(env, "required", &hs256_jwt())),
            request: |env| bearer(mint_hs256(env, "bench-hs256")?).map(h2),
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

/// [`asym_jwt`] with the verified-token cache holding `capacity` tokens.
fn asym_jwt_capacity(alg: &str, key: &str, capacity: u64) -> String {
    format!("{}cache_capacity = {capacity}\n", asym_jwt(alg, key, true))
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
        rotate: None,
        h2: false,
    })
}

fn bearer_value(token: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())
}

fn bearer(token: String) -> Result<RequestSpec, String> {
    Ok(RequestSpec {
        path: "/bench".to_string(),
        headers: vec![(AUTHORIZATION, bearer_value(&token)?)],
        rotate: None,
        h2: false,
    })
}

/// The same request over h2c.
fn h2(spec: RequestSpec) -> RequestSpec {
    RequestSpec { h2: true, ..spec }
}

/// Requests cycling through these bearer tokens.
fn bearers(tokens: Vec<String>) -> Result<RequestSpec, String> {
    let values = tokens
        .iter()
        .map(|t| bearer_value(t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RequestSpec {
        path: "/bench".to_string(),
        headers: Vec::new(),
        rotate: Some((AUTHORIZATION, values)),
        h2: false,
    })
}

/// [`DISTINCT_ASYM`] tokens signed with `key`, minted on every core (an
/// RSA signature takes about a millisecond).
fn distinct_pem(env: &Env, alg: Algorithm, key: &str) -> Result<RequestSpec, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = DISTINCT_ASYM.div_ceil(threads);
    let key = &pem_key(alg, key)?;
    let tokens: Result<Vec<Vec<String>>, String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t * per..((t + 1) * per).min(DISTINCT_ASYM))
                        .map(|i| mint_with(env, alg, key, &format!("bench-distinct-{i}")))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| "a minting thread panicked".to_string())?
            })
            .collect()
    });
    bearers(tokens?.into_iter().flatten().collect())
}

/// [`DISTINCT_HS256`] distinct HS256 tokens of [`PADDED_TOKEN_BYTES`] each.
fn distinct_hs256(env: &Env) -> Result<RequestSpec, String> {
    let key =
        EncodingKey::from_secret(HMAC_SECRET.as_bytes()).map_err(|e| format!("HS256 key: {e}"))?;
    let header = Header::new(Algorithm::HS256);
    // base64url grows the claims by 4/3; the header and signature take ~80.
    let pad = "p".repeat((PADDED_TOKEN_BYTES.saturating_sub(200)) * 3 / 4);
    let tokens = (0..DISTINCT_HS256)
        .map(|i| {
            let mut claims = claims(env, &format!("bench-distinct-{i}"));
            claims["pad"] = serde_json::Value::String(pad.clone());
            jsonwebtoken::encode(&header, &claims, &key)
                .map_err(|e| format!("minting an HS256 token: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    bearers(tokens)
}

/// `token` with one bit of its signature flipped: well-formed, the right
/// algorithm and key, a signature that does not verify.
fn forge(token: &str) -> Result<String, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signed, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| "a token without a signature".to_string())?;
    let mut sig = b64.decode(signature).map_err(|e| e.to_string())?;
    let middle = sig.len() / 2;
    sig[middle] ^= 0x01;
    Ok(format!("{signed}.{}", b64.encode(sig)))
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
    mint_with(env, alg, &pem_key(alg, key)?, "bench-asym")
}

/// The bench's private key `key` (`benches/keys/{key}.pem`).
fn pem_key(alg: Algorithm, key: &str) -> Result<EncodingKey, String> {
    let path = key_path(&format!("{key}.pem"));
    let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .map_err(|e| format!("{}: {e}", path.display()))
}

fn mint_with(env: &Env, alg: Algorithm, key: &EncodingKey, jti: &str) -> Result<String, String> {
    jsonwebtoken::encode(&Header::new(alg), &claims(env, jti), key)
        .map_err(|e| format!("minting an {alg:?} token: {e}"))
}
