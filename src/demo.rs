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
    println!("{}", walkthrough(&app, &base, admin_base.as_deref()));
    app.run(main, admin, crate::server::shutdown_signal()).await;
    Ok(())
}

fn walkthrough(app: &App, base: &str, admin: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str("\nrevgate demo is running. Try, in another terminal:\n\n");
    for route in &app.config.routes {
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
    out.push_str("Stop with Ctrl-C.\n");
    out
}
