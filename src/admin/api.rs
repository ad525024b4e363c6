//! The revocation admin API (`/admin/*`), behind the admin bearer token: a
//! thin HTTP adapter over the verbs of [`Revocations`].

use crate::auth::Authenticator;
use crate::body::GatewayBody;
use crate::config::Secret;
use crate::endpoints::{revoked_answer, session_revoked_answer, subject_revoked_answer};
use crate::response::{self, Reject};
use crate::revocation::{Revocations, Via};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Largest JSON body accepted by the admin API.
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The admin API's state.
pub struct AdminApi {
    token: Secret,
    auth: Option<Arc<Authenticator>>,
    revocations: Arc<Revocations>,
}

/// Body of `POST /admin/revocations`: exactly one form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeBody {
    jti: Option<String>,
    expires_at: Option<u64>,
    token: Option<String>,
    sub: Option<String>,
    sid: Option<String>,
}

/// Body of `POST /admin/introspect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IntrospectBody {
    token: String,
}

impl AdminApi {
    /// Builds the API; `token` is the admin bearer token.
    pub fn new(
        token: Secret,
        auth: Option<Arc<Authenticator>>,
        revocations: Arc<Revocations>,
    ) -> Self {
        AdminApi {
            token,
            auth,
            revocations,
        }
    }

    /// Constant-time check of `Authorization: Bearer <admin token>`.
    pub(crate) fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(value) = req.headers().get(AUTHORIZATION) else {
            return false;
        };
        let bytes = value.as_bytes();
        if bytes.len() < 7 || !bytes[..7].eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let presented = bytes[7..].trim_ascii();
        presented.ct_eq(self.token.expose()).into()
    }

    /// Serves `/admin/...`.
    pub async fn serve(&self, req: Request<Incoming>) -> Result<Response<GatewayBody>, Reject> {
        if !self.authorized(&req) {
            return Err(Reject::AdminUnauthorized);
        }
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (method, path.as_str()) {
            (Method::POST, "/admin/revocations") => self.revoke(req).await,
            (Method::POST, "/admin/introspect") => self.introspect(req).await,
            (m, p) if p.starts_with("/admin/revocations/") => {
                let raw = &p["/admin/revocations/".len()..];
                let jti = percent_decode(raw).ok_or(Reject::InvalidRequest("bad jti in path"))?;
                if jti.is_empty() {
                    return Err(Reject::NotFound);
                }
                match m {
                    Method::GET | Method::HEAD => match self.revocations.jti_expiry(&jti) {
                        Some(expires_at) => Ok(response::json(
                            StatusCode::OK,
                            &json!({ "jti": jti, "expires_at": expires_at }),
                        )),
                        None => Err(Reject::NotFound),
                    },
                    Method::DELETE => {
                        if self.revocations.lift_jti(&jti, Via::Admin).await? {
                            let mut resp = Response::new(GatewayBody::empty());
                            *resp.status_mut() = StatusCode::NO_CONTENT;
                            Ok(resp)
                        } else {
                            Err(Reject::NotFound)
                        }
                    }
                    _ => Err(Reject::MethodNotAllowed("GET, HEAD, DELETE")),
                }
            }
            (_, "/admin/revocations") | (_, "/admin/introspect") => {
                Err(Reject::MethodNotAllowed("POST"))
            }
            _ => Err(Reject::NotFound),
        }
    }

    async fn revoke(&self, req: Request<Incoming>) -> Result<Response<GatewayBody>, Reject> {
        let body: RevokeBody = read_json(req).await?;
        match body {
            RevokeBody {
                jti: Some(jti),
                expires_at: Some(expires_at),
                token: None,
                sub: None,
                sid: None,
            } => {
                self.revocations
                    .revoke_jti(&jti, expires_at, Via::Admin)
                    .await?;
                Ok(response::json(
                    StatusCode::OK,
                    &json!({ "revoked": true, "jti": jti, "expires_at": expires_at }),
                ))
            }
            RevokeBody {
                token: Some(token),
                jti: None,
                expires_at: None,
                sub: None,
                sid: None,
            } => {
                let auth = self.auth.as_ref().ok_or(Reject::BadBody(
                    "no [jwt] section: tokens cannot be verified",
                ))?;
                let claims = auth
                    .verify(&token)
                    .await
                    .map_err(|_| Reject::BadBody("the token does not verify"))?;
                let expires_at = self.revocations.revoke_token(&claims, Via::Admin).await?;
                Ok(revoked_answer(&claims, expires_at))
            }
            RevokeBody {
                sub: Some(sub),
                jti: None,
                expires_at: None,
                token: None,
                sid: None,
            } => {
                let before = self.revocations.watermark_subject(&sub, Via::Admin).await?;
                Ok(subject_revoked_answer(&sub, before))
            }
            RevokeBody {
                sid: Some(sid),
                jti: None,
                expires_at: None,
                token: None,
                sub: None,
            } => {
                let expires_at = self.revocations.revoke_session(&sid, Via::Admin).await?;
                Ok(session_revoked_answer(&sid, expires_at))
            }
            _ => Err(Reject::BadBody(
                "send exactly one of {\"jti\", \"expires_at\"}, {\"token\"}, {\"sub\"} or {\"sid\"}",
            )),
        }
    }

    async fn introspect(&self, req: Request<Incoming>) -> Result<Response<GatewayBody>, Reject> {
        let body: IntrospectBody = read_json(req).await?;
        let auth = self.auth.as_ref().ok_or(Reject::BadBody(
            "no [jwt] section: tokens cannot be verified",
        ))?;
        let answer = match auth.verify(&body.token).await {
            Ok(claims) => {
                let revoked = self.revocations.check(&claims);
                json!({
                    "active": !revoked,
                    "sub": claims.sub,
                    "exp": claims.exp,
                    "jti": claims.jti,
                    "revoked": revoked,
                })
            }
            Err(_) => json!({ "active": false, "revoked": false }),
        };
        Ok(response::json(StatusCode::OK, &answer))
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Reject> {
    let bytes = Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|_| Reject::BadBody("body too large or unreadable"))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|_| Reject::BadBody("body is not the expected JSON"))
}

/// Decodes %XX escapes of a path segment; `None` on a bad escape or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_path_segments() {
        assert_eq!(percent_decode("abc").as_deref(), Some("abc"));
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
