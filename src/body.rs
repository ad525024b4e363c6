//! The response body type: either a streamed upstream body or a small
//! in-memory one (errors, endpoint answers). An enum rather than a boxed
//! trait object, so forwarding a response costs no allocation.

use crate::proxy::pool::PooledBody;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// Body of every response the gateway sends.
    #[project = GatewayBodyProj]
    pub enum GatewayBody {
        /// Streamed from the upstream, frame by frame.
        Upstream { #[pin] body: PooledBody },
        /// Produced by the gateway itself.
        Local { #[pin] body: Full<Bytes> },
    }
}

impl GatewayBody {
    /// A body with these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        GatewayBody::Local {
            body: Full::new(bytes.into()),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        GatewayBody::full(Bytes::new())
    }
}

impl GatewayBody {
    /// A body streamed from an upstream connection.
    pub fn upstream(body: PooledBody) -> Self {
        GatewayBody::Upstream { body }
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            GatewayBodyProj::Upstream { body } => body.poll_frame(cx),
            GatewayBodyProj::Local { body } => body
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Upstream { body } => body.is_end_stream(),
            GatewayBody::Local { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Upstream { body } => body.size_hint(),
            GatewayBody::Local { body } => body.size_hint(),
        }
    }
}
