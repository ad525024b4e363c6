//! Every per-request failure, and the one place it becomes an HTTP response.
//!
//! There is no catch-all arm: a new [`Reject`] variant does not compile until
//! it is given a status, an error code and a cause.

use crate::body::GatewayBody;
use crate::revocation::StoreError;
use crate::telemetry::ratelimit::RateLimit;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

impl From<StoreError> for Reject {
    /// A store failure as the answer to the request that asked for the
    /// write. Not logged here: the store logged the fault once.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full => Reject::StoreFull,
            StoreError::Invalid(why) => Reject::BadBody(why),
            StoreError::Unavailable(_) => Reject::StoreUnavailable,
        }
    }
}

/// Who caused a failure: decides the status class and the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The client sent something wrong: 4xx, logged at debug.
    Downstream,
    /// The upstream failed: 502/504, logged at warn.
    Upstream,
    /// We could not serve it: 5xx, logged at error.
    Internal,
    /// The revocation store refused or failed: 503, logged at debug here
    /// because the store logs the fault itself, once (a failed commit, the
    /// shared store going down, the blocklist full).
    Store,
}

/// Why a request was not forwarded (or not answered by an endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// No route and no endpoint matches the path.
    NoRoute,
    /// The endpoint exists but not for this method.
    MethodNotAllowed(&'static str),
    /// Request line plus headers exceed `server.max_header_bytes`.
    HeaderTooLarge,
    /// Malformed request (bad `Authorization`, missing form field...).
    InvalidRequest(&'static str),
    /// A body this endpoint cannot accept (too large, not JSON...).
    BadBody(&'static str),
    /// `auth = "required"` and no token was sent (RFC 6750: no error code).
    MissingToken,
    /// The token failed verification.
    InvalidToken(&'static str),
    /// The token verified but has been revoked.
    Revoked,
    /// The token lacks a scope; carries the route's required scopes.
    InsufficientScope(Arc<str>),
    /// Admin API: missing or wrong admin token.
    AdminUnauthorized,
    /// Admin API: the entry does not exist.
    NotFound,
    /// Could not connect to the upstream, or it broke the connection.
    UpstreamUnreachable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// A request the gateway serves itself took longer than
    /// `server.request_timeout` (e.g. a body trickled in).
    RequestTimeout,
    /// The revocation store cannot be trusted or written right now.
    StoreUnavailable,
    /// The blocklist is at `revocation.capacity`.
    StoreFull,
    /// A bug or resource failure on our side.
    Internal,
}

impl Reject {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Reject::NoRoute | Reject::NotFound => StatusCode::NOT_FOUND,
            Reject::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Reject::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reject::InvalidRequest(_) | Reject::BadBody(_) => StatusCode::BAD_REQUEST,
            Reject::MissingToken
            | Reject::InvalidToken(_)
            | Reject::Revoked
            | Reject::AdminUnauthorized => StatusCode::UNAUTHORIZED,
            Reject::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Reject::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Reject::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reject::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Reject::StoreUnavailable | Reject::StoreFull => StatusCode::SERVICE_UNAVAILABLE,
            Reject::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::NoRoute | Reject::NotFound => "not_found",
            Reject::MethodNotAllowed(_) => "method_not_allowed",
            Reject::HeaderTooLarge => "request_header_fields_too_large",
            Reject::InvalidRequest(_) | Reject::BadBody(_) => "invalid_request",
            Reject::MissingToken | Reject::AdminUnauthorized => "unauthorized",
            Reject::InvalidToken(_) | Reject::Revoked => "invalid_token",
            Reject::InsufficientScope(_) => "insufficient_scope",
            Reject::UpstreamUnreachable => "bad_gateway",
            Reject::UpstreamTimeout => "gateway_timeout",
            Reject::RequestTimeout => "request_timeout",
            Reject::StoreUnavailable | Reject::StoreFull => "temporarily_unavailable",
            Reject::Internal => "server_error",
        }
    }

    /// The human `error_description`.
    pub fn description(&self) -> &str {
        match self {
            Reject::NoRoute => "no route matches this path",
            Reject::NotFound => "no such entry",
            Reject::MethodNotAllowed(_) => "method not allowed on this endpoint",
            Reject::HeaderTooLarge => "request header section too large",
            Reject::InvalidRequest(d) | Reject::BadBody(d) | Reject::InvalidToken(d) => d,
            Reject::MissingToken => "a bearer token is required",
            Reject::Revoked => "token revoked",
            Reject::InsufficientScope(_) => "the token lacks a required scope",
            Reject::AdminUnauthorized => "a valid admin token is required",
            Reject::UpstreamUnreachable => "the upstream could not be reached",
            Reject::UpstreamTimeout => "the upstream did not answer in time",
            Reject::RequestTimeout => "the request took too long",
            Reject::StoreUnavailable => "the revocation store is unavailable; retry shortly",
            Reject::StoreFull => "the revocation store is full; retry later",
            Reject::Internal => "internal error",
        }
    }

    /// Who caused it.
    pub fn cause(&self) -> Cause {
        match self {
            Reject::NoRoute
            | Reject::NotFound
            | Reject::MethodNotAllowed(_)
            | Reject::HeaderTooLarge
            | Reject::InvalidRequest(_)
            | Reject::BadBody(_)
            | Reject::MissingToken
            | Reject::InvalidToken(_)
            | Reject::Revoked
            | Reject::InsufficientScope(_)
            | Reject::AdminUnauthorized
            | Reject::RequestTimeout => Cause::Downstream,
            Reject::UpstreamUnreachable | Reject::UpstreamTimeout => Cause::Upstream,
            Reject::StoreUnavailable | Reject::StoreFull => Cause::Store,
            Reject::Internal => Cause::Internal,
        }
    }

    /// Logs the failure once, where it is handled: client faults at debug,
    /// upstream faults at warn, ours at error.
    pub(crate) fn log(&self, peer: SocketAddr) {
        let status = self.status().as_u16();
        match self.cause() {
            Cause::Downstream => {
                tracing::debug!(%peer, status, error = self.code(), "rejected")
            }
            // The proxy logs why an upstream was unreachable (rate-limited);
            // an outage fails every request, so one line here would be one
            // per request.
            Cause::Upstream if matches!(self, Reject::UpstreamUnreachable) => {
                tracing::debug!(%peer, status, error = self.code(), "upstream failure")
            }
            Cause::Upstream => {
                static UPSTREAM_FAILURE: RateLimit = RateLimit::new(1000);
                if let Some(suppressed) = UPSTREAM_FAILURE.check() {
                    tracing::warn!(%peer, status, error = self.code(), suppressed, "upstream failure")
                }
            }
            Cause::Internal => {
                tracing::error!(%peer, status, error = self.code(), "request failed")
            }
            Cause::Store => {
                tracing::debug!(%peer, status, error = self.code(), "revocation store refused")
            }
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3) for 400/401/403 on
    /// token-protected resources.
    fn www_authenticate(&self) -> Option<String> {
        let realm = "Bearer realm=\"revgate\"";
        match self {
            Reject::MissingToken | Reject::AdminUnauthorized => Some(realm.to_string()),
            Reject::InvalidRequest(_)
            | Reject::BadBody(_)
            | Reject::InvalidToken(_)
            | Reject::Revoked => Some(format!(
                "{realm}, error=\"{}\", error_description=\"{}\"",
                self.code(),
                self.description()
            )),
            Reject::InsufficientScope(scope) => Some(format!(
                "{realm}, error=\"insufficient_scope\", error_description=\"{}\", scope=\"{scope}\"",
                self.description()
            )),
            Reject::NoRoute
            | Reject::NotFound
            | Reject::MethodNotAllowed(_)
            | Reject::HeaderTooLarge
            | Reject::RequestTimeout
            | Reject::UpstreamUnreachable
            | Reject::UpstreamTimeout
            | Reject::StoreUnavailable
            | Reject::StoreFull
            | Reject::Internal => None,
        }
    }

    /// The response sent to the client.
    pub fn into_response(self) -> Response<GatewayBody> {
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.description(),
        })
        .to_string();
        let mut resp = Response::new(GatewayBody::full(body));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(v) = self.www_authenticate() {
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(WWW_AUTHENTICATE, v);
            }
        }
        match &self {
            Reject::StoreUnavailable | Reject::StoreFull => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Reject::MethodNotAllowed(allow) => {
                headers.insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        resp
    }
}

/// A JSON response with status 200 (or another success status).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_token_carries_rfc6750_header() {
        let resp = Reject::Revoked.into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let h = resp.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap_or_default();
        assert_eq!(
            h,
            "Bearer realm=\"revgate\", error=\"invalid_token\", error_description=\"token revoked\""
        );
    }

    #[test]
    fn missing_token_has_no_error_code() {
        let resp = Reject::MissingToken.into_response();
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer realm=\"revgate\"");
    }

    #[test]
    fn scope_is_named() {
        let resp = Reject::InsufficientScope("orders:read".into()).into_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let h = resp.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap_or_default();
        assert!(h.contains("scope=\"orders:read\""), "{h}");
    }

    #[test]
    fn store_errors_ask_to_retry() {
        let resp = Reject::StoreUnavailable.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(RETRY_AFTER));
    }
}
