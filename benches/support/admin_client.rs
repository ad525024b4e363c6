//! Setup through the gateway's admin API: revocations are made
//! with `POST /admin/revocations`, exactly as an operator would.
//!
//! The 1M pre-load goes straight into the blocklist instead (see
//! `scenarios.rs`): a million HTTP calls would only slow the setup.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Revokes one `jti` until `expires_at` (UNIX seconds).
pub async fn revoke(
    admin: SocketAddr,
    token: &str,
    jti: &str,
    expires_at: u64,
) -> Result<(), String> {
    let mut conn = AdminConn::open(admin, token).await?;
    conn.revoke(jti, expires_at).await
}

/// One keep-alive connection to the admin listener.
struct AdminConn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: HeaderValue,
    auth: HeaderValue,
}

impl AdminConn {
    async fn open(admin: SocketAddr, token: &str) -> Result<AdminConn, String> {
        let stream = TcpStream::connect(admin)
            .await
            .map_err(|e| format!("admin {admin}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("admin {admin}: {e}"))?;
        tokio::spawn(conn);
        Ok(AdminConn {
            sender,
            host: HeaderValue::from_str(&admin.to_string()).map_err(|e| e.to_string())?,
            auth: HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?,
        })
    }

    async fn revoke(&mut self, jti: &str, expires_at: u64) -> Result<(), String> {
        let body = serde_json::json!({ "jti": jti, "expires_at": expires_at }).to_string();
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = hyper::Uri::from_static("/admin/revocations");
        let headers = req.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(AUTHORIZATION, self.auth.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.sender
            .ready()
            .await
            .map_err(|e| format!("admin connection: {e}"))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("POST /admin/revocations: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("POST /admin/revocations: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!(
                "POST /admin/revocations answered {status}: {}",
                text.trim()
            ));
        }
        Ok(())
    }
}
