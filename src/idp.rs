//! Revocations pushed by the identity provider: OpenID Connect Back-Channel
//! Logout 1.0 (`endpoints.backchannel_logout`) and RFC 8935 push delivery
//! of Security Event Tokens (`endpoints.security_events`). Thin HTTP
//! adapters: the tokens are checked by pure functions, the revocations are
//! the verbs of [`Revocations`] (a session, a `jti`, a subject watermark),
//! each durable (and in Redis with the shared store) before the answer.
//!
//! | file | job |
//! |---|---|
//! | `idp/logout_token.rs` | a logout token's claim checks (section 2.6), one rejection per step |
//! | `idp/set.rs` | a SET's claim checks with their RFC 8935 error codes; CAEP/RISC events and subject formats mapped to revocations |
//! | `idp/replay.rs` | the bounded cache of `jti`s already acted on |
//!
//! Signatures are checked with the `[jwt]` keys (a `jwks_url` is refreshed
//! as for access tokens), or for SETs with the keys of `[events]` when a
//! separate events issuer is configured.
//!
//! What a logout token revokes: with a `sid` (with or without `sub`), that
//! session (every token carrying the `sid`); with only `sub`, every token
//! of the subject issued up to the logout token's `iat` (a logout-all
//! watermark at the logout's time, so that a late or replayed delivery
//! writes the same one), which is what the specification asks for a logout
//! of all the user's sessions.

mod logout_token;
mod replay;
mod set;

pub use logout_token::BACKCHANNEL_LOGOUT_EVENT;
pub use replay::{ReplayCache, REPLAY_CAPACITY};
pub use set::{
    CAEP_CREDENTIAL_CHANGE, CAEP_SESSION_REVOKED, RISC_ACCOUNT_DISABLED, RISC_CREDENTIAL_COMPROMISE,
};

use crate::auth::Authenticator;
use crate::body::GatewayBody;
use crate::config::{Config, ConfigError, Secret};
use crate::response::Reject;
use crate::revocation::{Clock, Policy, Revocations, StoreError, SystemClock, Via};
use crate::telemetry::metrics::{IdpEndpoint, IdpResult};
use crate::telemetry::Metrics;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use set::{Action, SetError};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Largest back-channel logout form: a logout token is well under 4 KiB.
pub const MAX_LOGOUT_FORM_BYTES: usize = 16 * 1024;
/// Largest SET body: a few events with their subjects.
pub const MAX_SET_BYTES: usize = 64 * 1024;

/// The media type of a pushed SET (RFC 8935 section 2).
const SECEVENT_JWT: &str = "application/secevent+jwt";

/// The two endpoints' state; built with each configuration.
pub struct Idp {
    /// The `[jwt]` keys: logout tokens, and SETs without `[events]` keys.
    jwt: Arc<Authenticator>,
    /// The keys of a separate events issuer.
    event_keys: Option<Arc<Authenticator>>,
    /// `jwt.issuer`.
    issuer: Option<String>,
    /// `jwt.backchannel_audience`.
    audience: String,
    /// `events.push_token`.
    push_token: Option<Secret>,
    policy: Policy,
    replay: Arc<ReplayCache>,
    revocations: Arc<Revocations>,
    metrics: Arc<Metrics>,
}

impl Idp {
    /// The endpoints' state when the config serves either of them (and so,
    /// per validation, has `[jwt]` and `jwt.backchannel_audience`); loads the
    /// `[events]` keys (a `jwks_url` is fetched now). `replay` outlives
    /// reloads.
    pub async fn new(
        config: &Config,
        jwt: Option<&Arc<Authenticator>>,
        replay: Arc<ReplayCache>,
        revocations: Arc<Revocations>,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Idp>>, ConfigError> {
        let eps = &config.endpoints;
        if eps.backchannel_logout.is_none() && eps.security_events.is_none() {
            return Ok(None);
        }
        let (Some(jwt), Some(jwt_cfg), Some(audience)) = (
            jwt,
            config.jwt.as_ref(),
            config.idp.backchannel_audience.clone(),
        ) else {
            return Err(ConfigError::invalid(
                "jwt.backchannel_audience",
                "the identity-provider endpoints need [jwt] and jwt.backchannel_audience",
            ));
        };
        let events = config.idp.events.as_ref();
        let event_keys = event_keys(config).await?;
        Ok(Some(Arc::new(Idp {
            jwt: Arc::clone(jwt),
            event_keys,
            issuer: jwt_cfg.issuer.clone(),
            audience,
            push_token: events.and_then(|e| e.push_token.clone()),
            policy: Policy::from_config(Some(jwt_cfg)),
            replay,
            revocations,
            metrics,
        })))
    }

    /// `POST endpoints.backchannel_logout`: 200 once the logout is durable,
    /// 400 `invalid_request` for anything that is not a valid, fresh logout
    /// token, 503 when the store cannot record it (the identity provider may
    /// retry). Every answer carries `Cache-Control: no-store`.
    pub async fn backchannel_logout(&self, req: Request<Incoming>) -> Response<GatewayBody> {
        let result = self.logout(req).await;
        let counted = match &result {
            Ok(()) => IdpResult::Accepted,
            Err(LogoutError::Invalid(_)) => IdpResult::Rejected,
            Err(LogoutError::Store(_)) => IdpResult::Unavailable,
        };
        self.metrics
            .idp_event(IdpEndpoint::BackchannelLogout, counted);
        let resp = match result {
            Ok(()) => Response::new(GatewayBody::empty()),
            Err(LogoutError::Invalid(why)) => {
                tracing::debug!(reason = why, "back-channel logout refused");
                json_error(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": "invalid_request", "error_description": why }),
                )
            }
            Err(LogoutError::Store(reject)) => reject.into_response(),
        };
        no_store(resp)
    }

    async fn logout(&self, req: Request<Incoming>) -> Result<(), LogoutError> {
        let body = read_body(req, MAX_LOGOUT_FORM_BYTES)
            .await
            .map_err(LogoutError::Invalid)?;
        let token = logout_form_token(&body).map_err(LogoutError::Invalid)?;
        let typ =
            header_typ(&token).map_err(|()| LogoutError::Invalid("malformed logout token"))?;
        let claims = self
            .jwt
            .verify_signature(&token)
            .await
            .map_err(|r| LogoutError::Invalid(reject_description(&r)))?;
        let issuer = self.issuer.as_deref().unwrap_or_default();
        let expected = logout_token::Expected {
            issuer,
            audience: &self.audience,
            policy: self.policy,
        };
        let now = SystemClock.now();
        let logout = logout_token::validate(typ.as_deref(), &claims, &expected, now)
            .map_err(LogoutError::Invalid)?;
        // Claimed before acting, in one step: of two concurrent deliveries
        // of the token only one acts.
        let until = self.policy.revocation_expiry(logout.exp);
        if !self.replay.claim(issuer, &logout.jti, until, now) {
            return Err(LogoutError::Invalid(
                "logout token replayed (its jti was seen before)",
            ));
        }
        let via = Via::BackchannelLogout;
        let recorded = match (&logout.sid, &logout.sub) {
            (Some(sid), _) => self.revocations.revoke_session(sid, via).await.map(drop),
            (None, Some(sub)) => self
                .revocations
                .watermark_subject_at(sub, logout.iat, via)
                .await
                .map(drop),
            (None, None) => Err(StoreError::Invalid("neither sub nor sid is present")),
        };
        if let Err(e) = recorded {
            // Not acted on: the identity provider's retry with the same
            // token must not be refused as a replay.
            self.replay.forget(issuer, &logout.jti);
            return Err(e.into());
        }
        tracing::debug!(jti = %logout.jti, "back-channel logout recorded");
        Ok(())
    }

    /// `POST endpoints.security_events` (RFC 8935): 202 once every
    /// revocation the SET asks for is durable (also for a SET already acted
    /// on, or one with nothing to act on); 400 `{"err", "description"}`
    /// otherwise; 503 when the store cannot record it.
    pub async fn security_events(&self, req: Request<Incoming>) -> Response<GatewayBody> {
        let result = self.push(req).await;
        let counted = match &result {
            Ok(r) => *r,
            Err(PushError::Invalid(_)) => IdpResult::Rejected,
            Err(PushError::Store(_)) => IdpResult::Unavailable,
        };
        self.metrics.idp_event(IdpEndpoint::SecurityEvents, counted);
        let resp = match result {
            Ok(_) => {
                let mut resp = Response::new(GatewayBody::empty());
                *resp.status_mut() = StatusCode::ACCEPTED;
                resp
            }
            Err(PushError::Invalid(e)) => {
                tracing::debug!(
                    err = e.code(),
                    reason = e.description(),
                    "security event refused"
                );
                json_error(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "err": e.code(), "description": e.description() }),
                )
            }
            Err(PushError::Store(reject)) => reject.into_response(),
        };
        no_store(resp)
    }

    async fn push(&self, req: Request<Incoming>) -> Result<IdpResult, PushError> {
        if let Some(expected) = &self.push_token {
            if !bearer_matches(&req, expected) {
                return Err(PushError::Invalid(SetError::AuthenticationFailed));
            }
        }
        if !is_secevent(&req) {
            return Err(PushError::Invalid(SetError::InvalidRequest(
                "Content-Type must be application/secevent+jwt",
            )));
        }
        let body = read_body(req, MAX_SET_BYTES)
            .await
            .map_err(|why| PushError::Invalid(SetError::InvalidRequest(why)))?;
        let token = std::str::from_utf8(body.trim_ascii())
            .map_err(|_| PushError::Invalid(SetError::InvalidRequest("the body is not a JWT")))?;
        let typ = header_typ(token)
            .map_err(|()| PushError::Invalid(SetError::InvalidRequest("the body is not a JWT")))?;
        let keys = self.event_keys.as_ref().unwrap_or(&self.jwt);
        let claims = keys.verify_signature(token).await.map_err(|r| {
            PushError::Invalid(if r == crate::auth::MALFORMED_TOKEN {
                SetError::InvalidRequest("the body is not a JWT")
            } else {
                SetError::InvalidKey(reject_description(&r))
            })
        })?;
        let token_issuer = self.issuer.as_deref();
        let issuer = match &self.event_keys {
            Some(k) => k.issuer().unwrap_or_default(),
            None => token_issuer.unwrap_or_default(),
        };
        let expected = set::Expected {
            issuer,
            token_issuer,
            audience: &self.audience,
            policy: self.policy,
        };
        let now = SystemClock.now();
        let event =
            set::validate(typ.as_deref(), &claims, &expected, now).map_err(PushError::Invalid)?;
        // Claimed before acting, in one step: of two concurrent deliveries
        // of the SET only one acts.
        if !self
            .replay
            .claim(issuer, &event.jti, event.remember_until, now)
        {
            tracing::debug!(jti = %event.jti, "security event already acted on");
            return Ok(IdpResult::Duplicate);
        }
        if let Err(e) = self.act(&event, now).await {
            // Not acted on (in full): the transmitter's retry must not be
            // acknowledged as a duplicate without acting.
            self.replay.forget(issuer, &event.jti);
            return Err(e);
        }
        if event.ignored > 0 {
            tracing::info!(
                jti = %event.jti,
                ignored = event.ignored,
                "security event: events with unknown types or unmappable subjects ignored"
            );
        }
        Ok(if event.actions.is_empty() {
            IdpResult::Ignored
        } else {
            IdpResult::Accepted
        })
    }

    /// Records every revocation a SET asks for, in order; stops at the
    /// first the store refuses.
    async fn act(&self, event: &set::SecurityEvent, now: u64) -> Result<(), PushError> {
        let via = Via::SecurityEvent;
        for action in &event.actions {
            let recorded = match action {
                Action::Subject(sub) => self
                    .revocations
                    .watermark_subject_at(sub, event.iat, via)
                    .await
                    .map(drop),
                Action::Jti(jti) => {
                    self.revocations
                        .revoke_jti(jti, self.policy.horizon(now), via)
                        .await
                }
                Action::Session(sid) => self.revocations.revoke_session(sid, via).await.map(drop),
            };
            recorded.map_err(PushError::from)?;
        }
        Ok(())
    }
}

/// The keys of a separate events issuer (`[events]`), loaded (a
/// `jwks_url` is fetched now); `None` without one. An unusable key is a
/// [`ConfigError`] naming its `events.*` key. Also used by `check-config`.
pub async fn event_keys(config: &Config) -> Result<Option<Arc<Authenticator>>, ConfigError> {
    let Some(keys) = config.idp.events.as_ref().and_then(|e| e.keys.as_ref()) else {
        return Ok(None);
    };
    Authenticator::new(keys)
        .await
        .map(Some)
        .map_err(|e| match e {
            ConfigError::Invalid { key, message } => ConfigError::Invalid {
                key: key.replacen("jwt.", "events.", 1),
                message,
            },
            other => other,
        })
}

/// Why a back-channel logout was not recorded.
enum LogoutError {
    /// 400 with this description.
    Invalid(&'static str),
    /// The store refused (503).
    Store(Reject),
}

impl From<StoreError> for LogoutError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(why) => LogoutError::Invalid(why),
            StoreError::Full | StoreError::Unavailable(_) => LogoutError::Store(e.into()),
        }
    }
}

/// Why a pushed SET was not acted on.
enum PushError {
    /// 400 with this RFC 8935 error.
    Invalid(SetError),
    /// The store refused (503).
    Store(Reject),
}

impl From<StoreError> for PushError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(why) => PushError::Invalid(SetError::InvalidRequest(why)),
            StoreError::Full | StoreError::Unavailable(_) => PushError::Store(e.into()),
        }
    }
}

/// The description of a signature-step rejection.
fn reject_description(r: &Reject) -> &'static str {
    match r {
        Reject::InvalidToken(d) => d,
        _ => "the token does not verify",
    }
}

/// Reads a body of at most `limit` bytes.
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<bytes::Bytes, &'static str> {
    Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|_| "body too large or unreadable")
}

/// The one `logout_token` of the form.
fn logout_form_token(body: &[u8]) -> Result<String, &'static str> {
    let mut tokens = form_urlencoded::parse(body).filter(|(k, _)| k == "logout_token");
    let token = tokens
        .next()
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
        .ok_or("the logout_token parameter is required")?;
    if tokens.next().is_some() {
        return Err("the logout_token parameter is repeated");
    }
    Ok(token)
}

/// The `typ` of a JWS's protected header (`None` when absent);
/// `Err` when the header is not base64url JSON or `typ` not a string.
fn header_typ(token: &str) -> Result<Option<String>, ()> {
    let header = token.split('.').next().ok_or(())?;
    let json = URL_SAFE_NO_PAD.decode(header).map_err(drop)?;
    let value: serde_json::Value = serde_json::from_slice(&json).map_err(drop)?;
    match value.get("typ") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(t)) => Ok(Some(t.clone())),
        Some(_) => Err(()),
    }
}

/// `Content-Type: application/secevent+jwt` (parameters ignored).
fn is_secevent<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(SECEVENT_JWT))
}

/// `Authorization: Bearer <expected>`, compared in constant time.
fn bearer_matches<B>(req: &Request<B>, expected: &Secret) -> bool {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return false;
    };
    let bytes = value.as_bytes();
    if bytes.len() < 7 || !bytes[..7].eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    bytes[7..].trim_ascii().ct_eq(expected.expose()).into()
}

fn json_error(status: StatusCode, body: serde_json::Value) -> Response<GatewayBody> {
    crate::response::json(status, &body)
}

fn no_store(mut resp: Response<GatewayBody>) -> Response<GatewayBody> {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_has_exactly_one_logout_token() {
        assert_eq!(logout_form_token(b"logout_token=a.b.c"), Ok("a.b.c".into()));
        assert!(logout_form_token(b"").is_err());
        assert!(logout_form_token(b"logout_token=").is_err());
        assert_eq!(
            logout_form_token(b"logout_token=a&logout_token=b"),
            Err("the logout_token parameter is repeated")
        );
    }

    #[test]
    fn typ_is_read_from_the_protected_header() {
        let h = |json: &str| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(json));
        assert_eq!(
            header_typ(&h(r#"{"alg":"RS256","typ":"logout+jwt"}"#)),
            Ok(Some("logout+jwt".into()))
        );
        assert_eq!(header_typ(&h(r#"{"alg":"RS256"}"#)), Ok(None));
        assert_eq!(header_typ(&h(r#"{"alg":"RS256","typ":1}"#)), Err(()));
        assert_eq!(header_typ("!!!.e30.sig"), Err(()));
    }
}
