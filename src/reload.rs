//! Reloading the configuration without a restart (SIGHUP, `POST
//! /admin/reload`).
//!
//! A reload reads the file again, validates it in full and builds every
//! piece a configuration determines (routes and upstream pools, keys and the
//! verified-token cache, endpoints, the admin API, the access log), then
//! swaps the main and admin handlers, each one `Arc` swap. Requests in
//! flight finish on the state they started with; keep-alive connections
//! stay open and their next request sees the new state. What outlives a
//! configuration is shared, never rebuilt: the revocations, the store
//! health, the metrics. On any error nothing is swapped and the running
//! configuration stays in force.
//!
//! The listeners' certificates are re-read with the file and presented to
//! new handshakes once everything else has been built; a bad certificate
//! refuses the reload like any other key.
//!
//! Keys that cannot change in a running process (listen addresses, worker
//! threads, connection limits and timeouts held by the accept loops, TLS on
//! or off on a listener, the revocation store, and the leeway and token
//! lifetime the store's expiry uses) are refused with a message that a
//! restart is needed.

use crate::app::{build_handlers, Shared, StartError};
use crate::body::GatewayBody;
use crate::config::{Config, ConfigError, RevocationConfig};
use crate::server::{Handler, Peer};
use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A handler that a reload replaces whole. Each request takes the current
/// one (one reference count) and keeps it to the end.
pub struct Swap<H> {
    current: ArcSwap<H>,
}

impl<H> Swap<H> {
    /// Starts with `handler`.
    pub fn new(handler: Arc<H>) -> Self {
        Swap {
            current: ArcSwap::new(handler),
        }
    }

    /// The handler new requests get.
    pub fn current(&self) -> Arc<H> {
        self.current.load_full()
    }

    fn store(&self, handler: Arc<H>) {
        self.current.store(handler);
    }
}

impl<H: Handler> Handler for Swap<H> {
    async fn call(&self, req: Request<Incoming>, peer: Peer) -> Response<GatewayBody> {
        let handler = self.current.load_full();
        handler.call(req, peer).await
    }
}

/// Why a reload was refused; the running configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file does not validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key that only a restart can change was changed.
    #[error("{key}: changed, but cannot change while running; restart revgate to apply it")]
    NeedsRestart { key: &'static str },
    /// A piece of the new configuration could not be built (a key file, a
    /// JWKS URL, the access log file).
    #[error(transparent)]
    Build(#[from] StartError),
    /// The reloader has stopped (the gateway is shutting down).
    #[error("the gateway is shutting down")]
    Stopped,
}

impl ReloadError {
    /// The configuration key the error names, for `{"key": ...}`.
    pub fn key(&self) -> String {
        match self {
            ReloadError::Config(e) => e.key().unwrap_or_default(),
            ReloadError::NeedsRestart { key } => (*key).to_owned(),
            ReloadError::Build(StartError::Config(e)) => e.key().unwrap_or_default(),
            ReloadError::Build(_) | ReloadError::Stopped => String::new(),
        }
    }
}

type ReloadRequest = oneshot::Sender<Result<(), Arc<ReloadError>>>;

/// Asks the reloader to reload; cheap to clone. Requests queue (at most
/// [`QUEUE`]); they run one at a time.
#[derive(Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<ReloadRequest>,
}

/// The reloader's end of [`ReloadHandle::channel`].
pub(crate) struct ReloadInbox(mpsc::Receiver<ReloadRequest>);

/// Reload requests waiting at once; more get an error at once.
const QUEUE: usize = 4;

impl ReloadHandle {
    /// A handle and the inbox a [`Reloader`] will serve, made before the
    /// handlers that hold the handle (the admin API) are built.
    pub(crate) fn channel() -> (ReloadHandle, ReloadInbox) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (ReloadHandle { tx }, ReloadInbox(rx))
    }

    /// Reloads and waits for the result.
    pub async fn reload(&self) -> Result<(), Arc<ReloadError>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .try_send(tx)
            .map_err(|_| Arc::new(ReloadError::Stopped))?;
        rx.await.map_err(|_| Arc::new(ReloadError::Stopped))?
    }
}

/// What a reload swaps, and what it keeps.
pub struct Reloader {
    path: PathBuf,
    running: Arc<Config>,
    shared: Shared,
    gateway: Arc<Swap<crate::gateway::Gateway>>,
    admin: Arc<Swap<crate::admin::Admin>>,
    tls: crate::tls::Listeners,
    inbox: ReloadInbox,
}

impl Reloader {
    pub(crate) fn new(
        path: PathBuf,
        running: Arc<Config>,
        shared: Shared,
        gateway: Arc<Swap<crate::gateway::Gateway>>,
        admin: Arc<Swap<crate::admin::Admin>>,
        tls: crate::tls::Listeners,
        inbox: ReloadInbox,
    ) -> Self {
        Reloader {
            path,
            running,
            shared,
            gateway,
            admin,
            tls,
            inbox,
        }
    }

    /// Serves reload requests one at a time, until every handle is gone.
    pub(crate) fn start(mut self) {
        tokio::spawn(async move {
            while let Some(answer) = self.inbox.0.recv().await {
                let result = self.reload().await.map_err(Arc::new);
                let _ = answer.send(result);
            }
        });
    }

    /// One reload: validate and build everything, then swap; count it.
    async fn reload(&mut self) -> Result<(), ReloadError> {
        let result = self.try_reload().await;
        let metrics = &self.shared.metrics;
        match &result {
            Ok(()) => {
                metrics.reload_succeeded();
                tracing::info!(
                    config = %self.path.display(),
                    routes = self.running.routes.len(),
                    "configuration reloaded"
                );
            }
            Err(e) => {
                metrics.reload_failed();
                tracing::error!(config = %self.path.display(), "reload refused, the running configuration stays: {e}");
            }
        }
        result
    }

    async fn try_reload(&mut self) -> Result<(), ReloadError> {
        let path = self.path.clone();
        let config = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|_| ReloadError::Stopped)??;
        needs_restart(&self.running, &config)?;
        let access_log = if config.access_log == self.running.access_log {
            // Same log: keep the writer, reopen its file (logrotate).
            if let Some(log) = &self.shared.access_log {
                log.reopen();
            }
            self.shared.access_log.clone()
        } else {
            crate::telemetry::access_log::AccessLog::start(&config.access_log)
                .map_err(StartError::from)?
        };
        let shared = Shared {
            access_log,
            ..self.shared.clone()
        };
        let (gateway, admin) = build_handlers(&config, &shared).await?;
        self.gateway.store(gateway);
        self.admin.store(admin);
        self.tls.reload(&config);
        self.shared = shared;
        self.running = Arc::new(config);
        Ok(())
    }
}

/// The first key, in file order, that differs and that only a restart can
/// change.
fn needs_restart(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let (o, n) = (&old.server, &new.server);
    let (ro, rn) = (&old.revocation, &new.revocation);
    // Every field of `[revocation]` is in the table below: a field added to
    // `RevocationConfig` fails to compile here until it is.
    let RevocationConfig {
        store: _,
        path: _,
        capacity: _,
        redis_url: _,
        redis_prefix: _,
        on_store_down: _,
        max_staleness: _,
    } = ro;
    let admin = |c: &Config| c.admin.as_ref().map(|a| a.listen);
    let leeway = |c: &Config| c.jwt.as_ref().map(|j| j.leeway);
    let lifetime = |c: &Config| c.jwt.as_ref().map(|j| j.max_token_lifetime);
    // The accept loops were built for TLS or cleartext; the certificates
    // themselves are reloaded.
    let admin_tls = |c: &Config| c.admin.as_ref().is_some_and(|a| a.tls.is_some());
    let changed = [
        ("server.listen", o.listen != n.listen),
        ("server.workers", o.workers != n.workers),
        (
            "server.max_connections",
            o.max_connections != n.max_connections,
        ),
        (
            "server.header_read_timeout",
            o.header_read_timeout != n.header_read_timeout,
        ),
        ("server.idle_timeout", o.idle_timeout != n.idle_timeout),
        ("server.tls", o.tls.is_some() != n.tls.is_some()),
        (
            "server.shutdown_grace",
            o.shutdown_grace != n.shutdown_grace,
        ),
        ("admin.listen", admin(old) != admin(new)),
        ("admin.tls", admin_tls(old) != admin_tls(new)),
        ("jwt.leeway", leeway(old) != leeway(new)),
        ("jwt.max_token_lifetime", lifetime(old) != lifetime(new)),
        // The store, its path or URL, prefix, capacity and policies are the
        // revocations' own, opened once.
        ("revocation.store", ro.store != rn.store),
        ("revocation.path", ro.path != rn.path),
        ("revocation.capacity", ro.capacity != rn.capacity),
        ("revocation.redis_url", ro.redis_url != rn.redis_url),
        (
            "revocation.redis_prefix",
            ro.redis_prefix != rn.redis_prefix,
        ),
        (
            "revocation.on_store_down",
            ro.on_store_down != rn.on_store_down,
        ),
        (
            "revocation.max_staleness",
            ro.max_staleness != rn.max_staleness,
        ),
    ];
    if let Some((key, _)) = changed.iter().find(|(_, differs)| *differs) {
        return Err(ReloadError::NeedsRestart { key });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml(
            &format!("[server]\nlisten = \"127.0.0.1:8080\"\n{extra}\n[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9000\"\nauth = \"none\"\n"),
            "t",
        )
        .expect("valid")
    }

    #[test]
    fn routes_and_limits_may_change_listeners_and_store_may_not() {
        let old = config("request_timeout = \"30s\"");
        assert!(needs_restart(&old, &config("request_timeout = \"5s\"")).is_ok());
        let changed =
            Config::from_toml("[server]\nlisten = \"127.0.0.1:8081\"\n", "t").expect("valid");
        let err = needs_restart(&old, &changed).expect_err("listen changed");
        assert_eq!(err.key(), "server.listen");
        assert!(err.to_string().contains("restart"), "{err}");
        let store = config("[revocation]\ncapacity = 5\n");
        let err = needs_restart(&old, &store).expect_err("store changed");
        assert_eq!(err.key(), "revocation.capacity");
    }

    /// Each `[revocation]` key is named on its own, as the other
    /// restart-only keys are.
    #[test]
    fn a_refused_revocation_change_names_its_key() {
        let old = config("");
        for (extra, key) in [
            (
                "store = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"",
                "revocation.store",
            ),
            ("path = \"/tmp/revgate-reload-test\"", "revocation.path"),
            ("capacity = 5", "revocation.capacity"),
            ("redis_prefix = \"other:\"", "revocation.redis_prefix"),
            ("on_store_down = \"allow\"", "revocation.on_store_down"),
            ("max_staleness = \"5s\"", "revocation.max_staleness"),
        ] {
            let new = config(&format!("[revocation]\n{extra}\n"));
            let err = needs_restart(&old, &new).expect_err(key);
            assert_eq!(err.key(), key, "{extra}");
        }
        let redis = |url: &str| {
            config(&format!(
                "[revocation]\nstore = \"redis\"\nredis_url = \"redis://{url}\"\n"
            ))
        };
        let err = needs_restart(&redis("127.0.0.1:1"), &redis("127.0.0.1:2")).expect_err("url");
        assert_eq!(err.key(), "revocation.redis_url");
    }

    /// The connection bounds live in the accept loops (built once); the
    /// body bound and the underscore rule live in the handlers (swapped).
    #[test]
    fn idle_timeout_needs_a_restart_body_bound_and_underscores_do_not() {
        let old = config("");
        let err = needs_restart(&old, &config("idle_timeout = \"5s\"")).expect_err("idle");
        assert_eq!(err.key(), "server.idle_timeout");
        let live = config("body_read_timeout = \"5s\"\nunderscores_in_headers = \"reject\"");
        assert!(needs_restart(&old, &live).is_ok());
    }
}
