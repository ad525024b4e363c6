//! An accepted connection as hyper reads it: the socket itself, or a TLS
//! session whose handshake runs when the connection is first read or
//! written, on the connection's own task.

use super::Acceptor;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// An accepted client connection, plain or TLS.
pub struct Stream {
    state: State,
}

enum State {
    Plain(TcpStream),
    /// Boxed: a rustls session is a few KiB, which plain connections need
    /// not carry.
    Handshaking(Box<tokio_rustls::Accept<TcpStream>>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// The handshake failed (its error was returned once; the socket is
    /// closed).
    Failed,
}

impl Stream {
    /// `socket` as is, or (with `tls`) a TLS server session on it whose
    /// handshake has not started.
    pub fn new(socket: TcpStream, tls: Option<&Acceptor>) -> Self {
        let state = match tls {
            None => State::Plain(socket),
            Some(acceptor) => State::Handshaking(Box::new(acceptor.acceptor.accept(socket))),
        };
        Stream { state }
    }

    /// Drives the handshake, if one is under way, to its end.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let State::Handshaking(accept) = &mut self.state else {
            return Poll::Ready(Ok(()));
        };
        match ready!(Pin::new(accept.as_mut()).poll(cx)) {
            Ok(tls) => {
                self.state = State::Tls(Box::new(tls));
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                // rustls has sent its alert (a plain-HTTP client gets one
                // and the close); the socket goes with the future.
                self.state = State::Failed;
                Poll::Ready(Err(e))
            }
        }
    }
}

fn failed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match &mut this.state {
            State::Plain(s) => Pin::new(s).poll_read(cx, buf),
            State::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            State::Handshaking(_) | State::Failed => Poll::Ready(Err(failed())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match &mut this.state {
            State::Plain(s) => Pin::new(s).poll_write(cx, buf),
            State::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            State::Handshaking(_) | State::Failed => Poll::Ready(Err(failed())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match &mut this.state {
            State::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            State::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            State::Handshaking(_) | State::Failed => Poll::Ready(Err(failed())),
        }
    }

    /// Both a socket and a rustls stream write vectors (hyper asks once,
    /// before the handshake).
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Plain(s) => Pin::new(s).poll_flush(cx),
            State::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            State::Handshaking(_) | State::Failed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Plain(s) => Pin::new(s).poll_shutdown(cx),
            State::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            // Nothing was said yet: dropping the stream closes the socket.
            State::Handshaking(_) | State::Failed => Poll::Ready(Ok(())),
        }
    }
}
