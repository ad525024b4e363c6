//! The client's request body on its way upstream, with a bound on the wait
//! between two reads (`server.body_read_timeout`) and its faults told apart
//! from the upstream's.
//!
//! A body trickled at a byte a minute would otherwise hold a client and an
//! upstream connection for as long as the client likes, also after the
//! upstream has answered. A malformed body (a bad chunk size, a cut
//! connection) is the client's fault: [`fault`] finds it in the error the
//! upstream request fails with, so it is answered 400 rather than 502.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// The client sent a body hyper could not parse, or went away.
    #[error("request body malformed or cut short: {0}")]
    Malformed(hyper::Error),
    /// Nothing arrived for `body_read_timeout`.
    #[error("no request body data within the body read timeout")]
    Timeout,
}

pin_project_lite::pin_project! {
    /// A request body read with a timeout between reads.
    pub struct ClientBody {
        #[pin]
        inner: Incoming,
        timeout: Duration,
        // Armed on the first wait, reset after data: most bodies are read
        // without ever waiting, and pay nothing for the timer.
        sleep: Option<Pin<Box<Sleep>>>,
        rearm: bool,
    }
}

impl ClientBody {
    /// Wraps a client's body; `timeout` bounds each wait for data.
    pub fn new(inner: Incoming, timeout: Duration) -> Self {
        ClientBody {
            inner,
            timeout,
            sleep: None,
            rearm: false,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.rearm = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(ClientBodyError::Malformed(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = Instant::now() + *this.timeout;
                let sleep = match this.sleep {
                    Some(sleep) => {
                        if std::mem::take(this.rearm) {
                            sleep.as_mut().reset(deadline);
                        }
                        sleep
                    }
                    None => this
                        .sleep
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(ClientBodyError::Timeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client-body fault behind an upstream request's failure, if that is
/// what it was.
pub fn fault<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientBodyError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<ClientBodyError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}
