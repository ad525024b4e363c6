//! Forwarding to upstreams: pooled HTTP/1.1 connections, request and
//! response header rewriting, streaming bodies, WebSocket (upgrade) tunnels.

pub mod client_body;
pub mod headers;
pub mod pool;

use crate::body::GatewayBody;
use crate::config::{RouteConfig, ServerConfig};
use crate::response::Reject;
use crate::routes::Route;
use crate::server::Peer;
use crate::telemetry::ratelimit::RateLimit;
use bytes::{BufMut, BytesMut};
use client_body::{ClientBody, ClientBodyError};
use headers::{is_websocket, is_websocket_upgrade, set_forwarded, strip_hop_by_hop};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use pool::{Pool, PooledBody};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long connecting to an upstream may take before it counts as
/// unreachable (502). Loopback and LAN upstreams connect in well under this.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The upstream connection pools, one per upstream authority, shared by
/// the routes that name it.
pub struct Proxy {
    /// Indexed by route index (config order).
    pools: Box<[Arc<Pool>]>,
    /// `server.body_read_timeout`.
    body_read_timeout: Duration,
}

impl Proxy {
    /// Builds the pools once, at start.
    pub fn new(server: &ServerConfig, routes: &[RouteConfig]) -> Self {
        // One pool per upstream: scheme, authority and, for https, whom it
        // trusts (two routes naming the same host with different CAs do not
        // share connections).
        let mut by_upstream: HashMap<(&str, Option<Option<&std::path::Path>>), Arc<Pool>> =
            HashMap::new();
        let pools = routes
            .iter()
            .map(|r| {
                let upstream = &r.upstream;
                let trust = upstream.tls.as_ref().map(|t| t.ca_file.as_deref());
                by_upstream
                    .entry((upstream.authority.as_str(), trust))
                    .or_insert_with(|| {
                        Pool::new(
                            upstream.authority.clone(),
                            upstream.tls.clone(),
                            server.upstream_idle_per_host,
                            server.upstream_idle_timeout,
                        )
                    })
                    .clone()
            })
            .collect();
        Proxy {
            pools,
            body_read_timeout: server.body_read_timeout,
        }
    }

    /// Forwards `req` to the route's upstream and returns its response, with
    /// both bodies streaming. `req`'s headers must already be filtered of
    /// client-sent claim headers; `claim_headers` (from verified claims) are
    /// set after hop-by-hop headers are removed.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        route: &Route,
        peer: &Peer,
        claim_headers: Vec<(hyper::header::HeaderName, HeaderValue)>,
    ) -> Result<Response<GatewayBody>, Reject> {
        let pool = &self.pools[route.index];
        let route = &route.config;
        // Only WebSocket is tunnelled; any other Upgrade is stripped below.
        let upgrade = is_websocket_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        // The request's authority (absolute form, HTTP/2 :authority) or else
        // its Host becomes X-Forwarded-Host; the upstream gets its own Host,
        // as nginx does.
        let host = authority_value(req.uri());
        let host = match req.headers_mut().remove(header::HOST) {
            Some(h) if host.is_none() => Some(h),
            _ => host,
        };
        *req.uri_mut() = upstream_uri(route, req.uri())?;
        let multiplexed = req.version() == Version::HTTP_2;
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers, upgrade);
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        set_forwarded(headers, &peer.forwarded_for, peer.tls, host);
        headers.insert(header::HOST, pool.host().clone());
        for (name, value) in claim_headers {
            headers.insert(name, value);
        }

        let body_read_timeout = self.body_read_timeout;
        let req =
            req.map(|body| http_body_util::Either::Left(ClientBody::new(body, body_read_timeout)));
        // HTTP/2: let every stream that is ready in this turn of the event
        // loop get this far before any is written upstream. Each write that
        // wakes an upstream on the same core can hand it the CPU for that
        // one request; writing the turn's requests together wakes it about
        // once a turn (h2c 7-12% more requests/s). Over HTTP/1 the same
        // yield measured level-to-worse with a higher p99, so it is not
        // taken there (docs/benchmarks.md, "Batched forwarding").
        if multiplexed {
            tokio::task::yield_now().await;
        }
        let sent = tokio::time::timeout(route.timeout, pool.send(req)).await;
        let (mut resp, lease) = match sent {
            Err(_) => return Err(Reject::UpstreamTimeout),
            Ok(Err(e)) => {
                // The client's body failed first: its fault, not the
                // upstream's.
                match client_body::fault(&e) {
                    Some(ClientBodyError::Malformed(_)) => {
                        return Err(Reject::InvalidRequest("malformed request body"))
                    }
                    Some(ClientBodyError::Timeout) => return Err(Reject::RequestTimeout),
                    None => {}
                }
                // An upstream that is down fails every request: one line a
                // second, with the count of those not logged.
                static UPSTREAM_FAILED: RateLimit = RateLimit::new(1000);
                if let Some(suppressed) = UPSTREAM_FAILED.check() {
                    tracing::warn!(upstream = %pool.authority(), error = %e, suppressed, "upstream request failed");
                }
                return Err(Reject::UpstreamUnreachable);
            }
            Ok(Ok(resp)) => resp,
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The connection is the upgrade's now (or, for a request that
            // did not ask for one, done): it runs to its end on its own.
            lease.detach();
            // A 101 is only ever a WebSocket tunnel the client asked for; an
            // upstream switching to anything else (h2c) is a broken upstream.
            let websocket = resp
                .headers()
                .get(header::UPGRADE)
                .is_some_and(is_websocket);
            let Some(client_upgrade) = client_upgrade.filter(|_| websocket) else {
                tracing::warn!(upstream = %pool.authority(), "upstream switched protocols unasked; refused");
                return Err(Reject::UpstreamUnreachable);
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
            let (parts, _) = resp.into_parts();
            let mut out = Response::from_parts(parts, GatewayBody::empty());
            let h = out.headers_mut();
            let upgrade_to = h.remove(header::UPGRADE);
            strip_hop_by_hop(h, false);
            if let Some(u) = upgrade_to {
                h.insert(header::UPGRADE, u);
                h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            return Ok(out);
        }
        strip_hop_by_hop(resp.headers_mut(), false);
        Ok(resp.map(|body| GatewayBody::upstream(PooledBody::new(body, Some(lease)))))
    }
}

/// Copies bytes both ways between the upgraded client and upstream
/// connections until either side closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

fn authority_value(uri: &Uri) -> Option<HeaderValue> {
    uri.authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

/// The upstream request target, in origin form: upstream base path, then the
/// request path (with the route prefix removed when `strip_prefix`), then the
/// query.
pub fn upstream_uri(route: &RouteConfig, original: &Uri) -> Result<Uri, Reject> {
    let base = route.upstream.base_path.as_str();
    if base.is_empty() && !route.strip_prefix {
        // The common case: the target goes upstream as the client sent it
        // (a reference-counted copy, no allocation).
        if let Some(pq) = original.path_and_query() {
            if pq.path().starts_with('/') {
                return Ok(Uri::from(pq.clone()));
            }
        }
    }
    let path = original.path();
    let path = if route.strip_prefix {
        let prefix = route.prefix.trim_end_matches('/');
        path.strip_prefix(prefix).unwrap_or(path)
    } else {
        path
    };
    let query = original.query();
    let mut buf =
        BytesMut::with_capacity(base.len() + path.len() + 2 + query.map_or(0, |q| q.len() + 1));
    buf.put_slice(base.as_bytes());
    if !path.starts_with('/') {
        buf.put_u8(b'/');
    }
    buf.put_slice(path.as_bytes());
    if let Some(q) = query {
        buf.put_u8(b'?');
        buf.put_slice(q.as_bytes());
    }
    let pq = PathAndQuery::from_maybe_shared(buf.freeze())
        .map_err(|_| Reject::InvalidRequest("invalid request path"))?;
    Ok(Uri::from(pq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn route(prefix: &str, upstream: &str, strip: bool) -> RouteConfig {
        let toml = format!(
            "[[route]]\nprefix = {prefix:?}\nupstream = {upstream:?}\nauth = \"none\"\nstrip_prefix = {strip}\n"
        );
        let mut cfg = Config::from_toml(&toml, "test").expect("valid");
        cfg.routes.remove(0)
    }

    fn uri(s: &str) -> Uri {
        s.parse().expect("uri")
    }

    #[test]
    fn keeps_path_and_query() {
        let r = route("/api/", "http://127.0.0.1:9000", false);
        assert_eq!(
            upstream_uri(&r, &uri("/api/orders?x=1")).expect("ok"),
            "/api/orders?x=1"
        );
    }

    #[test]
    fn strips_prefix_keeping_a_leading_slash() {
        let r = route("/api/", "http://127.0.0.1:9000", true);
        assert_eq!(
            upstream_uri(&r, &uri("/api/orders")).expect("ok"),
            "/orders"
        );
        assert_eq!(upstream_uri(&r, &uri("/api/")).expect("ok"), "/");
        let r = route("/svc", "http://127.0.0.1:9000/base/", true);
        assert_eq!(upstream_uri(&r, &uri("/svc?q")).expect("ok"), "/base/?q");
        assert_eq!(upstream_uri(&r, &uri("/svc/a")).expect("ok"), "/base/a");
    }
}
