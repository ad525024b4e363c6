//! Endpoints the gateway serves itself on the main listener: logout,
//! logout-all and RFC 7009 revocation, and the identity provider's
//! back-channel logout and security events (served by [`crate::idp`]).
//! Thin HTTP adapters over the verbs of [`Revocations`], which own the
//! policy (keys, expiries, logging).

use crate::auth::{Authenticator, Claims};
use crate::body::GatewayBody;
use crate::config::{EndpointsConfig, LogoutRevokes};
use crate::idp::Idp;
use crate::response::{self, Reject};
use crate::revocation::{token_fingerprint, Revocations, Via};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// Largest form body accepted by the revoke endpoint. A JWT is a few KiB at
/// most; anything larger is not a revocation request.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Which endpoint a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Logout,
    LogoutAll,
    Revoke,
    /// OpenID Connect Back-Channel Logout.
    BackchannelLogout,
    /// RFC 8935 push of Security Event Tokens.
    SecurityEvents,
}

impl Endpoint {
    /// Whether every answer, errors included, carries
    /// `Cache-Control: no-store`.
    pub fn no_store(self) -> bool {
        matches!(self, Endpoint::BackchannelLogout | Endpoint::SecurityEvents)
    }
}

/// The gateway's own endpoints.
pub struct Endpoints {
    paths: EndpointsConfig,
    auth: Arc<Authenticator>,
    revocations: Arc<Revocations>,
    /// The identity provider's endpoints, when configured.
    idp: Option<Arc<Idp>>,
}

/// The `token` of an RFC 7009 form. Missing or empty is a 400, and so is a
/// repeated one: which of two tokens was meant is not ours to guess.
pub fn revoke_form_token(body: &[u8]) -> Result<String, Reject> {
    let mut tokens = form_urlencoded::parse(body).filter(|(k, _)| k == "token");
    let token = tokens
        .next()
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
        .ok_or(Reject::BadBody("the token parameter is required"))?;
    if tokens.next().is_some() {
        return Err(Reject::BadBody("the token parameter is repeated"));
    }
    Ok(token)
}

impl Endpoints {
    /// Builds the endpoints from their configured paths.
    pub fn new(
        paths: EndpointsConfig,
        auth: Arc<Authenticator>,
        revocations: Arc<Revocations>,
        idp: Option<Arc<Idp>>,
    ) -> Self {
        Endpoints {
            paths,
            auth,
            revocations,
            idp,
        }
    }

    /// The endpoint at exactly this path, if any.
    pub fn find(&self, path: &str) -> Option<Endpoint> {
        if path == self.paths.logout {
            Some(Endpoint::Logout)
        } else if path == self.paths.logout_all {
            Some(Endpoint::LogoutAll)
        } else if path == self.paths.revoke {
            Some(Endpoint::Revoke)
        } else if self.idp.is_some() && self.paths.backchannel_logout.as_deref() == Some(path) {
            Some(Endpoint::BackchannelLogout)
        } else if self.idp.is_some() && self.paths.security_events.as_deref() == Some(path) {
            Some(Endpoint::SecurityEvents)
        } else {
            None
        }
    }

    /// Serves one endpoint request.
    pub async fn serve(
        &self,
        endpoint: Endpoint,
        req: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, Reject> {
        if req.method() != Method::POST {
            return Err(Reject::MethodNotAllowed("POST"));
        }
        match endpoint {
            Endpoint::Logout => self.logout(req).await,
            Endpoint::LogoutAll => self.logout_all(req).await,
            Endpoint::Revoke => self.revoke(req).await,
            Endpoint::BackchannelLogout => match &self.idp {
                Some(idp) => Ok(idp.backchannel_logout(req).await),
                None => Err(Reject::NoRoute),
            },
            Endpoint::SecurityEvents => match &self.idp {
                Some(idp) => Ok(idp.security_events(req).await),
                None => Err(Reject::NoRoute),
            },
        }
    }

    /// The caller's token, verified and not revoked (like any route).
    async fn caller(&self, req: &Request<Incoming>) -> Result<Arc<Claims>, Reject> {
        let token = self
            .auth
            .extract(req.headers(), req.uri())?
            .ok_or(Reject::MissingToken)?;
        let claims = self.auth.verify(&token).await?;
        if self.revocations.check(&claims) {
            return Err(Reject::Revoked);
        }
        self.auth.still_unexpired(&claims)?;
        Ok(claims)
    }

    /// Revokes the caller's token, or with `logout_revokes = "session"`
    /// and a `sid` in the token, its whole session.
    async fn logout(&self, req: Request<Incoming>) -> Result<Response<GatewayBody>, Reject> {
        let claims = self.caller(&req).await?;
        if let (LogoutRevokes::Session, Some(sid)) =
            (self.paths.logout_revokes, claims.sid.as_deref())
        {
            let expires_at = self.revocations.revoke_session(sid, Via::Logout).await?;
            return Ok(response::json(
                StatusCode::OK,
                &json!({ "revoked": true, "jti": claims.jti, "sid": sid, "expires_at": expires_at }),
            ));
        }
        let expires_at = self.revocations.revoke_token(&claims, Via::Logout).await?;
        Ok(revoked_answer(&claims, expires_at))
    }

    async fn logout_all(&self, req: Request<Incoming>) -> Result<Response<GatewayBody>, Reject> {
        let claims = self.caller(&req).await?;
        let sub = claims
            .sub
            .as_deref()
            .ok_or(Reject::InvalidToken("token has no sub claim"))?;
        let before = self.revocations.watermark_subject(sub, Via::Logout).await?;
        Ok(subject_revoked_answer(sub, before))
    }

    /// RFC 7009: always 200 (also for invalid or unknown tokens), 400 without
    /// `token`. Only a token whose signature verifies is recorded.
    async fn revoke(&self, req: Request<Incoming>) -> Result<Response<GatewayBody>, Reject> {
        let body = Limited::new(req.into_body(), MAX_FORM_BYTES)
            .collect()
            .await
            .map_err(|_| Reject::BadBody("body too large or unreadable"))?
            .to_bytes();
        let token = revoke_form_token(&body)?;
        match self.auth.verify(&token).await {
            Ok(claims) => {
                self.revocations.revoke_token(&claims, Via::Rfc7009).await?;
            }
            Err(_) => {
                tracing::debug!(token = %token_fingerprint(&token), "revoke: token does not verify; nothing recorded");
            }
        }
        let mut resp = Response::new(GatewayBody::empty());
        resp.headers_mut().insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-store"),
        );
        Ok(resp)
    }
}

/// The answer to a token revocation (logout, admin `{"token"}`).
pub(crate) fn revoked_answer(claims: &Claims, expires_at: u64) -> Response<GatewayBody> {
    response::json(
        StatusCode::OK,
        &json!({ "revoked": true, "jti": claims.jti, "expires_at": expires_at }),
    )
}

/// The answer to a logout-all (endpoint or admin `{"sub"}`).
pub(crate) fn subject_revoked_answer(sub: &str, before: u64) -> Response<GatewayBody> {
    response::json(
        StatusCode::OK,
        &json!({ "revoked": true, "sub": sub, "before": before }),
    )
}

/// The answer to a session revocation (admin `{"sid"}`).
pub(crate) fn session_revoked_answer(sid: &str, expires_at: u64) -> Response<GatewayBody> {
    response::json(
        StatusCode::OK,
        &json!({ "revoked": true, "sid": sid, "expires_at": expires_at }),
    )
}
