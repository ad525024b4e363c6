//! `revgate demo`: the gateway from the repo's `gateway.toml` in front of a
//! built-in echo upstream, with commands a newcomer can paste.

use crate::app::App;
use crate::config::Config;
use crate::tls::ListenerTls;
use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeSet;
use std::path::PathBuf;
use tokio::net::TcpListener;

/// Development-only secret used when `REVGATE_HMAC_SECRET` is unset.
pub const DEMO_HMAC_SECRET: &str = "revgate-demo-hmac-secret-change-me-0123456789";
/// Development-only admin token used when `REVGATE_ADMIN_TOKEN` is unset.
pub const DEMO_ADMIN_TOKEN: &str = "revgate-demo-admin-token-change-me";

/// Sets the demo's secrets in the environment where the user has not, so
/// the repo's `gateway.toml` (which reads them from the environment) loads.
/// Call before any other thread starts.
pub fn default_env() {
    for (name, value) in [
        ("REVGATE_HMAC_SECRET", DEMO_HMAC_SECRET),
        ("REVGATE_ADMIN_TOKEN", DEMO_ADMIN_TOKEN),
    ] {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
}

/// Starts echo upstreams on every loopback upstream of the config, then the
/// gateway (over TLS with a throwaway certificate when `tls`), prints the
/// walkthrough and runs until SIGTERM/SIGINT.
pub async fn run(mut config: Config, tls: bool) -> anyhow::Result<()> {
    let client = match tls {
        true => {
            let demo = DemoTls::generate()?;
            config.server.tls = Some(ListenerTls::load(
                "server",
                demo.cert_file.clone(),
                demo.key_file.clone(),
            )?);
            println!(
                "\nA throwaway CA and certificate (localhost, 127.0.0.1) for this run: {}\n",
                demo.dir.display()
            );
            Client::tls(&demo)?
        }
        false => Client::Plain,
    };
    let upstreams: BTreeSet<String> = config
        .routes
        .iter()
        .map(|r| r.upstream.authority.to_string())
        .collect();
    for authority in upstreams {
        match TcpListener::bind(&authority).await {
            Ok(listener) => {
                tracing::info!(%authority, "demo echo upstream listening");
                tokio::spawn(crate::echo::serve(listener));
            }
            Err(e) => {
                tracing::warn!(%authority, error = %e, "cannot start the demo echo upstream there (is something else listening?)")
            }
        }
    }
    let app = App::build(config).await?;
    let (main, admin) = app.bind().await?;
    let base = format!("{}://{}", client.scheme(), main.local_addr()?);
    let admin_base = admin
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| format!("http://{a}"));
    let config = app.config.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(main, admin, async move {
        tokio::select! {
            _ = crate::server::shutdown_signal() => {},
            _ = stop_rx => {},
        }
    }));
    println!(
        "{}",
        walkthrough(&config, &base, admin_base.as_deref(), &client.curl())
    );
    if let Err(e) = show_logout(&config, &base, &client).await {
        println!("(the logout walkthrough could not run: {e})\n");
    }
    if let Err(e) = show_backchannel_logout(&config, &base, &client).await {
        println!("(the back-channel logout walkthrough could not run: {e})\n");
    }
    println!("Stop with Ctrl-C.");
    let _keep_until_exit = stop_tx;
    server.await?;
    Ok(())
}

/// Mints a token, calls a protected route, logs out, and calls it again,
/// printing each step, so a newcomer sees revocation work before trying it.
async fn show_logout(config: &Config, base: &str, client: &Client) -> anyhow::Result<()> {
    let Some(jwt) = &config.jwt else {
        return Ok(());
    };
    let Some(route) = config
        .routes
        .iter()
        .find(|r| r.auth == crate::config::AuthMode::Required)
    else {
        return Ok(());
    };
    let mint = |sub: &str| {
        let mut req = crate::auth::MintRequest::new(sub);
        req.ttl = std::time::Duration::from_secs(3600);
        req.scope = Some(route.scopes.join(" "));
        crate::auth::mint(jwt, &req)
    };
    let token = mint("demo-user")?;
    let url = format!("{base}{}orders", route.prefix);
    let logout = format!("{base}{}", config.endpoints.logout);
    println!(
        "A token for demo-user (revgate mint --sub demo-user --scope {:?}):\n\n  TOKEN={token}\n",
        route.scopes.join(" ")
    );
    println!("What revocation looks like, done for you just now:");
    let (status, _) = client.call("GET", &url, &token).await?;
    println!("  GET  {url}  -> {status}");
    let (status, body) = client.call("POST", &logout, &token).await?;
    println!("  POST {logout}  -> {status} {body}");
    let (status, body) = client.call("GET", &url, &token).await?;
    println!("  GET  {url}  -> {status} {body}\n");
    let fresh = mint("demo-user")?;
    println!("Now by hand, with a fresh token:\n");
    println!("  TOKEN={fresh}");
    let curl = client.curl();
    println!("  {curl} -H \"Authorization: Bearer $TOKEN\" {url}          # 200, claims forwarded");
    println!("  {curl} -X POST -H \"Authorization: Bearer $TOKEN\" {logout}   # 200, revoked");
    println!("  {curl} -H \"Authorization: Bearer $TOKEN\" {url}          # 401 token revoked");
    let env = if std::env::var("REVGATE_HMAC_SECRET").is_ok_and(|v| v == DEMO_HMAC_SECRET) {
        format!("REVGATE_HMAC_SECRET={DEMO_HMAC_SECRET} REVGATE_ADMIN_TOKEN={DEMO_ADMIN_TOKEN} ")
    } else {
        String::new()
    };
    println!(
        "  {env}cargo run --release -- mint --sub alice --scope orders:read   # more tokens\n"
    );
    Ok(())
}

/// Plays the identity provider: two tokens of one session (`sid`), then a
/// back-channel logout token for that session POSTed as Keycloak would, and
/// both tokens refused. Runs when `endpoints.backchannel_logout` is served
/// and the `[jwt]` keys are an HMAC secret the demo can sign with.
async fn show_backchannel_logout(
    config: &Config,
    base: &str,
    client: &Client,
) -> anyhow::Result<()> {
    let (Some(jwt), Some(path), Some(audience)) = (
        &config.jwt,
        &config.endpoints.backchannel_logout,
        &config.idp.backchannel_audience,
    ) else {
        return Ok(());
    };
    let (Some(issuer), Some(secret)) = (&jwt.issuer, &jwt.hmac_secret) else {
        return Ok(());
    };
    let Some(route) = config
        .routes
        .iter()
        .find(|r| r.auth == crate::config::AuthMode::Required)
    else {
        return Ok(());
    };
    let sid = format!(
        "demo-session-{}",
        crate::revocation::token_fingerprint(base)
    );
    let mint = || {
        let mut req = crate::auth::MintRequest::new("demo-user");
        req.ttl = std::time::Duration::from_secs(3600);
        req.scope = Some(route.scopes.join(" "));
        req.claims.push(("sid".into(), serde_json::json!(sid)));
        crate::auth::mint(jwt, &req)
    };
    let (first, second) = (mint()?, mint()?);
    let url = format!("{base}{}orders", route.prefix);
    let logout = format!("{base}{path}");
    println!("Logout at the identity provider (back-channel logout), done for you just now:");
    println!("  two tokens of session {sid}:");
    for t in [&first, &second] {
        let (status, _) = client.call("GET", &url, t).await?;
        println!("  GET  {url}  -> {status}");
    }
    let now = crate::revocation::Clock::now(&crate::revocation::SystemClock);
    let event = crate::idp::BACKCHANNEL_LOGOUT_EVENT;
    let claims = serde_json::json!({
        "iss": issuer, "aud": audience, "iat": now, "exp": now + 120,
        "jti": format!("demo-logout-{now}"), "sid": sid,
        "events": { event: {} },
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("logout+jwt".into());
    let key = jsonwebtoken::EncodingKey::from_secret(secret.expose())?;
    let logout_token = jsonwebtoken::encode(&header, &claims, &key)?;
    let (status, _) = client
        .post_form(&logout, &format!("logout_token={logout_token}"))
        .await?;
    println!(
        "  POST {logout}  logout_token=<signed by the identity provider, sid {sid}>  -> {status}"
    );
    for t in [&first, &second] {
        let (status, body) = client.call("GET", &url, t).await?;
        println!("  GET  {url}  -> {status} {body}");
    }
    println!();
    Ok(())
}

/// How the demo talks to its own gateway: plain HTTP, or HTTPS trusting
/// the demo's CA (and the curl command line to print for it).
enum Client {
    Plain,
    Tls {
        ca_file: PathBuf,
        client: Box<LegacyClient<HttpsConnector<HttpConnector>, Full<Bytes>>>,
    },
}

impl Client {
    fn tls(demo: &DemoTls) -> anyhow::Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(demo.ca.clone())?;
        let config = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        Ok(Client::Tls {
            ca_file: demo.ca_file.clone(),
            client: Box::new(LegacyClient::builder(TokioExecutor::new()).build(connector)),
        })
    }

    fn scheme(&self) -> &'static str {
        match self {
            Client::Plain => "http",
            Client::Tls { .. } => "https",
        }
    }

    /// `curl -i`, with `--cacert` for the demo's CA.
    fn curl(&self) -> String {
        match self {
            Client::Plain => "curl -i".to_owned(),
            Client::Tls { ca_file, .. } => format!("curl -i --cacert {}", ca_file.display()),
        }
    }

    async fn call(&self, method: &str, url: &str, token: &str) -> anyhow::Result<(u16, String)> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))?;
        self.send(req).await
    }

    /// POSTs a form body.
    async fn post_form(&self, url: &str, form: &str) -> anyhow::Result<(u16, String)> {
        let req = hyper::Request::builder()
            .method("POST")
            .uri(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form.to_owned())))?;
        self.send(req).await
    }

    /// The status and a short body (none when it is long).
    async fn send(&self, req: hyper::Request<Full<Bytes>>) -> anyhow::Result<(u16, String)> {
        use http_body_util::BodyExt;
        let resp = match self {
            Client::Plain => {
                LegacyClient::builder(TokioExecutor::new())
                    .build_http::<Full<Bytes>>()
                    .request(req)
                    .await?
            }
            Client::Tls { client, .. } => client.request(req).await?,
        };
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&body);
        // The echo upstream's answers are long; the gateway's own are one line.
        let short = if body.len() > 120 {
            String::new()
        } else {
            body.trim().to_string()
        };
        Ok((status, short))
    }
}

/// A throwaway CA and a certificate it signed for `localhost` and
/// `127.0.0.1` (ECDSA P-256), written as PEM files into a fresh temporary
/// directory.
struct DemoTls {
    dir: PathBuf,
    ca: rustls::pki_types::CertificateDer<'static>,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl DemoTls {
    fn generate() -> anyhow::Result<DemoTls> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "revgate demo CA (throwaway)");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_key = KeyPair::generate()?;
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

        let dir = private_temp_dir("revgate-demo-tls-")?;
        let write = |name: &str, text: String, mode: u32| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            write_new(&path, text.as_bytes(), mode)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        };
        Ok(DemoTls {
            ca_file: write("ca.pem", ca_cert.pem(), 0o644)?,
            cert_file: write("cert.pem", leaf.pem(), 0o644)?,
            key_file: write("key.pem", leaf_key.serialize_pem(), 0o600)?,
            ca: ca_cert.der().clone(),
            dir,
        })
    }
}

/// A new directory under the system's temporary directory that only this
/// user may enter (mode 0700), named `prefix` and 128 random bits so that
/// no other user can guess it and plant a file or link there first;
/// creating it fails rather than reuse one that exists.
fn private_temp_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random)
        .map_err(|e| anyhow::anyhow!("no random bytes for a temporary directory: {e}"))?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("{prefix}{suffix}"));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Writes a file that must not exist yet, created with `mode` (on Unix).
fn write_new(path: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    std::io::Write::write_all(&mut options.open(path)?, bytes)
}

fn walkthrough(config: &Config, base: &str, admin: Option<&str>, curl: &str) -> String {
    let mut out = String::new();
    out.push_str("\nrevgate demo is running. Try, in another terminal:\n\n");
    for route in &config.routes {
        let mode = match route.auth {
            crate::config::AuthMode::None => "open route",
            crate::config::AuthMode::Optional => "token optional",
            crate::config::AuthMode::Required => "token required",
        };
        out.push_str(&format!(
            "  # {mode}: {} -> {}\n  {curl} {base}{}\n\n",
            route.prefix, route.upstream.authority, route.prefix
        ));
    }
    if let Some(admin) = admin {
        out.push_str(&format!(
            "  # health and metrics\n  curl {admin}/healthz\n  curl {admin}/metrics\n\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's CA and key go to a fresh directory of its own (mode 0700,
    /// an unguessable name, never the process id), the key file mode 0600,
    /// and the printed curl command names the CA file written there.
    #[cfg(unix)]
    #[test]
    fn demo_tls_files_are_private_and_unpredictable() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let (a, b) = (
            DemoTls::generate().expect("demo tls"),
            DemoTls::generate().expect("demo tls"),
        );
        assert_ne!(a.dir, b.dir);
        for demo in [&a, &b] {
            let name = demo.dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let suffix = name.strip_prefix("revgate-demo-tls-").unwrap_or("");
            assert!(
                suffix.len() == 32 && suffix.bytes().all(|c| c.is_ascii_hexdigit()),
                "{name}"
            );
            assert_eq!(mode(&demo.dir), 0o700, "{}", demo.dir.display());
            assert_eq!(mode(&demo.key_file), 0o600);
            assert!(demo.key_file.starts_with(&demo.dir) && demo.ca_file.starts_with(&demo.dir));
            let curl = Client::tls(demo).expect("client").curl();
            assert_eq!(curl, format!("curl -i --cacert {}", demo.ca_file.display()));
        }
        // Never reused: a file written there already is an error.
        assert!(write_new(&a.key_file, b"x", 0o600).is_err());
        assert!(std::fs::DirBuilder::new().create(&a.dir).is_err());
        for demo in [a, b] {
            let _ = std::fs::remove_dir_all(&demo.dir);
        }
    }
}
