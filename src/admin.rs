//! The admin listener: health, readiness, Prometheus metrics, and the
//! revocation admin API.

pub(crate) mod api;

pub use api::AdminApi;

use crate::body::GatewayBody;
use crate::reload::ReloadHandle;
use crate::response::{self, Reject};
use crate::revocation::StoreHealth;
use crate::server::Handler;
use crate::server::Peer;
use crate::telemetry::Metrics;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// The admin listener's handler.
pub struct Admin {
    metrics: Arc<Metrics>,
    /// The revocation store's health, for `/readyz`.
    store: Arc<StoreHealth>,
    /// `None` when no admin token is configured: `/admin/*` answers 404.
    api: Option<AdminApi>,
    /// `None` when the configuration came from no file.
    reload: Option<ReloadHandle>,
    /// `server.request_timeout`: bounds each admin request, body included,
    /// so a trickled body cannot hold one of the listener's few
    /// connections.
    request_timeout: std::time::Duration,
}

impl Admin {
    /// Builds the admin handler; each request gets `request_timeout`.
    pub fn new(
        metrics: Arc<Metrics>,
        store: Arc<StoreHealth>,
        api: Option<AdminApi>,
        reload: Option<ReloadHandle>,
        request_timeout: std::time::Duration,
    ) -> Self {
        Admin {
            metrics,
            store,
            api,
            reload,
            request_timeout,
        }
    }

    /// `POST /admin/reload`: 200 `{"reloaded": true}`, or 409 naming the
    /// key when the new configuration is refused (the old one stays).
    async fn reload(
        &self,
        api: &AdminApi,
        req: &Request<Incoming>,
    ) -> Result<Response<GatewayBody>, Reject> {
        if !api.authorized(req) {
            return Err(Reject::AdminUnauthorized);
        }
        if req.method() != Method::POST {
            return Err(Reject::MethodNotAllowed("POST"));
        }
        let Some(handle) = &self.reload else {
            return Ok(response::json(
                StatusCode::CONFLICT,
                &json!({"error": "this gateway was not started from a config file", "key": ""}),
            ));
        };
        Ok(match handle.reload().await {
            Ok(()) => response::json(StatusCode::OK, &json!({"reloaded": true})),
            Err(e) => response::json(
                StatusCode::CONFLICT,
                &json!({"error": e.to_string(), "key": e.key()}),
            ),
        })
    }

    async fn serve(&self, req: Request<Incoming>) -> Result<Response<GatewayBody>, Reject> {
        let path = req.uri().path();
        match path {
            "/healthz" => only_get(&req).map(|_| text(StatusCode::OK, "ok\n")),
            "/readyz" => only_get(&req).map(|_| {
                if self.store.is_ready() {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "revocation store unavailable\n",
                    )
                }
            }),
            "/metrics" => only_get(&req).map(|_| {
                let mut resp = Response::new(GatewayBody::full(self.metrics.render()));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }),
            "/admin/reload" => match &self.api {
                Some(api) => self.reload(api, &req).await,
                None => Err(Reject::NotFound),
            },
            p if p.starts_with("/admin/") => match &self.api {
                Some(api) => api.serve(req).await,
                None => Err(Reject::NotFound),
            },
            _ => Err(Reject::NotFound),
        }
    }
}

impl Handler for Admin {
    async fn call(&self, req: Request<Incoming>, peer: Peer) -> Response<GatewayBody> {
        let served = tokio::time::timeout(self.request_timeout, self.serve(req)).await;
        match served.unwrap_or(Err(Reject::RequestTimeout)) {
            Ok(resp) => resp,
            Err(reject) => {
                reject.log(peer.addr);
                reject.into_response()
            }
        }
    }
}

fn only_get<B>(req: &Request<B>) -> Result<(), Reject> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        Ok(())
    } else {
        Err(Reject::MethodNotAllowed("GET, HEAD"))
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
