//! The request path, as named phases over one request:
//! route -> extract -> verify -> check revocation -> authorize scopes ->
//! forward -> log.
//!
//! Before any of them, `view` makes the request one unambiguous view (path,
//! `Host`, header names) that routing, auth and the upstream all share.

mod view;

use crate::auth::{Authenticator, Claims};
use crate::body::GatewayBody;
use crate::config::{AuthMode, Config, OnStoreDown, Underscores};
use crate::endpoints::Endpoints;
use crate::idp::Idp;
use crate::proxy::Proxy;
use crate::response::Reject;
use crate::revocation::Revocations;
use crate::routes::{Route, RouteTable};
use crate::server::Peer;
use crate::telemetry::access_log::{AccessLog, Entry};
use crate::telemetry::metrics::RouteSlots;
use crate::telemetry::{Metrics, Outcome};
use hyper::body::Incoming;
use hyper::header::{HeaderName, AUTHORIZATION};
use hyper::{Request, Response};
use std::sync::Arc;
use std::time::Instant;

/// What the phases learn about one request, for the metrics and the log.
struct RequestCtx {
    /// Metrics slot: the route's index, the endpoints' or "no route".
    slot: usize,
    /// The matched route's prefix.
    route: Option<Arc<str>>,
    /// The verified token's claims (kept only when the access log is on).
    claims: Option<Arc<Claims>>,
    /// Time to the upstream's response headers (or its failure).
    upstream: Option<std::time::Duration>,
    /// When the upstream answered (read only with the access log on), so
    /// the request's own latency reuses that clock reading.
    answered: Option<Instant>,
    /// Every answer, errors included, gets `Cache-Control: no-store` (the
    /// identity provider's endpoints).
    no_store: bool,
}

/// Everything the request path needs, built once at start.
pub struct Gateway {
    routes: RouteTable,
    proxy: Proxy,
    /// Every header named in any route's `forward_claims`.
    claim_headers: Box<[HeaderName]>,
    max_header_bytes: usize,
    /// Deadline for requests the gateway answers itself.
    request_timeout: std::time::Duration,
    metrics: Arc<Metrics>,
    /// This configuration's per-route counters.
    slots: Arc<RouteSlots>,
    /// Present when the config has a `[jwt]` section.
    auth: Option<Arc<Authenticator>>,
    revocations: Arc<Revocations>,
    /// Logout endpoints; present with `auth`.
    endpoints: Option<Endpoints>,
    on_store_down: OnStoreDown,
    /// `None` when `[access_log]` is off.
    access_log: Option<AccessLog>,
    /// `server.underscores_in_headers`.
    underscores: Underscores,
}

impl Gateway {
    /// Builds the gateway state from a validated config and the shared
    /// verification and revocation state.
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        auth: Option<Arc<Authenticator>>,
        revocations: Arc<Revocations>,
        access_log: Option<AccessLog>,
        idp: Option<Arc<Idp>>,
    ) -> Self {
        let endpoints = auth.as_ref().map(|a| {
            Endpoints::new(
                config.endpoints.clone(),
                a.clone(),
                revocations.clone(),
                idp,
            )
        });
        Gateway {
            routes: RouteTable::new(&config.routes),
            slots: metrics.route_slots(RouteTable::labels(&config.routes)),
            proxy: Proxy::new(&config.server, &config.routes),
            claim_headers: config.claim_headers().into_boxed_slice(),
            max_header_bytes: config.server.max_header_bytes,
            request_timeout: config.server.request_timeout,
            metrics,
            auth,
            revocations,
            endpoints,
            on_store_down: config.revocation.on_store_down,
            access_log,
            underscores: config.server.underscores_in_headers,
        }
    }

    /// Verified-token cache hits of this configuration's cache.
    pub fn cache_hits(&self) -> u64 {
        self.auth.as_ref().map_or(0, |a| a.cache_hits())
    }

    /// Tokens in this configuration's verified-token cache, and their
    /// estimated bytes.
    pub fn cache_size(&self) -> (u64, u64) {
        self.auth
            .as_ref()
            .map_or((0, 0), |a| (a.cache_len(), a.cache_bytes()))
    }

    /// This configuration's access log, when it is on.
    pub fn access_log(&self) -> Option<&AccessLog> {
        self.access_log.as_ref()
    }

    /// The metrics this gateway records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Serves one request from a client at `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<GatewayBody> {
        let start = Instant::now();
        // Built only when the access log is on: the request line as the
        // client sent it (cloning a `Uri` is a reference count).
        let logged = self
            .access_log
            .as_ref()
            .map(|_| (req.method().clone(), req.uri().clone()));
        let mut ctx = RequestCtx {
            slot: self.slots.unmatched_slot(),
            route: None,
            claims: None,
            upstream: None,
            answered: None,
            no_store: false,
        };
        let result = self.serve(req, &peer, &mut ctx).await;
        let (mut resp, outcome) = match result {
            Ok(resp) if ctx.slot == self.slots.endpoint_slot() => (resp, Outcome::Served),
            Ok(resp) => (resp, Outcome::Forwarded),
            Err(reject) => {
                reject.log(peer.addr);
                let outcome = outcome_of(&reject);
                (reject.into_response(), outcome)
            }
        };
        if ctx.no_store {
            resp.headers_mut().insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-store"),
            );
        }
        let elapsed = ctx
            .answered
            .unwrap_or_else(Instant::now)
            .duration_since(start);
        self.slots.record(ctx.slot, outcome, elapsed);
        self.slots.record_status(ctx.slot, resp.status().as_u16());
        match (&self.access_log, logged) {
            (Some(log), Some((method, uri))) => {
                let pending = log.record(
                    Entry {
                        peer: peer.addr,
                        method,
                        uri,
                        status: resp.status().as_u16(),
                        route: ctx.route,
                        outcome,
                        bytes: 0,
                        upstream: ctx.upstream,
                        total: Default::default(),
                        claims: ctx.claims,
                    },
                    start,
                );
                resp.map(|body| body.log_on_end(pending))
            }
            _ => resp,
        }
    }

    async fn serve(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
        ctx: &mut RequestCtx,
    ) -> Result<Response<GatewayBody>, Reject> {
        check_header_size(&req, self.max_header_bytes)?;
        // Phase: one view. A normalised path for routing and the upstream,
        // so `/public/..%2fapi/x` or `//api/x` can neither dodge a route's
        // auth nor reach an upstream that reads it as another route; one
        // `Host`; no header name an upstream could read as another.
        view::check_host(&req)?;
        if let Some(normalized) = view::normalize_uri(req.uri())? {
            *req.uri_mut() = normalized;
        }
        view::underscores(req.headers_mut(), self.underscores)?;
        // The gateway's own endpoints come before routes.
        if let Some(endpoints) = &self.endpoints {
            if let Some(endpoint) = endpoints.find(req.uri().path()) {
                ctx.slot = self.slots.endpoint_slot();
                ctx.no_store = endpoint.no_store();
                self.store_gate()?;
                // Boxed: endpoint futures (a durable write, a Redis round
                // trip) are large and would enlarge every request's future.
                let serve = Box::pin(endpoints.serve(endpoint, req));
                return tokio::time::timeout(self.request_timeout, serve)
                    .await
                    .map_err(|_| Reject::RequestTimeout)?;
            }
        }
        // Phase: route.
        let route = self.routes.find(req.uri().path()).ok_or(Reject::NoRoute)?;
        ctx.slot = route.index;
        ctx.route = Some(route.label.clone());
        // Phases: extract -> verify -> revocation -> scopes.
        let claims = match self.authenticate(&req, route).await? {
            Some((claims, used, present)) => {
                // Only the verified credential reaches the upstream: the
                // same token in another source (a cookie, a parameter) goes.
                if present != 1 << used {
                    if let Some(auth) = &self.auth {
                        let uri = req.uri().clone();
                        let stripped =
                            auth.strip_unused_sources(used, present, req.headers_mut(), &uri)?;
                        if let Some(uri) = stripped {
                            *req.uri_mut() = uri;
                        }
                    }
                }
                Some(claims)
            }
            None => None,
        };
        if self.access_log.is_some() {
            ctx.claims.clone_from(&claims);
        }
        // Client-sent claim headers never reach an upstream, on any route.
        let headers = req.headers_mut();
        for name in self.claim_headers.iter() {
            headers.remove(name);
        }
        if route.config.auth != AuthMode::None && !route.config.pass_authorization {
            headers.remove(AUTHORIZATION);
        }
        // The verified claims are set by the proxy after it has removed
        // hop-by-hop headers, so a client's `Connection: x-auth-subject`
        // cannot strip them.
        let mut claim_values = Vec::new();
        if let Some(claims) = &claims {
            claim_values.reserve(route.config.forward_claims.len());
            for (claim, header) in &route.config.forward_claims {
                if let Some(value) = claims.header_value(claim) {
                    claim_values.push((header.clone(), value));
                }
            }
        }
        // Phase: forward. The upstream's latency is for the access log
        // only: two clock reads a request saved when it is off.
        let sent = self.access_log.as_ref().map(|_| Instant::now());
        let resp = self.proxy.forward(req, route, peer, claim_values).await;
        if let Some(sent) = sent {
            let now = Instant::now();
            ctx.upstream = Some(now.duration_since(sent));
            ctx.answered = Some(now);
        }
        resp
    }

    /// Extract, verify, check revocation, authorize scopes. `Ok(None)`: an
    /// open route, or an optional one without a token. With the claims come
    /// the credential's source and every source that held it.
    async fn authenticate(
        &self,
        req: &Request<Incoming>,
        route: &Route,
    ) -> Result<Option<(Arc<Claims>, usize, u16)>, Reject> {
        let mode = route.config.auth;
        if mode == AuthMode::None {
            return Ok(None);
        }
        let Some(auth) = &self.auth else {
            // Config validation refuses auth routes without [jwt].
            return Err(Reject::Internal);
        };
        let Some(credential) = auth.credential(req.headers(), req.uri())? else {
            return match mode {
                AuthMode::Required => Err(Reject::MissingToken),
                AuthMode::Optional | AuthMode::None => Ok(None),
            };
        };
        self.store_gate()?;
        let claims = auth.verify(&credential.token).await?;
        if self.revocations.check(&claims) {
            return Err(Reject::Revoked);
        }
        auth.still_unexpired(&claims)?;
        if !claims.has_scopes(&route.config.scopes) {
            return Err(Reject::InsufficientScope(route.scope_hint.clone()));
        }
        Ok(Some((claims, credential.source, credential.present)))
    }

    /// `on_store_down = "deny"`: while the shared store is unreachable,
    /// catching up or stale, authenticated requests get 503 instead of
    /// answers from a possibly stale blocklist. `"allow"` serves from memory
    /// only once it has caught up since start; before that it denies too.
    fn store_gate(&self) -> Result<(), Reject> {
        let health = self.revocations.health();
        if !health.is_ok() && (self.on_store_down == OnStoreDown::Deny || !health.synced_once()) {
            self.metrics
                .incr(crate::telemetry::metrics::Counter::StoreDownDenied);
            return Err(Reject::StoreUnavailable);
        }
        Ok(())
    }
}

/// 431 when the request line plus headers exceed the configured size. hyper
/// enforces a hard cap on its read buffer too; this check makes the limit
/// exact and the same for HTTP/1 and HTTP/2.
fn check_header_size<B>(req: &Request<B>, max: usize) -> Result<(), Reject> {
    // "METHOD SP target SP HTTP/1.1 CRLF", then "name: value CRLF" per header.
    let mut size = req.method().as_str().len()
        + 1
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + 11;
    for (name, value) in req.headers() {
        size += name.as_str().len() + 2 + value.len() + 2;
        if size > max {
            return Err(Reject::HeaderTooLarge);
        }
    }
    if size > max {
        return Err(Reject::HeaderTooLarge);
    }
    Ok(())
}

fn outcome_of(reject: &Reject) -> Outcome {
    match reject {
        Reject::NoRoute => Outcome::NotFound,
        Reject::HeaderTooLarge => Outcome::HeaderTooLarge,
        Reject::InvalidRequest(_) | Reject::BadBody(_) => Outcome::BadRequest,
        Reject::MissingToken => Outcome::MissingToken,
        Reject::InvalidToken(_) => Outcome::InvalidToken,
        Reject::Revoked => Outcome::Revoked,
        Reject::InsufficientScope(_) => Outcome::Forbidden,
        Reject::UpstreamUnreachable => Outcome::UpstreamError,
        Reject::UpstreamTimeout => Outcome::UpstreamTimeout,
        Reject::StoreUnavailable | Reject::StoreFull => Outcome::Unavailable,
        Reject::MethodNotAllowed(_)
        | Reject::AdminUnauthorized
        | Reject::NotFound
        | Reject::RequestTimeout
        | Reject::Internal => Outcome::Other,
    }
}

impl crate::server::Handler for Gateway {
    async fn call(&self, req: Request<Incoming>, peer: Peer) -> Response<GatewayBody> {
        self.handle(req, peer).await
    }
}
