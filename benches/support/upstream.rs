//! The bench upstream: HTTP/1.1 with keep-alive, answering every request
//! with 200 and a small fixed body, doing as little work as it can (the role
//! nginx's `return 200` plays in the published comparison).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

/// The body of every upstream answer.
pub const BODY: &[u8] = b"ok\n";

/// Accepts and serves connections on `listener` until its runtime stops.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                Ok::<_, Infallible>(resp)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
