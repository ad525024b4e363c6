//! Assembling the gateway from a config and running it.

use crate::admin::{Admin, AdminApi};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::idp::{Idp, ReplayCache};
use crate::reload::{ReloadHandle, Reloader, Swap};
use crate::revocation::{Policy, Revocations, StoreOpenError};
use crate::routes::RouteTable;
use crate::server::{accept_loop, drain, ConnSettings};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::Metrics;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A failure while starting the gateway (not a per-request error).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The revocation store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreOpenError),
    /// The access log could not be opened.
    #[error(transparent)]
    AccessLog(#[from] crate::telemetry::access_log::AccessLogError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl StartError {
    /// Whether this is a configuration problem (exit status 2):
    /// a bad key, an unusable key file or store URL, a store directory that
    /// cannot be created.
    pub fn is_config(&self) -> bool {
        match self {
            StartError::Config(_) => true,
            StartError::Store(e) => e.is_config(),
            StartError::AccessLog(_) => true,
            StartError::Bind { .. } => false,
        }
    }
}

/// Checks what `revgate check-config` can check beyond parsing without
/// starting anything: keys load (a `jwks_url` is fetched) and a Redis URL
/// parses. The durable store is not opened (a running gateway holds it).
pub async fn check(config: &Config) -> Result<(), StartError> {
    // The certificates were read and matched to their keys by the loading.
    crate::tls::Listeners::new(config)?;
    if let Some(jwt) = &config.jwt {
        Authenticator::new(jwt).await?;
    }
    crate::idp::event_keys(config).await?;
    if let Some(url) = &config.revocation.redis_url {
        crate::revocation::redis::check_url(url)
            .map_err(|e| StartError::Store(StoreOpenError::Redis(e)))?;
    }
    Ok(())
}

/// What outlives one configuration: a reload keeps these and rebuilds the
/// rest around them.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) revocations: Arc<Revocations>,
    pub(crate) access_log: Option<AccessLog>,
    /// `/admin/reload` goes here; `None` when the config came from no file.
    pub(crate) reload: Option<ReloadHandle>,
    /// The `jti`s of logout tokens and SETs already acted on: kept across
    /// reloads, so a reload does not reopen a replay window.
    pub(crate) replay: Arc<ReplayCache>,
}

/// Builds the handlers of one configuration over the shared state: keys
/// (a `jwks_url` is fetched), routes and upstream pools, endpoints, admin
/// API. Used at start and by every reload.
pub(crate) async fn build_handlers(
    config: &Config,
    shared: &Shared,
) -> Result<(Arc<Gateway>, Arc<Admin>), StartError> {
    let auth = match &config.jwt {
        Some(jwt) => Some(Authenticator::new(jwt).await?),
        None => None,
    };
    let idp = Idp::new(
        config,
        auth.as_ref(),
        shared.replay.clone(),
        shared.revocations.clone(),
        shared.metrics.clone(),
    )
    .await?;
    let gateway = Arc::new(Gateway::new(
        config,
        shared.metrics.clone(),
        auth.clone(),
        shared.revocations.clone(),
        shared.access_log.clone(),
        idp,
    ));
    let api = config
        .admin
        .as_ref()
        .and_then(|a| a.token.clone())
        .map(|token| AdminApi::new(token, auth.clone(), shared.revocations.clone()));
    let admin = Arc::new(Admin::new(
        shared.metrics.clone(),
        shared.revocations.health().clone(),
        api,
        shared.reload.clone(),
        config.server.request_timeout,
    ));
    Ok((gateway, admin))
}

/// A built gateway, ready to serve.
pub struct App {
    pub config: Arc<Config>,
    /// The main listener's handler; a reload swaps what it holds.
    pub gateway: Arc<Swap<Gateway>>,
    /// The admin listener's handler; a reload swaps what it holds.
    pub admin: Arc<Swap<Admin>>,
    pub metrics: Arc<Metrics>,
    pub revocations: Arc<Revocations>,
    pub access_log: Option<AccessLog>,
    /// The listeners' TLS servers; a reload re-reads their certificates.
    pub tls: crate::tls::Listeners,
    /// Set by [`App::build_reloadable`]; SIGHUP and `/admin/reload` use it.
    reload: Option<(ReloadHandle, Reloader)>,
}

impl App {
    /// Builds everything expensive once: routes, client pool, keys, stores.
    /// The configuration cannot be reloaded (it came from no file).
    pub async fn build(config: Config) -> Result<App, StartError> {
        App::build_inner(config, None).await
    }

    /// [`App::build`] for a configuration read from `path`: SIGHUP and
    /// `POST /admin/reload` read that file again and swap it in.
    pub async fn build_reloadable(config: Config, path: PathBuf) -> Result<App, StartError> {
        App::build_inner(config, Some(path)).await
    }

    async fn build_inner(config: Config, path: Option<PathBuf>) -> Result<App, StartError> {
        let tls = crate::tls::Listeners::new(&config)?;
        let metrics = Arc::new(Metrics::new(RouteTable::labels(&config.routes)));
        let policy = Policy::from_config(config.jwt.as_ref());
        let revocations = Revocations::open(&config.revocation, policy, metrics.clone()).await?;
        revocations.start_sync();
        let access_log = AccessLog::start(&config.access_log)?;
        let (reload_handle, inbox) = match &path {
            Some(_) => {
                let (handle, inbox) = ReloadHandle::channel();
                (Some(handle), Some(inbox))
            }
            None => (None, None),
        };
        let shared = Shared {
            metrics: metrics.clone(),
            revocations: revocations.clone(),
            access_log: access_log.clone(),
            reload: reload_handle.clone(),
            replay: Arc::new(ReplayCache::default()),
        };
        let (gateway, admin) = build_handlers(&config, &shared).await?;
        let gateway = Arc::new(Swap::new(gateway));
        let admin = Arc::new(Swap::new(admin));
        register_swapped_counters(&metrics, &gateway);
        let config = Arc::new(config);
        let reload = match (path, reload_handle, inbox) {
            (Some(path), Some(handle), Some(inbox)) => Some((
                handle,
                Reloader::new(
                    path,
                    config.clone(),
                    shared,
                    gateway.clone(),
                    admin.clone(),
                    tls.clone(),
                    inbox,
                ),
            )),
            _ => None,
        };
        Ok(App {
            config,
            gateway,
            admin,
            metrics,
            revocations,
            access_log,
            tls,
            reload,
        })
    }

    /// Reloads the configuration file now, as SIGHUP does; an error leaves
    /// the running configuration in force. `None` when built from no file.
    pub fn reload_handle(&self) -> Option<ReloadHandle> {
        self.reload.as_ref().map(|(h, _)| h.clone())
    }

    /// Binds the listeners named in the config.
    pub async fn bind(&self) -> Result<(TcpListener, Option<TcpListener>), StartError> {
        let bind = |addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let main = bind(self.config.server.listen).await?;
        let admin = match &self.config.admin {
            Some(a) => Some(bind(a.listen).await?),
            None => None,
        };
        Ok((main, admin))
    }

    /// Serves on the given listeners until `shutdown` resolves, then drains
    /// in-flight requests (up to `server.shutdown_grace`).
    pub async fn run<F>(mut self, main: TcpListener, admin: Option<TcpListener>, shutdown: F)
    where
        F: Future<Output = ()> + Send,
    {
        if let Some((handle, reloader)) = self.reload.take() {
            reloader.start();
            reload_on_sighup(handle);
        }
        reopen_on_sigusr1(self.gateway.clone());
        let settings = ConnSettings::new(&self.config.server);
        let admin_settings = settings
            .with_limit(crate::server::ADMIN_MAX_CONNECTIONS)
            .with_tls(self.tls.admin.clone());
        let settings = settings.with_tls(self.tls.main.clone());
        let graceful = Arc::new(GracefulShutdown::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Ok(addr) = main.local_addr() {
            tracing::info!(%addr, tls = self.tls.main.is_some(), "gateway listening");
        }
        let mut loops = vec![tokio::spawn(accept_loop(
            main,
            self.gateway.clone(),
            settings.clone(),
            graceful.clone(),
            stop_rx.clone(),
        ))];
        if let Some(listener) = admin {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, tls = self.tls.admin.is_some(), "admin listening");
            }
            loops.push(tokio::spawn(accept_loop(
                listener,
                self.admin.clone(),
                admin_settings,
                graceful.clone(),
                stop_rx,
            )));
        }
        shutdown.await;
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        let _ = stop_tx.send(true);
        for handle in loops {
            let _ = handle.await;
        }
        match Arc::try_unwrap(graceful) {
            Ok(graceful) => drain(graceful, self.config.server.shutdown_grace).await,
            Err(_) => tracing::error!("accept loops still hold the shutdown watcher"),
        }
        self.revocations.close().await;
        // The current access log (a reload may have replaced the first).
        if let Some(log) = self.gateway.current().access_log().cloned() {
            // A blocking wait for the writer thread, off the runtime.
            let _ = tokio::task::spawn_blocking(move || log.flush(ACCESS_LOG_FLUSH)).await;
        }
    }
}

/// Counters (and the token cache's gauges) read through the current
/// handlers, so a reload does not restart them from zero more than it must
/// (the verified-token cache is rebuilt by a reload: its hits restart,
/// Prometheus sees a counter reset).
fn register_swapped_counters(metrics: &Metrics, gateway: &Arc<Swap<Gateway>>) {
    let weak = Arc::downgrade(gateway);
    metrics.add_counter(
        "revgate_token_cache_hits_total",
        "Verified-token cache hits (restarts when a reload rebuilds the cache)",
        Box::new(move || weak.upgrade().map_or(0, |g| g.current().cache_hits())),
    );
    let weak = Arc::downgrade(gateway);
    metrics.add_gauges(Box::new(move || {
        weak.upgrade().map_or_else(Vec::new, |g| {
            let (entries, bytes) = g.current().cache_size();
            vec![
                (
                    "revgate_token_cache_entries".to_owned(),
                    "Tokens in the verified-token cache".to_owned(),
                    entries as f64,
                ),
                (
                    "revgate_token_cache_bytes".to_owned(),
                    "Estimated bytes the verified-token cache holds (at most jwt.cache_max_bytes)"
                        .to_owned(),
                    bytes as f64,
                ),
            ]
        })
    }));
    let weak = Arc::downgrade(gateway);
    metrics.add_counter(
        "revgate_access_log_lines_total",
        "Access-log lines written (restarts when a reload replaces the log)",
        Box::new(move || {
            weak.upgrade()
                .and_then(|g| g.current().access_log().map(AccessLog::written))
                .unwrap_or(0)
        }),
    );
    let weak = Arc::downgrade(gateway);
    metrics.add_counter(
        "revgate_access_log_dropped_total",
        "Access-log lines dropped because the writer's queue was full",
        Box::new(move || {
            weak.upgrade()
                .and_then(|g| g.current().access_log().map(AccessLog::dropped))
                .unwrap_or(0)
        }),
    );
}

/// SIGHUP (systemd's `ExecReload=/bin/kill -HUP $MAINPID`) reloads.
fn reload_on_sighup(handle: ReloadHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload only through /admin/reload");
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                // The reloader logs and counts the outcome.
                let _ = handle.reload().await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = handle;
}

/// How long shutdown waits for the access log's last lines.
const ACCESS_LOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// `kill -USR1` reopens the access log file (logrotate), as nginx does.
fn reopen_on_sigusr1(gateway: Arc<Swap<Gateway>>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            tracing::warn!("cannot listen for SIGUSR1: the access log will not be reopened");
            return;
        };
        let gateway = Arc::downgrade(&gateway);
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                let Some(gateway) = gateway.upgrade() else {
                    return;
                };
                if let Some(log) = gateway.current().access_log() {
                    log.reopen();
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = gateway;
}
