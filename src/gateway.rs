//! The request path, as named phases over one request:
//! route -> extract -> verify -> check revocation -> authorize scopes ->
//! forward -> log.

use crate::body::GatewayBody;
use crate::config::{AuthMode, Config};
use crate::proxy::Proxy;
use crate::response::{Cause, Reject};
use crate::routes::{Route, RouteTable};
use crate::telemetry::{Metrics, Outcome};
use hyper::body::Incoming;
use hyper::header::HeaderName;
use hyper::{Request, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Everything the request path needs, built once at start.
pub struct Gateway {
    routes: RouteTable,
    proxy: Proxy,
    /// Every header named in any route's `forward_claims`.
    claim_headers: Box<[HeaderName]>,
    max_header_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Gateway {
    /// Builds the gateway state from a validated config.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Gateway {
            routes: RouteTable::new(&config.routes),
            proxy: Proxy::new(&config.server),
            claim_headers: config.claim_headers().into_boxed_slice(),
            max_header_bytes: config.server.max_header_bytes,
            metrics,
        }
    }

    /// The metrics this gateway records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Serves one request from a client at `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<GatewayBody> {
        let start = Instant::now();
        let mut slot = self.metrics.unmatched_slot();
        let result = self.serve(req, peer, &mut slot).await;
        let (resp, outcome) = match result {
            Ok(resp) => (resp, Outcome::Forwarded),
            Err(reject) => {
                log_reject(&reject, peer);
                let outcome = outcome_of(&reject);
                (reject.into_response(), outcome)
            }
        };
        self.metrics.record(slot, outcome, start.elapsed());
        resp
    }

    async fn serve(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        slot: &mut usize,
    ) -> Result<Response<GatewayBody>, Reject> {
        check_header_size(&req, self.max_header_bytes)?;
        // Phase: route.
        let route = self.routes.find(req.uri().path()).ok_or(Reject::NoRoute)?;
        *slot = route.index;
        // Client-sent claim headers never reach an upstream, on any route.
        for name in self.claim_headers.iter() {
            req.headers_mut().remove(name);
        }
        self.authenticate(&mut req, route)?;
        // Phase: forward.
        self.proxy.forward(req, &route.config, peer.ip()).await
    }

    /// Phases extract -> verify -> revocation -> scopes, for routes that
    /// ask for a token.
    fn authenticate(&self, _req: &mut Request<Incoming>, route: &Route) -> Result<(), Reject> {
        match route.config.auth {
            AuthMode::None => Ok(()),
            AuthMode::Required | AuthMode::Optional => Err(Reject::Internal),
        }
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
        | Reject::Internal => Outcome::Other,
    }
}

/// Client faults at debug, upstream faults at warn, ours at error.
pub(crate) fn log_reject(reject: &Reject, peer: SocketAddr) {
    match reject.cause() {
        Cause::Downstream => {
            tracing::debug!(%peer, status = reject.status().as_u16(), error = reject.code(), "rejected")
        }
        Cause::Upstream => {
            tracing::warn!(%peer, status = reject.status().as_u16(), error = reject.code(), "upstream failure")
        }
        Cause::Internal => {
            tracing::error!(%peer, status = reject.status().as_u16(), error = reject.code(), "request failed")
        }
    }
}

impl crate::server::Handler for Gateway {
    async fn call(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<GatewayBody> {
        self.handle(req, peer).await
    }
}
