//! `revgate demo`: the gateway from the repo's `gateway.toml` in front of a
//! built-in echo upstream, with commands a newcomer can paste.

use crate::app::App;
use crate::config::Config;
use std::collections::BTreeSet;
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
/// gateway, prints the walkthrough and runs until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
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
    let base = format!("http://{}", main.local_addr()?);
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
    println!("{}", walkthrough(&config, &base, admin_base.as_deref()));
    if let Err(e) = show_logout(&config, &base).await {
        println!("(the logout walkthrough could not run: {e})\n");
    }
    println!("Stop with Ctrl-C.");
    let _keep_until_exit = stop_tx;
    server.await?;
    Ok(())
}

/// Mints a token, calls a protected route, logs out, and calls it again,
/// printing each step, so a newcomer sees revocation work before trying it.
async fn show_logout(config: &Config, base: &str) -> anyhow::Result<()> {
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
    let (status, _) = call("GET", &url, &token).await?;
    println!("  GET  {url}  -> {status}");
    let (status, body) = call("POST", &logout, &token).await?;
    println!("  POST {logout}  -> {status} {body}");
    let (status, body) = call("GET", &url, &token).await?;
    println!("  GET  {url}  -> {status} {body}\n");
    let fresh = mint("demo-user")?;
    println!("Now by hand, with a fresh token:\n");
    println!("  TOKEN={fresh}");
    println!(
        "  curl -i -H \"Authorization: Bearer $TOKEN\" {url}          # 200, claims forwarded"
    );
    println!("  curl -i -X POST -H \"Authorization: Bearer $TOKEN\" {logout}   # 200, revoked");
    println!("  curl -i -H \"Authorization: Bearer $TOKEN\" {url}          # 401 token revoked");
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

async fn call(method: &str, url: &str, token: &str) -> anyhow::Result<(u16, String)> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))?;
    let resp = client.request(req).await?;
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

fn walkthrough(config: &Config, base: &str, admin: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str("\nrevgate demo is running. Try, in another terminal:\n\n");
    for route in &config.routes {
        let mode = match route.auth {
            crate::config::AuthMode::None => "open route",
            crate::config::AuthMode::Optional => "token optional",
            crate::config::AuthMode::Required => "token required",
        };
        out.push_str(&format!(
            "  # {mode}: {} -> {}\n  curl -i {base}{}\n\n",
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
