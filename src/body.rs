//! The response body type: either a streamed upstream body or a small
//! in-memory one (errors, endpoint answers), and, when the access log is
//! on, the request's pending log line, written when the body ends (or is
//! dropped, when the client goes away). An enum rather than a boxed trait
//! object, so forwarding a response costs no allocation.

use crate::proxy::pool::PooledBody;
use crate::telemetry::access_log::Record;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// Body of every response the gateway sends.
    pub struct GatewayBody {
        #[pin]
        inner: Inner,
        // Boxed: `None` costs one word when the access log is off.
        log: Option<Box<Record>>,
    }

    impl PinnedDrop for GatewayBody {
        /// A response the client abandoned (or hyper never polled to the
        /// end) is still logged, with the bytes sent so far.
        fn drop(this: Pin<&mut Self>) {
            if let Some(p) = this.project().log.take() {
                p.finish();
            }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner {
        /// Streamed from the upstream, frame by frame.
        Upstream { #[pin] body: PooledBody },
        /// Produced by the gateway itself.
        Local { #[pin] body: Full<Bytes> },
    }
}

impl GatewayBody {
    /// A body with these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        GatewayBody {
            inner: Inner::Local {
                body: Full::new(bytes.into()),
            },
            log: None,
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        GatewayBody::full(Bytes::new())
    }

    /// A body streamed from an upstream connection.
    pub fn upstream(body: PooledBody) -> Self {
        GatewayBody {
            inner: Inner::Upstream { body },
            log: None,
        }
    }

    /// Attaches the request's access-log line, written when this body ends.
    /// A body that is already complete (an empty one, as for `HEAD` or a
    /// 204) writes it at once.
    pub(crate) fn log_on_end(mut self, pending: Box<Record>) -> Self {
        if self.is_end_stream() {
            pending.finish();
        } else {
            self.log = Some(pending);
        }
        self
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = match this.inner.project() {
            InnerProj::Upstream { body } => body.poll_frame(cx),
            InnerProj::Local { body } => body
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(|never| match never {}))),
        };
        if let Some(pending) = this.log {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(data), Some(entry)) = (frame.data_ref(), pending.entry_mut()) {
                        entry.bytes += data.len() as u64;
                    }
                }
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                    if let Some(p) = this.log.take() {
                        p.finish();
                    }
                }
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream { body } => body.is_end_stream(),
            Inner::Local { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream { body } => body.size_hint(),
            Inner::Local { body } => body.size_hint(),
        }
    }
}
