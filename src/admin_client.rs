//! `revgate revoke`: an operator's client for the admin API.

use crate::config::Config;
use crate::revocation::{Clock, Policy, SystemClock};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// What to revoke.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// A `jti`, until `expires_at` (UNIX seconds; default: until every token
    /// acceptable now has expired, [`Policy::horizon`]).
    Jti {
        jti: String,
        expires_at: Option<u64>,
    },
    /// A whole token (it must verify).
    Token(String),
    /// Every token of a subject issued up to now.
    Sub(String),
    /// Every token of an identity-provider session.
    Sid(String),
}

/// Failure of the admin client.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("no [admin] section in the config: the admin API is not enabled")]
    NoAdmin,
    #[error("no admin token configured (admin.token, token_file or token_env)")]
    NoToken,
    #[error("bad admin URL {0:?}")]
    BadUrl(String),
    #[error("admin API request failed: {0}")]
    Request(String),
    #[error("admin API answered {status}: {body}")]
    Status { status: u16, body: String },
}

/// Sends the revocation to the admin API and returns its JSON answer.
pub async fn revoke(
    config: &Config,
    admin_url: Option<&str>,
    target: RevokeTarget,
) -> Result<String, AdminClientError> {
    let admin = config.admin.as_ref().ok_or(AdminClientError::NoAdmin)?;
    let token = admin.token.as_ref().ok_or(AdminClientError::NoToken)?;
    let base = admin_url
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://{}", admin.listen));
    let body = match target {
        RevokeTarget::Jti { jti, expires_at } => {
            // By default, until every token acceptable now is refused as
            // expired anyway.
            let expires_at = expires_at.unwrap_or_else(|| {
                Policy::from_config(config.jwt.as_ref()).horizon(SystemClock.now())
            });
            serde_json::json!({ "jti": jti, "expires_at": expires_at })
        }
        RevokeTarget::Token(t) => serde_json::json!({ "token": t }),
        RevokeTarget::Sub(s) => serde_json::json!({ "sub": s }),
        RevokeTarget::Sid(s) => serde_json::json!({ "sid": s }),
    };
    let url = format!("{base}/admin/revocations");
    let mut auth = b"Bearer ".to_vec();
    auth.extend_from_slice(token.expose());
    let req = Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header(AUTHORIZATION, auth)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|_| AdminClientError::BadUrl(url.clone()))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| AdminClientError::Request("timed out".into()))?
        .map_err(|e| AdminClientError::Request(e.to_string()))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| AdminClientError::Request(e.to_string()))?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status.is_success() {
        Ok(text)
    } else {
        Err(AdminClientError::Status {
            status: status.as_u16(),
            body: text,
        })
    }
}
